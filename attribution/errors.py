"""Errors raised on purpose by the attribution package (the CLI prints them as one line)."""

from loopline.errors import LooplineError


class AttributionError(LooplineError):
    """Base for every attribution failure."""


class InputDataError(AttributionError):
    """Feedback slices, interactions or the user table are missing or not in the agreed shape."""


class LineageError(AttributionError):
    """A lineage.json exists but cannot be read as the registry contract says."""


class EstimationError(AttributionError):
    """A causal estimator or refuter could not produce a result for this data."""


class ConstantOutcomeError(EstimationError):
    """The outcome does not vary (or is missing) in a comparison: there is nothing to estimate."""
