"""The emulator's own errors, so that it needs nothing of the gateway to report a bad config."""

from __future__ import annotations


class EmulatorConfigError(ValueError):
    """The emulator's config file is missing, unreadable or invalid."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path, self.key, self.problem = path, key, problem
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")


class BodyTooLarge(Exception):
    """A request body over the configured limit; answered 413 in the wire's own error shape."""
