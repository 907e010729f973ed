"""PyFlink jobs. `feedback` is the main one: Kafka → label join → features → Feast, slices, lineage.

Transforms (jobs/transforms) are pure Python with no Flink import, unit-tested on their own;
sinks (jobs/sinks) talk to Feast and the file system; jobs/feedback wires them into Flink.
"""
