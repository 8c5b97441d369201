"""Adapters by provider kind. The built-ins register through the same decorator a plugin uses."""

from __future__ import annotations

from thrifty.providers import builtin  # noqa: F401  (importing it registers the built-in adapters)
from thrifty.providers.base import REGISTRY, Provider


def provider_class(kind: str) -> type[Provider]:
    try:
        return REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown provider kind {kind!r} (known: {', '.join(sorted(REGISTRY))})") from None


def known_kinds() -> list[str]:
    return sorted(REGISTRY)
