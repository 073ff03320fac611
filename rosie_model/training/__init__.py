"""The training engine: one code path for every phase and both approaches (config, trainer, data, distributed,
tracking). Imports ``rosie_model.core`` only.
"""
