"""The API keys the emulator accepts, and the per-key rate limits each one carries.

A config file lists them (both wires accept every listed key)::

    rate_limits: {rpm: 500, tpm: 200000}     # defaults for every key below (omit: DEFAULT_LIMITS)
    keys:
      - emulator-key                         # a key with the default limits
      - key: sk-small
        rpm: 3                               # requests per minute
        tpm: 10000                           # OpenAI: tokens per minute (prompt + output)
        itpm: 10000                          # Anthropic: input tokens per minute
        otpm: 2000                           # Anthropic: output tokens per minute
      - key: AKIAEMULATORKEY00001            # an AWS access key pair (Bedrock's SigV4 routes only)
        secret: emulator-secret-access-key

Without `keys:` the emulator accepts `DEFAULT_KEY` (and, on the Bedrock routes only, the AWS pair
`DEFAULT_AWS_KEY` / `DEFAULT_AWS_SECRET`); the gateway's local, test and demo configs
(thrifty.cli.localstack, bench/_peers_stack.py) use it for every provider. The default
limits are generous on purpose (no test or benchmark meets them) but still reported in the
rate-limit headers of every answer, as the providers do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thrifty_emulator.errors import EmulatorConfigError

DEFAULT_KEY = "emulator-key"
DEFAULT_AWS_KEY = "AKIAEMULATORKEY00001"  # shaped like an AWS access key id (AKIA + 16)
DEFAULT_AWS_SECRET = "emulator-secret-access-key"
LIMIT_FIELDS = ("rpm", "tpm", "itpm", "otpm")


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int = 1_000_000
    tpm: int = 10_000_000_000
    itpm: int = 10_000_000_000
    otpm: int = 1_000_000_000


@dataclass(frozen=True, slots=True)
class KeySpec:
    key: str
    limits: Limits = Limits()
    secret: str | None = None  # set: `key` is an AWS access key id and this its secret (SigV4 only)


DEFAULT_LIMITS = Limits()
DEFAULT_KEYS: tuple[KeySpec, ...] = (KeySpec(DEFAULT_KEY), KeySpec(DEFAULT_AWS_KEY, secret=DEFAULT_AWS_SECRET))


def _limits(path: str, where: str, raw: Any, base: Limits) -> Limits:
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise EmulatorConfigError(path, where, "must be a mapping of rpm/tpm/itpm/otpm to a number")
    unknown = set(raw) - set(LIMIT_FIELDS) - {"key", "secret"}
    if unknown:
        raise EmulatorConfigError(path, where, f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    values = {}
    for f in LIMIT_FIELDS:
        v = raw.get(f, getattr(base, f))
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise EmulatorConfigError(path, f"{where}.{f}", "must be a positive whole number")
        values[f] = v
    return Limits(**values)


def parse_keys(path: str, raw: Any, raw_limits: Any) -> tuple[KeySpec, ...]:
    defaults = _limits(path, "rate_limits", raw_limits, DEFAULT_LIMITS)
    if raw is None:
        return (KeySpec(DEFAULT_KEY, defaults), KeySpec(DEFAULT_AWS_KEY, defaults, DEFAULT_AWS_SECRET))
    if not isinstance(raw, list) or not raw:
        raise EmulatorConfigError(path, "keys", "must be a non-empty list of keys")
    out: list[KeySpec] = []
    for i, item in enumerate(raw):
        where = f"keys[{i}]"
        key = item if isinstance(item, str) else item.get("key") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise EmulatorConfigError(path, where, "must be a key string or a mapping with `key:`")
        if any(k.key == key for k in out):
            raise EmulatorConfigError(path, where, "listed twice")
        secret = item.get("secret") if isinstance(item, dict) else None
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise EmulatorConfigError(path, f"{where}.secret", "must be a non-empty string (an AWS secret access key)")
        out.append(KeySpec(key, _limits(path, where, item if isinstance(item, dict) else None, defaults), secret))
    return tuple(out)


def mask(key: str) -> str:
    """A key as OpenAI quotes it in a 401: its first and last characters, the middle starred
    ("Incorrect API key provided: sk-abc12***************wxyz.")."""
    if len(key) <= 8:
        return key[:2] + "*" * max(0, len(key) - 2)
    head, tail = min(8, len(key) // 3), 4
    return key[:head] + "*" * (len(key) - head - tail) + key[-tail:]
