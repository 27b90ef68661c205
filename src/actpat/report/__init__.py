"""Figures and the standalone offline HTML report."""
