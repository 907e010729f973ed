"""Serving: an HTTP ranker. Feast online features → model of the user's arm → softmax
exploration with exact propensities → ServingEvent on Kafka; popularity when degraded."""
