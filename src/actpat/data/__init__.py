"""Domain sample tables: sources, prompt templates and the table contract."""
