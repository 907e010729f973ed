"""Kafka topic names: defined once here, imported everywhere else."""

SERVING = "loopline.serving"
"""ServingEvent: what serving showed (input of the feedback job)."""
INTERACTIONS = "loopline.interactions"
"""InteractionEvent: views, clicks, add-to-cart, purchases (input of the feedback job)."""
LABELLED = "loopline.labelled"
"""LabelledImpression: slate items with their matured outcomes (job output)."""
UNMATCHED = "loopline.unmatched"
"""InteractionEvent bytes of interactions no impression claimed (organic revenue), and DeadLetter
envelopes (stage 'unmatched') of FeatureLogs no served slate claimed (job output)."""
LATE = "loopline.late"
"""DeadLetter envelopes (stage 'late') of events behind the watermark (job output)."""
DEAD_LETTERS = "loopline.dlq"
"""DeadLetter envelopes of undecodable or invalid records (job output)."""
LINEAGE = "loopline.lineage"
"""LineageRecord run events (job, training)."""
FEATURE_UPDATES = "loopline.features.updates"
"""FeatureUpdate: newest feature values per entity (job output; the Feast writer's input)."""
FEATURE_LOGS = "loopline.features.logged"
"""FeatureLog: the online feature vectors serving scored a sampled request with (serving
output; joined into labelled impressions by the feedback job ([job] feature_log_topic), read
by `loopline consistency`)."""
SCHEMAS = "loopline.schemas"
"""Compacted: every registered writer schema, keyed by fingerprint."""

INPUTS = (SERVING, INTERACTIONS)
OUTPUTS = (LABELLED, UNMATCHED, LATE, DEAD_LETTERS, LINEAGE, FEATURE_UPDATES)
SERVING_LOGS = (FEATURE_LOGS,)
"""Serving's outputs besides ServingEvents (the FeatureLog topic is the job's optional third
input, job.feature_log_topic)."""
ALL = (*INPUTS, *OUTPUTS, *SERVING_LOGS, SCHEMAS)
