"""Errors raised by the shop simulator; the CLI prints them as one line."""

from loopline.errors import ConfigError, LooplineError


class SimulatorError(LooplineError):
    """Base of every simulator error."""


class SimulatorConfigError(SimulatorError, ConfigError):
    """A simulator setting is out of range or inconsistent with another."""


class RecommenderError(SimulatorError):
    """A recommender returned a slate the simulator cannot show (unknown item, bad position,
    propensity outside (0, 1], too many items, ...)."""


class SimulationOrderError(SimulatorError):
    """Days were run out of order or outside the configured horizon."""


class GroundTruthError(SimulatorError):
    """Ground truth was asked for versions or days it has not observed."""


class PublishError(SimulatorError):
    """Kafka did not accept the simulated events."""
