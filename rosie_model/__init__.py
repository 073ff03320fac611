"""Rosie's model package, in four rooms: ``core`` (the model, its folder layout and errors), ``training``
(the engine), ``evaluation`` (evaluate, registry, pyfunc) and ``serving`` (decoding, chat, memory, front
ends); one entry point, ``python -m rosie_model COMMAND`` (:mod:`rosie_model.cli`).

It runs alone on a GPU box: it never imports dagster or rosie_pipeline and reads only the token-shard
contract written by the data pipeline (see DESIGN.md).
"""
