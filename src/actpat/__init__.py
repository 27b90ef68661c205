"""ActPat: activation patterns of language-model parameters.

Gradient activation scoring (A(s, w) = |w * dD/dw|), its reductions into chunked
Zarr stores, the paper's analyses (density, cross-domain similarity, relevance),
activation-guided pruning and evaluation.  The Snakemake workflow at the
repository root calls into this package; every module is usable on its own.
"""

__version__ = "0.1.0"
