"""Unstructured pruning (magnitude, Wanda, SparseGPT) with per-layer sparsity allocations."""
