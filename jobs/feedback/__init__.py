"""The feedback job: serving logs + interactions → labelled impressions, features, lineage."""
