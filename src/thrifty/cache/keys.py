"""Exact-cache keys: which requests may be cached, and the hash of their canonical form.

Canonical form (version 1)
--------------------------
The key is ``"x1:" + sha256_hex(orjson.dumps([1, surface, scope, model, request], OPT_SORT_KEYS))``:

- ``surface``: the client's wire format by name (``"openai"``, ``"anthropic"``); an answer is stored in
  its format.
- ``scope``: ``["tenant", <tenant>]``, or ``["shared", <namespace>]`` when the route declares a
  shared namespace. The scope is a JSON array inside the hashed document, so no tenant name can be
  crafted to collide with another tenant or with a namespace.
- ``model``: the requested model (or the tier name the caller passes instead).
- ``request``: the body, with
  * dropped, because they do not change the answer: ``model`` (it has its own slot), ``stream``,
    ``stream_options``, ``user``, ``metadata``, ``store``, ``service_tier``, ``prompt_cache_key``,
    ``prompt_cache_retention``, ``safety_identifier``, ``cache_control``, and ``n`` when it is 1;
  * on the OpenAI surface ``max_tokens`` renamed ``max_completion_tokens`` (same meaning);
  * top-level integral floats written as integers (``temperature: 0.0`` == ``temperature: 0``),
    except those of magnitude 2**63 or more, which stay floats;
  * in ``messages`` and ``system``: ``cache_control`` markers removed (they steer the provider's
    prompt cache, not the answer); a content list holding a single plain text part written as
    that string; tool-call ids (``tool_calls[].id``, ``tool_call_id``, ``tool_use.id``,
    ``tool_use_id``) renamed by order of first appearance, since providers mint them at random;
    and every text (``content`` / ``text`` strings) normalised: matches of the policy's volatile
    patterns replaced by NUL, then CR/CRLF -> LF, on each line trailing whitespace removed and
    inner runs of whitespace collapsed to one space (leading indentation is kept), whitespace-only
    lines emptied, 3+ newlines -> 2, and the whole text stripped;
  * everything else (temperature, top_p, seed, stop, max tokens, tools, tool_choice,
    response_format, logprobs, unknown future parameters ...) kept verbatim, so an unfamiliar
    parameter can only cause a miss, never a wrong hit.

URLs, base64 data, tool arguments and tool inputs are not normalised: they are data, not prose.
Bump `KEY_VERSION` whenever this form changes; old entries then simply miss.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

from thrifty.errors import InvalidRequest
from thrifty.wire import Wire

KEY_VERSION = 1
CACHE_CONTROL_HEADER = "x-thrifty-cache-control"

# Values that differ between otherwise identical requests (the default `volatile_patterns`).
# They are matched only in message text, never in URLs, data or tool arguments.
ISO_TIMESTAMP = r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
UUID = r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
HEX_ID = r"\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{16,}\b"  # needs a digit and a letter
PREFIXED_ID = r"\b(?:req|request|trace|span|run|corr|correlation)[-_](?=\w*\d)\w{8,}"
DEFAULT_VOLATILE: tuple[str, ...] = (ISO_TIMESTAMP, UUID, HEX_ID, PREFIXED_ID)

_DROPPED = frozenset({"model", "stream", "stream_options", "user", "metadata", "store", "service_tier",
                      "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "cache_control"})
_TEXT_KEYS = frozenset({"content", "text"})
_INT64 = 2.0**63  # integral floats at least this large stay floats: JSON writers refuse such integers
_ID_REF_KEYS = frozenset({"tool_call_id", "tool_use_id"})
_CALL_TYPES = frozenset({"function", "tool_use", "server_tool_use", "mcp_tool_use"})
_DATA_KEYS = frozenset({"input", "function", "source", "image_url", "input_audio", "file"})

# If clean ASCII text contains none of these, whitespace normalisation leaves it unchanged.
_ASCII_WS_HINTS = ("  ", "\t", " \n", "\r", "\n\n\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


@dataclass(frozen=True)
class CachePolicy:
    """How one route uses the exact cache; built once from config and shared by its requests.

    `namespace` set: the route's entries are shared by every tenant that uses it (declared, never
    implied). `opt_in`: cache even without temperature 0 (the route accepts a fixed answer).
    `volatile_patterns`: regexes whose matches in message text do not change the key; an invalid
    one raises ValueError here, at start-up.
    """

    enabled: bool = True
    ttl_s: int = 3600
    max_ttl_s: int = 7 * 86400  # upper bound for a client's `ttl=N`
    namespace: str | None = None
    volatile_patterns: tuple[str, ...] = DEFAULT_VOLATILE
    opt_in: bool = False
    normalize_whitespace: bool = True
    memo_chars: int = 4_000_000  # bound of the per-policy memo of normalised texts
    volatile_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    text_memo: _TextMemo = field(init=False, repr=False, compare=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.ttl_s < 0 or self.max_ttl_s < 0:
            raise ValueError("cache ttl_s and max_ttl_s must not be negative")
        if self.namespace is not None and not self.namespace:
            raise ValueError("a shared cache namespace must not be empty")
        for i, pattern in enumerate(self.volatile_patterns):
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"volatile_patterns[{i}] is not a valid regex: {err}") from None
        joined = "|".join(f"(?:{p})" for p in self.volatile_patterns)
        try:
            compiled = re.compile(joined) if joined else None
        except re.error as err:  # e.g. a global (?i) that is only legal at the start of one pattern
            raise ValueError(f"volatile_patterns cannot be combined ({err}); use scoped flags such as "
                             "(?i:...)") from None
        object.__setattr__(self, "volatile_re", compiled)
        object.__setattr__(self, "text_memo", _TextMemo(self.memo_chars))


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The client's `x-thrifty-cache-control` header, parsed."""

    no_cache: bool = False  # do not read, but store the fresh answer
    no_store: bool = False  # neither read nor store
    ttl_s: int | None = None  # store with this TTL
    opt_in: bool = False  # cache although the request is not deterministic


@dataclass(frozen=True, slots=True)
class CacheDecision:
    read: bool
    write: bool
    ttl_s: int
    reason: str  # "eligible", "disabled", "invalid", "n>1", "nondeterministic", "no-store", "no-cache", "ttl=0"

    @property
    def active(self) -> bool:
        return self.read or self.write


def parse_cache_control(value: str | None) -> CacheControl:
    """Comma-separated directives: `no-cache`, `no-store`, `ttl=N` (seconds), `opt-in`.

    An unknown directive is a client error: silently ignoring a mistyped `no-store` would cache
    what the client asked us not to keep.
    """
    if not value or not value.strip():
        return CacheControl()
    no_cache = no_store = opt_in = False
    ttl: int | None = None
    for raw in value.split(","):
        directive = raw.strip().lower()
        if not directive:
            continue
        if directive == "no-cache":
            no_cache = True
        elif directive == "no-store":
            no_store = True
        elif directive == "opt-in":
            opt_in = True
        elif directive.startswith("ttl="):
            number = directive[4:].strip()
            if not number.isdigit() or not number.isascii():
                raise InvalidRequest(f"{CACHE_CONTROL_HEADER}: ttl must be a whole number of seconds, "
                                     f"not {number!r}", param=CACHE_CONTROL_HEADER)
            ttl = int(number)
        else:
            raise InvalidRequest(f"{CACHE_CONTROL_HEADER}: unknown directive {directive!r} (expected "
                                 "no-cache, no-store, ttl=N or opt-in)", param=CACHE_CONTROL_HEADER)
    return CacheControl(no_cache=no_cache, no_store=no_store, ttl_s=ttl, opt_in=opt_in)


def decide(body: Any, headers: Mapping[str, str], policy: CachePolicy) -> CacheDecision:
    """Whether this request may be answered from, and stored in, the exact cache.

    Only deterministic requests (temperature 0, or opt-in by route or header) with n = 1 qualify.
    Raises InvalidRequest for a malformed cache-control header.
    """
    control = parse_cache_control(headers.get(CACHE_CONTROL_HEADER))
    ttl = policy.ttl_s if control.ttl_s is None else min(control.ttl_s, policy.max_ttl_s)
    if not policy.enabled:
        return CacheDecision(False, False, ttl, "disabled")
    if not isinstance(body, dict):  # the wire's check() has validated the rest, in its own dialect
        return CacheDecision(False, False, ttl, "invalid")
    n = body.get("n")
    if n is not None and (n != 1 or isinstance(n, bool)):
        return CacheDecision(False, False, ttl, "n>1")
    temperature = body.get("temperature")
    deterministic = (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                     and temperature == 0)
    if not (deterministic or policy.opt_in or control.opt_in):
        return CacheDecision(False, False, ttl, "nondeterministic")
    if control.no_store:
        return CacheDecision(False, False, ttl, "no-store")
    if ttl <= 0:
        return CacheDecision(not control.no_cache, False, 0, "ttl=0")
    if control.no_cache:
        return CacheDecision(False, True, ttl, "no-cache")
    return CacheDecision(True, True, ttl, "eligible")


def cache_key(tenant: str, wire: Wire, body: dict[str, Any], policy: CachePolicy,
              *, model: str | None = None) -> str:
    """The documented key (see the module docstring) of a request for one tenant."""
    if not isinstance(tenant, str) or not tenant:
        raise ValueError("a cache key needs a tenant")
    scope = ("shared", policy.namespace) if policy.namespace is not None else ("tenant", tenant)
    doc = (KEY_VERSION, wire.name, scope, model if model is not None else body.get("model"),
           canonical_request(wire, body, policy))
    return "x1:" + hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def canonical_request(wire: Wire, body: dict[str, Any], policy: CachePolicy) -> dict[str, Any]:
    """The request part of the canonical form, as a new dict (the body is not modified)."""
    walker = _Walker(policy)
    out: dict[str, Any] = {}
    for k, v in body.items():
        if k in _DROPPED or (k == "n" and v == 1):
            continue
        if k == "messages":
            out[k] = walker.walk(v, None)
        elif k == "system":
            out[k] = walker.walk(v, "content")
        elif k == "tools" and isinstance(v, list):
            out[k] = [{tk: tv for tk, tv in t.items() if tk != "cache_control"} if isinstance(t, dict) else t
                      for t in v]
        elif isinstance(v, float) and v.is_integer() and abs(v) < _INT64:
            out[k] = int(v)
        else:
            out[k] = v
    return wire.cache_key_form(out)


def normalize_whitespace(text: str) -> str:
    """Whitespace rules of the canonical form: CR/CRLF -> LF; per line, trailing blanks removed,
    inner runs of blanks collapsed to one space, leading indentation kept; 3+ newlines -> 2; the
    whole text stripped. Clean ASCII text (the common case) is returned after a few C-level scans.
    """
    if text.isascii() and not text[:1].isspace() and not text[-1:].isspace() and not any(
            hint in text for hint in _ASCII_WS_HINTS):
        return text
    return _normalize_lines(text)


def _normalize_lines(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines: list[str] = []
    blank = False
    for line in text.split("\n"):
        words = line.split()
        if not words:
            if not blank and lines:
                lines.append("")
            blank = True
            continue
        blank = False
        indent = line[:len(line) - len(line.lstrip())]
        lines.append(indent + " ".join(words))
    if lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines).lstrip()


class _TextMemo:
    """Normalised texts by raw text, for one policy. System prompts, few-shot examples and
    conversation history repeat across requests; only their first sighting pays for the regexes.
    Bounded by total characters held; cleared when full (cheaper than LRU bookkeeping)."""

    __slots__ = ("max_chars", "chars", "items")

    def __init__(self, max_chars: int) -> None:
        self.max_chars, self.chars = max_chars, 0
        self.items: dict[str, str] = {}

    def get(self, text: str) -> str | None:
        return self.items.get(text)

    def put(self, text: str, normalised: str) -> None:
        cost = len(text) + len(normalised)
        if self.chars + cost > self.max_chars:
            self.items.clear()
            self.chars = 0
            if cost > self.max_chars:
                return
        self.items[text] = normalised
        self.chars += cost


class _Walker:
    """One request's walk over messages/system; holds the tool-call id renaming of that request."""

    __slots__ = ("volatile", "whitespace", "memo", "seen", "ids")

    def __init__(self, policy: CachePolicy) -> None:
        self.volatile, self.whitespace = policy.volatile_re, policy.normalize_whitespace
        self.memo = policy.text_memo
        self.seen = self.memo.items
        self.ids: dict[str, str] = {}

    def walk(self, value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            is_call = value.get("type") in _CALL_TYPES
            out = {}
            for k, v in value.items():
                if type(v) is str:
                    if k in _TEXT_KEYS:
                        v = self.text(v)
                    elif k in _ID_REF_KEYS or (is_call and k == "id"):
                        v = self.rename(v)
                elif k == "cache_control":
                    continue
                elif k not in _DATA_KEYS:
                    v = self.walk(v, k)
                out[k] = v
            return out
        if isinstance(value, list):
            items = [self.walk(v, key) for v in value]
            if (key == "content" and len(items) == 1 and isinstance(first := items[0], dict)
                    and len(first) == 2 and first.get("type") == "text" and isinstance(first.get("text"), str)):
                return first["text"]
            return items
        if isinstance(value, str):
            if key in _TEXT_KEYS:
                return self.text(value)
            return self.rename(value) if key in _ID_REF_KEYS else value
        if isinstance(value, float) and value.is_integer() and abs(value) < _INT64:
            return int(value)
        return value

    def text(self, value: str) -> str:
        done = self.seen.get(value)
        if done is None:
            if self.volatile is None and not self.whitespace:
                return value
            done = self.volatile.sub("\x00", value) if self.volatile is not None else value
            if self.whitespace:
                done = normalize_whitespace(done)
            self.memo.put(value, done)
        return done

    def rename(self, value: str) -> str:
        renamed = self.ids.get(value)
        if renamed is None:
            renamed = self.ids[value] = f"\x01{len(self.ids)}"
        return renamed
