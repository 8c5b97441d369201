"""Importing this module registers the built-in adapters."""

from thrifty.providers import anthropic, azure, gemini, openai  # noqa: F401
