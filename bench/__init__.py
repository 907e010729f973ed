"""Benchmarks of the Loopline pipeline, each measured side by side with a baseline in one run.

Suites (`loopline bench SUITE`): throughput, freshness, lookup, attribution. Every run writes
one JSON document under bench/results/ with the machine facts and the figures; see README.md.
"""
