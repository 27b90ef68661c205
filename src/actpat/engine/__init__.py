"""Per-sample gradient activation scoring and its reductions."""
