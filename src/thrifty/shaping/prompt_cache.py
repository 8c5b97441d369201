"""Provider prompt caching as a shaping step: cache breakpoints (Anthropic), cache keys (OpenAI).

Runs on the upstream body, after translation to the provider's wire format. It never changes what
the model reads: it adds `cache_control` markers or a `prompt_cache_key`, reorders nothing, and
returns a new body (the input is never mutated; untouched parts are shared with it).

Anthropic. Breakpoints go, in prompt order, on the last tool, on the last system block (a string
system becomes one text block), and on the last block of the message before the final user turn
when the conversation has earlier turns: multi-turn agent loops and few-shot examples re-read that
history. Client breakpoints are left as they are and count toward the provider's limit of four;
when fewer slots remain, the end of the stable prefix (tools + system) comes first, then the
history, then the tools alone. A client that marks its messages (or sets top-level automatic
caching) manages its conversation itself: no history breakpoint is added then. A breakpoint whose
prefix is shorter than the model's minimum cacheable length is not placed, as the provider would
ignore it.

TTL ("auto"), per prefix, from the gaps between its arrivals (`PrefixStats`). In units of the base
input price (Anthropic: 5m write 1.25x, 1h write 2x, read 0.1x), what the next gap costs:

    gap <= 5 min          both TTLs still hold the entry: read 0.1      -> no difference
    5 min < gap <= 1 h    5m writes again (1.25), 1h reads (0.1)        -> 1h saves 1.15
    gap > 1 h             5m writes (1.25), 1h writes (2.0)             -> 5m saves 0.75

so 1h when the mid gaps outweigh the long ones (mid * 1.15 > long * 0.75) and at least
`min_reuse_for_1h` mid gaps were seen; 5m otherwise, and for a prefix not seen before (its write
is cheaper). The provider rejects a 1h breakpoint after a 5m one: ours after a client 5m one
become 5m, and ours before any 1h one become 1h (an entry that stays warm is rarely rewritten, so
the dearer write costs little).

OpenAI. Caching is automatic on the longest shared prefix; `prompt_cache_key` routes requests
that share it to the same cache. The key is the id of the stable part (tools, response format,
leading system/developer messages), set only when the client did not set one, and only for
providers known to accept the parameter (`PromptCachePolicy.cache_key_providers`).

Prefix ids hash the stable content with the tenant and the served model: "thr-" and 16 hex
digits of SHA-256. Two tenants never share a key, and a prefix has the same id on every replica.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import orjson

from thrifty.shaping.prefix_stats import GapCounts, PrefixStats
from thrifty.tokens import count_text_tokens
from thrifty.wire import Wire

MAX_BREAKPOINTS = 4
TTLS = ("5m", "1h")
# Anthropic's cache prices, as multiples of the base input price.
WRITE_5M, WRITE_1H, READ = 1.25, 2.0, 0.1

# Anthropic's minimum cacheable prompt length per model family, from its prompt-caching docs
# ("Cache limitations"). Provider behaviour, not a price. First match in the model name wins;
# other Claude models (Sonnet 4.5 / 4 / 3.7, Opus 4.1 / 4 / 3) cache from 1024 tokens. The
# emulator's `ModelSpec.cache_min_tokens` repeats these for the models it serves: the gateway
# must not depend on the emulator, so they live in both places.
_MIN_TOKENS: tuple[tuple[str, int], ...] = (
    ("claude-opus-4-6", 4096), ("claude-opus-4-5", 4096), ("claude-haiku-4-5", 4096),
    ("claude-sonnet-4-6", 2048), ("claude-3-5-haiku", 2048), ("claude-3-haiku", 2048),
)
DEFAULT_MIN_TOKENS = 1024

# Content counted as a fixed number of tokens rather than tokenised (an image: ~1 megapixel / 750).
OPAQUE_TOKENS = 1500
# Longer texts are estimated at 4 characters a token: tokenising them costs milliseconds, and a
# prefix that long is past every minimum anyway.
_EXACT_MAX_CHARS = 32_768
_NO_CACHE_CONTROL = ("thinking", "redacted_thinking")  # block types that may not carry one
_SORTED = orjson.OPT_SORT_KEYS


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix (in tokens) Anthropic caches for `model`."""
    name = model.lower()
    for family, tokens in _MIN_TOKENS:
        if family in name:
            return tokens
    return DEFAULT_MIN_TOKENS


@dataclass(frozen=True, slots=True)
class PromptCachePolicy:
    """How the prompt-caching lever acts; built once from configuration."""

    enabled: bool = True
    anthropic_auto_breakpoints: bool = True
    openai_cache_key: bool = True
    ttl: str = "auto"  # "auto" (per prefix, from its reuse), or always "5m" / "1h"
    min_reuse_for_1h: int = 2  # reuses 5 min - 1 h apart seen before a prefix gets the 1h TTL
    # Catalog provider ids whose OpenAI-wire API accepts `prompt_cache_key`; a deployment without
    # a price provider counts as "openai". Other servers (Groq, vLLM, ...) may reject the field.
    cache_key_providers: frozenset[str] = frozenset({"openai", "azure"})

    def __post_init__(self) -> None:
        if self.ttl not in ("auto", *TTLS):
            raise ValueError(f"ttl must be 'auto', '5m' or '1h', not {self.ttl!r}")
        if self.min_reuse_for_1h < 1:
            raise ValueError("min_reuse_for_1h must be at least 1")


def choose_ttl(gaps: GapCounts, policy: PromptCachePolicy) -> str:
    """The cheaper TTL for a prefix whose next gap looks like its past ones (see the module doc)."""
    if policy.ttl != "auto":
        return policy.ttl
    if gaps.mid < policy.min_reuse_for_1h:
        return "5m"
    return "1h" if gaps.mid * (WRITE_5M - READ) > gaps.long * (WRITE_1H - WRITE_5M) else "5m"


@dataclass(frozen=True, slots=True)
class Breakpoint:
    where: str  # "tools[2]", "system[0]", "messages[3].content[1]", "cache_control" (top level)
    ttl: str
    added: bool  # placed by Thrifty; False for the client's own
    segment: str = "client"  # "tools", "system", "history" or "client"
    prefix_id: str | None = None  # whose statistics chose the TTL (history: the conversation's)
    tokens: int | None = None  # estimated prompt tokens up to here; None when not counted


@dataclass(frozen=True, slots=True)
class CachePlan:
    body: dict[str, Any]  # what to send upstream: the input itself when nothing was added
    prefix_id: str | None = None  # the stable prefix (else the conversation): the stats key
    breakpoints: tuple[Breakpoint, ...] = ()  # every breakpoint of `body`, in prompt order
    cache_key: str | None = None  # the prompt_cache_key Thrifty set, if it set one
    prefix_ids: tuple[str, ...] = ()  # every prefix this request was counted under
    # When Thrifty added breakpoints beside the client's own: an upper bound of the prompt tokens up
    # to the client's last breakpoint, and its TTL (the most the client alone would have had cached).
    client_prefix_tokens: int | None = None
    client_ttl: str = "5m"

    @property
    def changed(self) -> bool:
        return self.cache_key is not None or any(b.added for b in self.breakpoints)


@dataclass(slots=True)
class _Slot:
    order: tuple[int, int, int]  # (tools 0 / system 1 / messages 2 / top level 3, index, block)
    where: str
    ttl: str
    added: bool
    segment: str = "client"
    prefix_id: str | None = None
    tokens: int | None = None


class PromptCachePlanner:
    """Plans the prompt-caching part of each upstream body. One per gateway; thread-safe."""

    def __init__(self, policy: PromptCachePolicy | None = None, stats: PrefixStats | None = None, *,
                 count_tokens: Callable[[str], int] = count_text_tokens, memo_size: int = 8192) -> None:
        self.policy = policy or PromptCachePolicy()
        self.stats = stats if stats is not None else PrefixStats()
        self._count = count_tokens
        self._memo: dict[bytes, int] = {}  # content digest -> tokens
        self._memo_size = memo_size
        self._memo_lock = threading.Lock()
        self._roots: dict[tuple[str, str], Any] = {}  # (tenant, model) -> hasher of that scope
        self._minimums: dict[str, int] = {}
        # By how the wire steers the provider's cache (`Wire.prompt_caching`), not by its name.
        self._styles = {"breakpoints": self._anthropic, "cache_key": self._openai}

    def plan(self, body: dict[str, Any], *, wire: Wire, model: str, tenant: str,
             provider: str | None = None) -> CachePlan:
        """The body to send with caching hints added, and the prefix it belongs to.

        `provider` is the deployment's catalog provider id (None: the wire's own provider).
        """
        planner = self._styles.get(wire.prompt_caching)
        if planner is None or not self.policy.enabled or not isinstance(body, dict):
            return CachePlan(body)
        return planner(body, model, tenant, provider)

    # ---------------------------------------------------------------- OpenAI

    def _openai(self, body: dict[str, Any], model: str, tenant: str, provider: str | None) -> CachePlan:
        h = self._hasher(tenant, model)
        stable = False
        tools = body.get("tools")
        if isinstance(tools, list) and tools:
            for tool in tools:
                _feed(h, b"T", orjson.dumps(tool, option=_SORTED))
            stable = True
        response_format = body.get("response_format")
        if isinstance(response_format, dict):
            _feed(h, b"R", orjson.dumps(response_format, option=_SORTED))
            stable = True
        messages = body.get("messages")
        for m in messages if isinstance(messages, list) else ():
            if not isinstance(m, dict) or m.get("role") not in ("system", "developer"):
                break
            _feed(h, b"M", orjson.dumps(m, option=_SORTED))
            stable = True
        if not stable:
            return CachePlan(body)
        prefix_id = _prefix_id(h)
        self.stats.sight(prefix_id)
        if (not self.policy.openai_cache_key or body.get("prompt_cache_key") is not None
                or (provider or "openai") not in self.policy.cache_key_providers):
            return CachePlan(body, prefix_id, prefix_ids=(prefix_id,))
        out = dict(body)
        out["prompt_cache_key"] = prefix_id
        return CachePlan(out, prefix_id, cache_key=prefix_id, prefix_ids=(prefix_id,))

    # ---------------------------------------------------------------- Anthropic

    def _anthropic(self, body: dict[str, Any], model: str, tenant: str, provider: str | None) -> CachePlan:
        tools = body.get("tools") or []
        system = body.get("system")
        messages = body.get("messages") or []
        if isinstance(system, str):
            system_blocks: list[Any] = [{"type": "text", "text": system}] if system else []
        else:
            system_blocks = system or []
        if not (isinstance(tools, list) and isinstance(system_blocks, list) and isinstance(messages, list)):
            return CachePlan(body)  # malformed: the provider's to reject
        marks = _client_marks(body, tools, system if isinstance(system, list) else [], messages)
        minimum = self._minimums.get(model) or self._minimum(model)
        h = self._hasher(tenant, model)
        candidates, ids, tokens = self._stable_slots(h, tools, system_blocks)
        stable_id = ids[-1] if ids else None

        conversation_id = None
        last_user = next((i for i in range(len(messages) - 1, -1, -1)
                          if isinstance(messages[i], dict) and messages[i].get("role") == "user"), 0)
        if last_user >= 1:
            # A conversation is known by its stable prefix and first message, which stay the same
            # from turn to turn: its arrivals are its turns, and their gaps choose its TTL.
            conversation = h.copy()
            _feed(conversation, b"C", orjson.dumps(_message_without_marks(messages[0]), option=_SORTED))
            conversation_id = _prefix_id(conversation)
            ids.append(conversation_id)
            history = self._history_slot(messages, last_user, marks, tokens, minimum, conversation_id)
            if history is not None:
                candidates.append(history)

        gaps = {pid: self.stats.sight(pid) for pid in ids}
        primary = stable_id or conversation_id
        if not self.policy.anthropic_auto_breakpoints or not _valid_ttl_order(marks):
            return _plan(body, primary, marks, ids)
        chosen = _choose(candidates, MAX_BREAKPOINTS - len(marks), minimum)
        if not chosen:
            return _plan(body, primary, marks, ids)
        for slot in chosen:
            slot.ttl = choose_ttl(gaps[slot.prefix_id], self.policy)
        slots = sorted(marks + chosen, key=lambda s: s.order)
        _order_ttls(slots)
        plan = _plan(_apply(body, chosen, system), primary, slots, ids)
        if marks:
            last = max(marks, key=lambda s: s.order)
            plan = replace(plan, client_prefix_tokens=self._client_prefix_bound(last.order, tools, system_blocks,
                                                                                messages),
                           client_ttl=last.ttl)
        return plan

    @staticmethod
    def _client_prefix_bound(order: tuple[int, int, int], tools: list[Any], system: list[Any],
                             messages: list[Any]) -> int:
        """An upper bound of the prompt tokens from the start up to and including the block at
        `order` (tools, then system, then messages; a top-level mark covers the whole prompt).

        It decides how much of a cache read the client's own breakpoints would have had, so it must
        never come in under the provider's count, whatever its tokenizer: text counts its UTF-8
        bytes (a byte-level tokenizer makes at most one token per byte), each block a few tokens of
        framing, an image the most Anthropic bills for one, and a binary document (whose token
        count cannot be bounded from here) everything.
        """
        section, index, block = order
        n = 0
        for i, t in enumerate(tools):
            if section == 0 and i > index:
                break
            n += _json_bytes(t) + _FRAMING
        if section >= 1:
            for i, b in enumerate(system):
                if section == 1 and i > index:
                    break
                n += _bytes_bound([b])
        if section >= 2:
            for i, m in enumerate(messages):
                if section == 2 and i > index:
                    break
                content = m.get("content") if isinstance(m, dict) else None
                if section == 2 and i == index and isinstance(content, list):
                    content = content[:block + 1]
                n += _bytes_bound(content) + _FRAMING
        return n

    def _stable_slots(self, h: Any, tools: list[Any], system: list[Any]) -> tuple[list[_Slot], list[str], int]:
        """Breakpoint candidates on the last tool and the last system block, the ids of the
        prefixes they close (the stable prefix last), and its tokens. Feeds `h` along the way."""
        candidates: list[_Slot] = []
        ids: list[str] = []
        tokens = 0
        if tools:
            dumped = [orjson.dumps(_without(t, "cache_control"), option=_SORTED) for t in tools]
            for data in dumped:
                _feed(h, b"T", data)
            tokens = self._tokens(h.digest(), lambda: (b"\n".join(dumped).decode(), 0))
            ids.append(_prefix_id(h))
            if _free(tools[-1]):
                i = len(tools) - 1
                candidates.append(_Slot((0, i, 0), f"tools[{i}]", "5m", True, "tools", ids[-1], tokens))
        if system:
            texts = [b.get("text") if isinstance(b, dict) else None for b in system]
            for text in texts:
                _feed(h, b"S", text.encode("utf-8", "surrogatepass") if isinstance(text, str) else b"")
            tokens += self._tokens(h.digest(), lambda: ("\n".join(t for t in texts if isinstance(t, str)), 0))
            ids.append(_prefix_id(h))
            last = system[-1]
            if _free(last) and last.get("type") == "text" and isinstance(last.get("text"), str) and last["text"]:
                i = len(system) - 1
                candidates.append(_Slot((1, i, 0), f"system[{i}]", "5m", True, "system", ids[-1], tokens))
        return candidates, ids, tokens

    def _history_slot(self, messages: list[Any], last_user: int, marks: list[_Slot], stable_tokens: int,
                      minimum: int, conversation_id: str) -> _Slot | None:
        """A breakpoint on the message before the final user turn, or None when there is none to place."""
        if any(m.order[0] >= 2 for m in marks):
            return None  # the client caches its conversation itself
        target = messages[last_user - 1]
        block = _markable_block(target.get("content") if isinstance(target, dict) else None)
        if block is None:
            return None
        tokens: int | None = None  # None: past the minimum already, not counted
        if stable_tokens < minimum:
            tokens = stable_tokens
            for m in messages[:last_user]:
                data = orjson.dumps(_message_without_marks(m), option=_SORTED)
                tokens += self._tokens(hashlib.sha256(data).digest(), lambda m=m: _message_text(m))
                if tokens >= minimum:
                    break
        i, j = last_user - 1, max(block, 0)  # string content becomes one text block
        return _Slot((2, i, j), f"messages[{i}].content[{j}]", "5m", True, "history", conversation_id, tokens)

    def _hasher(self, tenant: str, model: str) -> Any:
        """A SHA-256 already fed the scope (tenant, model); built once per scope, then copied."""
        root = self._roots.get((tenant, model))
        if root is None:
            root = hashlib.sha256(b"thrifty/prompt-prefix/1\x00")
            _feed(root, b"t", tenant.encode())
            _feed(root, b"m", model.encode())
            with self._memo_lock:
                if len(self._roots) >= self._memo_size:
                    self._roots.clear()
                self._roots[(tenant, model)] = root
        return root.copy()

    def _minimum(self, model: str) -> int:
        n = self._minimums[model] = min_cacheable_tokens(model)
        if len(self._minimums) > self._memo_size:
            self._minimums.clear()
        return n

    def _tokens(self, key: bytes, content: Callable[[], tuple[str, int]]) -> int:
        """Tokens of a piece of content (its text, plus fixed counts), counted once per digest."""
        n = self._memo.get(key)
        if n is not None:
            return n
        text, fixed = content()
        n = fixed + (len(text) // 4 if len(text) > _EXACT_MAX_CHARS else self._count(text))
        with self._memo_lock:
            while len(self._memo) >= self._memo_size:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = n
        return n


# ---------------------------------------------------------------- helpers

def _feed(h: Any, tag: bytes, data: bytes) -> None:
    # Tagged and length-prefixed, so that different splits of the same bytes hash differently.
    h.update(tag + len(data).to_bytes(8, "little"))
    h.update(data)


def _prefix_id(h: Any) -> str:
    return "thr-" + h.hexdigest()[:16]


def _without(obj: Any, *keys: str) -> Any:
    if isinstance(obj, dict) and any(k in obj for k in keys):
        return {k: v for k, v in obj.items() if k not in keys}
    return obj


def _message_without_marks(m: Any) -> Any:
    content = m.get("content") if isinstance(m, dict) else None
    if not isinstance(content, list):
        return m
    return {**m, "content": [_without(b, "cache_control") for b in content]}


def _free(holder: Any) -> bool:
    """A dict with no cache_control of its own yet."""
    return isinstance(holder, dict) and holder.get("cache_control") is None


def _markable_block(content: Any) -> int | None:
    """Index of the last block of a message that may carry cache_control; -1 for string content."""
    if isinstance(content, str):
        return -1 if content else None
    if not isinstance(content, list):
        return None
    for j in range(len(content) - 1, -1, -1):
        b = content[j]
        if not isinstance(b, dict) or b.get("type") in _NO_CACHE_CONTROL:
            continue
        if b.get("type") == "text" and not b.get("text"):
            continue  # empty text blocks cannot be cached
        return j if b.get("cache_control") is None else None
    return None


def _message_text(m: Any) -> tuple[str, int]:
    """What a message reads as, for counting: its text, and the tokens of images and binary documents."""
    parts: list[str] = []
    opaque = _content_text(m.get("content") if isinstance(m, dict) else None, parts)
    return "\n".join(parts), opaque


def _content_text(content: Any, parts: list[str]) -> int:
    if isinstance(content, str):
        parts.append(content)
        return 0
    opaque = 0
    for b in content if isinstance(content, list) else ():
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        if kind == "text":
            parts.append(str(b.get("text", "")))
        elif kind in ("image", "document"):
            source = b.get("source")
            if kind == "document" and isinstance(source, dict) and source.get("type") == "text":
                parts.append(str(source.get("data", "")))
            else:
                opaque += OPAQUE_TOKENS
        elif kind == "tool_result":
            opaque += _content_text(b.get("content"), parts)
        else:  # tool_use, thinking, ...: as the model reads them
            parts.append(orjson.dumps(_without(b, "cache_control", "signature"), option=_SORTED).decode())
    return opaque


# Upper-bound counting (`_client_prefix_bound`): framing tokens per block, the most one image costs
# (Anthropic bills about width*height/750 after resizing to at most ~1.15 megapixels), and what a
# document that cannot be bounded counts as.
_FRAMING = 16
_IMAGE_MAX_TOKENS = 1600
_UNBOUNDED = 1 << 60


def _json_bytes(obj: Any) -> int:
    return len(orjson.dumps(_without(obj, "cache_control"), option=_SORTED))


def _bytes_bound(content: Any) -> int:
    if isinstance(content, str):
        return len(content.encode()) + _FRAMING
    n = 0
    for b in content if isinstance(content, list) else ():
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        source = b.get("source")
        if kind == "text":
            n += len(str(b.get("text", "")).encode())
        elif kind == "image":
            n += _IMAGE_MAX_TOKENS
        elif kind == "document" and isinstance(source, dict) and source.get("type") == "text":
            n += len(str(source.get("data", "")).encode())
        elif kind == "document":
            return _UNBOUNDED
        elif kind == "tool_result":
            n += _bytes_bound(b.get("content"))
        else:
            n += _json_bytes(b)
        n += _FRAMING
    return n


def _ttl_of(cc: Any) -> str:
    ttl = cc.get("ttl", "5m") if isinstance(cc, dict) else "5m"
    return ttl if ttl in TTLS else "5m"


def _client_marks(body: dict[str, Any], tools: list[Any], system: list[Any], messages: list[Any]) -> list[_Slot]:
    """The client's breakpoints, in prompt order."""
    marks: list[_Slot] = []
    for i, t in enumerate(tools):
        if isinstance(t, dict) and t.get("cache_control") is not None:
            marks.append(_Slot((0, i, 0), f"tools[{i}]", _ttl_of(t["cache_control"]), False))
    for i, b in enumerate(system):
        if isinstance(b, dict) and b.get("cache_control") is not None:
            marks.append(_Slot((1, i, 0), f"system[{i}]", _ttl_of(b["cache_control"]), False))
    for i, m in enumerate(messages):
        content = m.get("content") if m.__class__ is dict else None
        if content.__class__ is not list:
            continue
        for j, b in enumerate(content):
            if b.__class__ is not dict:
                continue
            if b.get("cache_control") is not None:
                marks.append(_Slot((2, i, j), f"messages[{i}].content[{j}]", _ttl_of(b["cache_control"]), False))
            inner = b.get("content")
            if inner.__class__ is list:  # tool_result content blocks
                for k, sub in enumerate(inner):
                    # Counted toward the limit, to stay under it whichever way the provider counts.
                    if sub.__class__ is dict and sub.get("cache_control") is not None:
                        marks.append(_Slot((2, i, j), f"messages[{i}].content[{j}].content[{k}]",
                                           _ttl_of(sub["cache_control"]), False))
    if body.get("cache_control") is not None:
        marks.append(_Slot((3, 0, 0), "cache_control", _ttl_of(body["cache_control"]), False))
    return marks


def _valid_ttl_order(slots: Sequence[_Slot]) -> bool:
    seen_5m = False
    for s in slots:
        if s.ttl == "5m":
            seen_5m = True
        elif seen_5m:
            return False
    return True


def _choose(candidates: list[_Slot], free: int, minimum: int) -> list[_Slot]:
    """The candidates that fit, by priority: stable prefix end, history, tools alone."""
    if free <= 0:
        return []
    usable = [c for c in candidates if c.tokens is None or c.tokens >= minimum]
    rank = {"system": 0, "history": 1, "tools": 2}
    usable.sort(key=lambda c: rank[c.segment])
    return sorted(usable[:free], key=lambda c: c.order)


def _order_ttls(slots: list[_Slot]) -> None:
    """Make the TTLs valid (no 1h after a 5m) by changing only Thrifty's own breakpoints."""
    after_client_5m = False
    for s in slots:
        if not s.added:
            after_client_5m = after_client_5m or s.ttl == "5m"
        elif after_client_5m:
            s.ttl = "5m"
    later_1h = False
    for s in reversed(slots):
        if s.ttl == "1h":
            later_1h = True
        elif later_1h and s.added:
            s.ttl = "1h"


def _cache_control(ttl: str) -> dict[str, str]:
    # 5m is the provider's default; leaving its ttl out keeps older API versions happy.
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


def _apply(body: dict[str, Any], chosen: list[_Slot], system: Any) -> dict[str, Any]:
    """A copy of `body` with `chosen` breakpoints added; only the changed containers are copied."""
    out = dict(body)
    for slot in chosen:
        kind, i, j = slot.order
        cc = _cache_control(slot.ttl)
        if kind == 0:
            tools = out["tools"] = list(out["tools"])
            tools[i] = {**tools[i], "cache_control": cc}
        elif kind == 1:
            blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
            blocks[i] = {**blocks[i], "cache_control": cc}
            out["system"] = blocks
        else:
            messages = out["messages"] = list(out["messages"])
            m = messages[i]
            content = m["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content, "cache_control": cc}]
            else:
                content = list(content)
                content[j] = {**content[j], "cache_control": cc}
            messages[i] = {**m, "content": content}
    return out


def _plan(body: dict[str, Any], primary: str | None, slots: list[_Slot], ids: list[str]) -> CachePlan:
    return CachePlan(
        body, primary,
        tuple(Breakpoint(s.where, s.ttl, s.added, s.segment, s.prefix_id, s.tokens) for s in slots),
        prefix_ids=tuple(ids))
