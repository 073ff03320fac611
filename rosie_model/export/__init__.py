"""Rosie's model in the formats its ecosystem runs: a Hugging Face folder (:mod:`.hf`, with its model card,
:mod:`.card`) and GGUF (:mod:`.gguf`). May import core, and serving to load a model the way chats do."""
