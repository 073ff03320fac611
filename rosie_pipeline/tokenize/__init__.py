"""Tokenizer training and packed token shards."""
