"""JVM-free scoring of a saved Spark ``PipelineModel`` (NumPy only, never imports pyspark).

- ``load_model(dir)`` -> ``ChurnModel``: predict / explain customers from a model directory.
- ``PipelineScorer.load(pipeline_dir)``: Spark's ``transform`` outputs, for parity tests.
"""

from sparkify.scorer.errors import ModelLoadError, ScoringInputError
from sparkify.scorer.model import ChurnModel, Explanation, Reason, load_model
from sparkify.scorer.pipeline import PipelineScorer

__all__ = ["ChurnModel", "Explanation", "ModelLoadError", "PipelineScorer", "Reason",
           "ScoringInputError", "load_model"]
