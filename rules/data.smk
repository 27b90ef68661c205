# Domain sample tables (one Parquet per domain) and held-out text for perplexity.
# Filled in by the data loaders (actpat.data); see docs/contracts.md for the table contract.


add_targets(lambda: [])
