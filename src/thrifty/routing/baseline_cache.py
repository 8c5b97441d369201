"""The automatic prompt caching a call would have had on its baseline deployment.

When routing moves a call off the baseline model, its saving is the baseline model priced on
the call's tokens minus what the served model cost (pricing/savings.py). If the baseline's
provider caches prompt prefixes automatically (OpenAI and Azure OpenAI: the `cache_key` wires),
a client sending the same traffic directly would have had that discount anyway, and pricing the
baseline without it claims the provider's discount as Thrifty's routing saving.

This module estimates it. It remembers, per tenant and baseline deployment, the prefixes of the
requests that had that baseline (whatever actually served them: in the counterfactual every one
of them went there and warmed its cache), and for a new request finds the longest prefix seen
within the cache's lifetime. The rule applied is OpenAI's documented one (platform.openai.com/docs/
guides/prompt-caching): prompts of 1,024 tokens or more, the cached part a multiple of 128 tokens,
entries cleared after 5 to 10 minutes of inactivity (LIFETIME_S takes the 10; "up to an hour"
off-peak is not assumed), and requests routed by a hash of about their first 256 tokens plus
`prompt_cache_key`: beyond about 15 requests a minute for one such route, requests overflow to
machines without the prefix and miss (the same reading as the emulator's, docs/emulator.md).

A request is cut into parts in prompt order: what comes before the messages (tools, output
schema, instructions, system), then each message (or Responses input item). Prefixes are
compared part by part, so a prefix shared within a part (two long messages that differ only near
their end) is not credited to the client: the estimate can lean towards Thrifty there. The
cached tokens are the served call's prompt tokens times the shared prefix's share of the
request's characters, floored to the 128-token grid (`pricing.savings.automatic_cache_tokens`). Each replica keeps its own
memory, so behind several replicas the client's counterfactual cache is underestimated as well.
The figure is part of the routing saving, which is an estimate anyway.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable

import orjson

LIFETIME_S = 600.0  # OpenAI: cleared after 5-10 minutes of inactivity (the longer end)
ROUTE_RPM = 15  # OpenAI: about 15 requests a minute per prefix + prompt_cache_key before overflow
ROUTE_WINDOW_S = 60.0
ROUTE_CHARS = 1024  # the routing hash covers about the first 256 tokens: ~4 characters each

# Request fields that come before the conversation in the prompt the provider caches.
_PREAMBLE = ("tools", "tool_choice", "functions", "response_format", "text", "instructions", "system")


def request_parts(body: dict[str, Any]) -> list[bytes]:
    """The request in prompt order: the preamble, then each message or input item (serialised)."""
    preamble = {k: body[k] for k in _PREAMBLE if body.get(k) is not None}
    parts = [orjson.dumps(preamble, option=orjson.OPT_SORT_KEYS)]
    turns = body.get("messages")
    if turns is None:
        turns = body.get("input")
    if isinstance(turns, list):
        parts.extend(orjson.dumps(t, option=orjson.OPT_SORT_KEYS) for t in turns)
    elif turns is not None:
        parts.append(orjson.dumps(turns))
    return parts


class AutomaticCacheMemory:
    """Prefixes lately sent (in the counterfactual) to each baseline deployment, per tenant."""

    def __init__(self, *, lifetime_s: float = LIFETIME_S, max_prefixes: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_s = lifetime_s
        self.max_prefixes = max_prefixes
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # prefix digest -> last sight
        self._routes: OrderedDict[bytes, deque[float]] = OrderedDict()  # route digest -> recent sights
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def sight(self, tenant: str, baseline: str, body: dict[str, Any]) -> float:
        """Record the request as sent to `baseline`; the share of its characters (0-1) in the
        longest prefix a request of this tenant sent there within the cache's lifetime."""
        parts = request_parts(body)
        total = sum(len(p) for p in parts)
        scope = f"{tenant}\0{baseline}\0{body.get('prompt_cache_key', '')}"  # OpenAI scopes by the key too
        h = hashlib.blake2b(scope.encode(), digest_size=16)
        digests, lengths, length = [], [], 0
        for p in parts:
            h.update(len(p).to_bytes(8, "little"))
            h.update(p)
            digests.append(h.copy().digest())
            length += len(p)
            lengths.append(length)
        # The route: the prefix digest covering the first ROUTE_CHARS characters (or all of it).
        route_at = next((i for i, upto in enumerate(lengths) if upto >= ROUTE_CHARS), len(digests) - 1)
        route = digests[route_at]
        now = self._clock()
        shared = 0
        with self._lock:
            if self._overflows(route, now):
                return 0.0  # served by a machine without the prefix: a miss, and nothing cached there
            for digest, upto in zip(digests, lengths):
                seen = self._seen.get(digest)
                if seen is None or now - seen > self.lifetime_s:
                    break  # a prefix past a cold one cannot be cached either
                shared = upto
            for digest in digests:
                self._seen[digest] = now
                self._seen.move_to_end(digest)
            while len(self._seen) > self.max_prefixes:
                self._seen.popitem(last=False)
        return shared / total if total else 0.0

    def _overflows(self, route: bytes, now: float) -> bool:
        """Count a request against its route; True when it is beyond the route's rate."""
        seen = self._routes.pop(route, None) or deque()
        self._routes[route] = seen
        while seen and seen[0] <= now - ROUTE_WINDOW_S:
            seen.popleft()
        seen.append(now)
        while len(self._routes) > self.max_prefixes:
            self._routes.popitem(last=False)
        return len(seen) > ROUTE_RPM
