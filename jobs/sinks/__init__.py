"""Sinks the job writes through Python: the slice log (Parquet) and the Feast online store."""
