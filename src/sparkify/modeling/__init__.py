"""Modelling: train/compare/tune the four Spark ML families, evaluate honestly, save the
model directory, and score users in batch.

- :mod:`.train`: ``TrainConfig``, ``train`` (writes the model directory)
- :mod:`.predict`: ``score_users`` (ranked at-risk list)
- :mod:`.evaluate`: metrics, threshold choice, Platt calibration (NumPy)
- :mod:`.pipelines`: the four pipelines and their grids
- :mod:`.artifacts`: atomic model directory, model.json
- :mod:`.cli`: ``sparkify ingest | train | score``
"""
