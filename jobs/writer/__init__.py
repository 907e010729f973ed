"""The Feast writer: FeatureUpdate records from Kafka → the Feast online store, in batches.

The feedback job emits compacted online updates to `loopline.features.updates`; this writer
decodes them in batches, keeps the newest per entity, writes Feast and then commits offsets.

    FeatureWriter(config, kafka, feast, paths).drain() -> WriterStats   # bounded runs
    WriterProcess.start(config, kafka, feast, paths) ... .stop() -> WriterStats  # unbounded
"""

from jobs.writer.background import WriterProcess
from jobs.writer.config import WriterConfig, load_writer
from jobs.writer.loop import FeatureWriter
from jobs.writer.stats import WriterStats

__all__ = ["FeatureWriter", "WriterConfig", "WriterProcess", "WriterStats", "load_writer"]

