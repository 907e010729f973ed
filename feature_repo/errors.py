"""Errors of the Feast repository layer."""

from loopline.errors import LooplineError


class FeatureStoreError(LooplineError):
    """The Feast store could not be opened, applied, read or written."""
