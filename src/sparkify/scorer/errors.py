"""Errors raised by the JVM-free scorer.

- ``ModelLoadError``: a model directory or saved pipeline is missing, corrupt or uses
  something this scorer does not support. The message says which file and why.
- ``ScoringInputError``: the records given to ``predict``/``explain`` are unusable
  (missing field, non-numeric value, ...). ``fields`` lists the offending field names
  so an API can answer 400 with them.
"""

from __future__ import annotations


class ModelLoadError(Exception):
    """A model directory or saved Spark pipeline cannot be read or is not supported."""


class ScoringInputError(ValueError):
    """Input records cannot be scored; ``fields`` names the offending fields."""

    def __init__(self, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.fields = list(fields or [])
