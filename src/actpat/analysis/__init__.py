"""Polars aggregations behind the paper's findings."""
