"""The model itself: architecture, configs and presets, the bootstrap wrapper, checkpoints and weights,
export, the model protocol, the model-folder layout and errors.

Imports nothing else of rosie_model, so everything else may import it.
"""
