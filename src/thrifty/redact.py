"""Secrets kept out of everything that leaves the gateway: client errors, logs, the ledger.

One `Redactor` is built at start-up from the config's secrets (provider keys, virtual keys, the
admin key) and the providers' addresses; on top of those literals it knows the shapes of keys
that no config names: `sk-...` keys (OpenAI, Anthropic's `sk-ant-...`, Thrifty's own `sk-thr-...`),
the partly masked forms providers quote back (OpenAI's 401 says "Incorrect API key provided:
sk-abc***...xyz"), bearer tokens, `api_key=...` pairs and passwords inside URLs.

Two levels: `secrets(text)` removes secrets and is what logs and the ledger get; `for_client(text)`
also hides the providers' internal addresses (base URLs, host:port), which an operator needs in
the log but a client must not see.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Iterable
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from thrifty.config import Config

REDACTED = "[redacted]"
UPSTREAM = "[upstream]"
_MIN_LITERAL = 6  # shorter config values would blank out ordinary words

# Keys by their shape. A key quoted back partly masked ("sk-abc***...xyz", "emu*****-key") is
# still redacted whole: the visible ends narrow down which key it was.
_SHAPES = (  # (pattern, replacement)
    (r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-*.]{3,}", REDACTED),  # sk-, sk-proj-, sk-ant-, masked forms
    (r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=\-*]+", r"\1" + REDACTED),  # Authorization: Bearer <token>
    (r"[A-Za-z0-9_\-.]{0,16}\*{3,}[A-Za-z0-9_\-.*]{0,16}", REDACTED),  # other masked values (abc****xyz)
    (r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{20,}", REDACTED),  # Google API keys
    (r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}", REDACTED),  # AWS access key ids
    (r"(?i)(api[_-]?key[\"']?\s*[=:]\s*[\"']?)[^\s\"',;]+", r"\1" + REDACTED),  # api_key=..., "x-api-key": ...
    (r"(://[^/\s:@]*:)[^/\s@]+(?=@)", r"\1" + REDACTED),  # user:password@ in a URL
)
_ADDRESS_SHAPES = (
    r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}:\d{1,5}",  # IPv4 host:port
    r"(?i)\blocalhost:\d{1,5}",
)


def _alternation(literals: Iterable[str]) -> re.Pattern[str] | None:
    # Longest first, so a key that contains another is replaced whole.
    unique = sorted({s for s in literals if s and len(s) >= _MIN_LITERAL}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, unique))) if unique else None


class Redactor:
    """`secrets`: exact strings to remove (config keys); `addresses`: URLs or host:port strings
    of upstreams, hidden from clients only."""

    def __init__(self, secrets: Iterable[str] = (), addresses: Iterable[str] = ()) -> None:
        self._literals = _alternation(secrets)
        self._shapes = tuple((re.compile(p), repl) for p, repl in _SHAPES)
        hosts: list[str] = []
        for a in addresses:
            if not a:
                continue
            hosts.append(a.rstrip("/"))
            netloc = urlsplit(a).netloc if "://" in a else a
            if netloc:
                hosts.append(netloc.rpartition("@")[2])
        self._addresses = _alternation(hosts)
        self._address_shapes = tuple(re.compile(p) for p in _ADDRESS_SHAPES)

    @classmethod
    def from_config(cls, config: "Config") -> "Redactor":
        secrets: list[str] = [s for p in config.providers.values() for s in p.secret_values()]
        secrets += list(config.keys)
        if config.admin.key:
            secrets.append(config.admin.key)
        return cls(secrets, [p.base_url for p in config.providers.values()])

    def secrets(self, text: str) -> str:
        """`text` without any secret: for logs and the ledger."""
        if not text:
            return text
        if self._literals is not None:
            text = self._literals.sub(REDACTED, text)
        for shape, repl in self._shapes:
            text = shape.sub(repl, text)
        return text

    def for_client(self, text: str) -> str:
        """`text` without secrets or internal addresses: for what a client is answered."""
        text = self.secrets(text)
        if not text:
            return text
        if self._addresses is not None:
            text = self._addresses.sub(UPSTREAM, text)
        for shape in self._address_shapes:
            text = shape.sub(UPSTREAM, text)
        return text


def scrub(record: logging.LogRecord, redactor: Redactor) -> None:
    """Rewrite a log record's message (and traceback) through `Redactor.secrets`."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: leave it to the handler to report
        return
    clean = redactor.secrets(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = redactor.secrets(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redactor.secrets(record.exc_text)
    if record.stack_info:
        record.stack_info = redactor.secrets(record.stack_info)


class RedactingFilter(logging.Filter):
    """For a handler of your own: every record through it is scrubbed first."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record, self.redactor)
        return True


def install_log_redaction(redactor: Redactor, root: str = "thrifty") -> None:
    """Scrub every record of the `root` logger and those below it as it is made, before any
    filter or handler sees it. A record factory rather than a filter per logger: it also covers
    loggers made later (modules imported lazily) and handlers added later. A gateway built again
    replaces the previous redactor instead of stacking another."""
    current = logging.getLogRecordFactory()
    base = getattr(current, "thrifty_base", current)
    prefix = root + "."

    def factory(*args, **kwargs) -> logging.LogRecord:  # type: ignore[no-untyped-def]
        record = base(*args, **kwargs)
        if record.name == root or record.name.startswith(prefix):
            scrub(record, redactor)
        return record

    factory.thrifty_base = base  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
