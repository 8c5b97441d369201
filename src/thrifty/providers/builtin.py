"""Importing this module registers the built-in adapters."""

from thrifty.providers import anthropic, azure, bedrock, gemini, openai, vertex  # noqa: F401
