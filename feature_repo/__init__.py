"""The Feast repository: entities, batch sources, feature views, feature services, stores.

Definitions live in `definitions.py` (module-level declarations, as `feast apply` expects);
`store.py` builds a FeatureStore from Loopline config (SQLite by default, Redis at scale).
"""
