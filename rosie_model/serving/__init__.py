"""Talking to Rosie: decoding, the chat API, long-term memory, the terminal and the web page.

Imports ``rosie_model.core`` only: a chat box needs no training code.
"""
