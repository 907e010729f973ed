"""Errors raised by the models package; the CLI prints them as one line."""

from loopline.errors import LooplineError


class ModelsError(LooplineError):
    """Base of every models error."""


class SliceError(ModelsError):
    """A feedback slice is malformed, empty, or its manifests disagree with its files."""


class TrainingError(ModelsError):
    """Training data could not be built or the model could not be trained."""


class RegistryError(ModelsError):
    """The model registry is unreadable, or a version is missing or malformed."""


class LineageEmitError(RegistryError):
    """A version was registered but its lineage record could not be delivered to Kafka."""


class RolloutError(ModelsError):
    """A rollout change is not allowed in the current state (or names an unknown version)."""


class EvaluationError(ModelsError):
    """Off-policy evaluation is impossible on the given logs (no support, no propensities)."""
