"""Judging and publishing a trained model: evaluation, the MLflow registry and its pyfunc flavour.

Imports ``rosie_model.core``, ``rosie_model.training.data`` (the shard reader) and ``rosie_model.serving``
(a model is judged through the same path users talk to).
"""
