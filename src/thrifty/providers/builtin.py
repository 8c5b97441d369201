"""Importing this module registers the built-in adapters."""

from thrifty.providers import anthropic, openai  # noqa: F401
