"""A small pretrained causal LM for the bootstrap path's tests: a Llama with its own byte-level BPE
tokenizer (no Rosie tokens), saved the way transformers saves any model, so the real loading code runs."""

from pathlib import Path

import torch


def save_small_llama(folder: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    sample = ["Hello there, how are you today? I am fine, thank you!", "The cat sat on the warm mat."] * 50
    tokenizer.train_from_iterator(sample, trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"],
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>").save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
