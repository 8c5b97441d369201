"""The semantic cache as a pipeline stage (after the exact cache, before routing).

Only for routes that mark it eligible (FAQ-style traffic). The embedded text is the last user
turn; the namespace is the tenant (or the route's shared namespace), a hash of everything else
that shapes the answer (system prompt, earlier turns, tools, output format) and the model asked
for. Embedding and search are CPU work, so they run in a worker thread. Feedback on a served
answer (`POST /v1/thrifty/feedback`): bad evicts it and tightens its namespace; good makes the
query another key of that answer's cluster. Every stored answer carries the key of its text
(`answer_key`), so entries with the same answer vote together (thrifty.cache.semantic.vote) and an
exploration (a would-be hit sent upstream, `explore` on the policy) compares the fresh answer
with the cached one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson

from thrifty.cache.entry import Entry, decode_entry, encode_entry
from thrifty.cache.stage import served_from_cache, served_model
from thrifty.contract import Answer, Call, Next, Stage, after_answer
from thrifty.errors import CorruptEntry, IncompleteStream, SemanticStoreUnavailable
from thrifty.pricing import Accountant

log = logging.getLogger("thrifty.cache")

# Parameters that do not change what the answer says, left out of the namespace.
_NOT_CONTEXT = frozenset({"messages", "system", "model", "stream", "stream_options", "user", "metadata",
                          "store", "service_tier", "prompt_cache_key", "n"})


def query_and_context(body: dict[str, Any]) -> tuple[str, str] | None:
    """(last user turn's text, everything else that shapes the answer) or None if not eligible."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or body.get("n") not in (None, 1):
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) != len(content):
            return None  # images or tool results: not a question to match by meaning
        content = "\n".join(t for t in texts if isinstance(t, str))
    if not isinstance(content, str) or not content.strip():
        return None
    context = {k: v for k, v in body.items() if k not in _NOT_CONTEXT}
    context["history"] = messages[:-1]
    context["system"] = body.get("system")
    return content, orjson.dumps(context, option=orjson.OPT_SORT_KEYS).decode()


class SemanticCaching(Stage):
    name = "semantic_cache"

    def __init__(self, cache: Any, accountant: Accountant, *, served_memory: int = 100_000) -> None:
        self.cache = cache  # thrifty.cache.semantic.SemanticCache
        self.accountant = accountant
        # request id -> (tenant that received the answer, entry id, query): feedback is taken only from
        # the tenant the answer went to, so no tenant can evict (or learn of) another's entries.
        self._served: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self._served_memory = served_memory

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        from thrifty.cache.semantic import namespace_key

        if not call.policy.semantic_cache:
            return await call_next(call)
        body = call.body
        if "messages" not in body:  # a dialect without chat messages (Responses' `input`): its canonical form
            try:
                body = call.wire.request_to_canonical(body, call.model)
            except Exception:  # noqa: BLE001 - not translatable here: the call is just not eligible
                return await call_next(call)
        found = query_and_context(body)
        if found is None:
            return await call_next(call)
        text, context = found
        scope = call.policy.semantic_namespace or call.tenant
        namespace = namespace_key(scope, "", f"{call.wire.name}:{call.model}", context)
        try:
            found = await asyncio.to_thread(self.cache.lookup_detail, namespace, text)
        except SemanticStoreUnavailable as exc:
            log.warning("semantic cache unavailable, calling upstream: %s", exc)
            answer = await call_next(call)
            answer.cache = "unavailable"
            return answer
        call.embedding = self.cache.recent_vector(text)  # for a learned router downstream, if computed
        if found.entry is not None:
            entry_record = found.entry
            try:
                entry = decode_entry(entry_record.payload, entry_record.entry_id)
            except CorruptEntry as err:
                log.warning("semantic cache: ignoring corrupt entry %s: %s", entry_record.entry_id, err)
                await asyncio.to_thread(self.cache.remove, entry_record.entry_id)
            else:
                self._remember(call.request_id, call.tenant, entry_record.entry_id, text)
                return served_from_cache(call, entry, "semantic")
        answer = await call_next(call)
        if answer.cache in ("exact", "semantic"):
            return answer

        async def store(done: Answer, events: list[dict[str, Any]] | None) -> None:
            try:
                body = done.body if events is None else call.wire.assemble(events)
            except IncompleteStream:
                return
            entry = Entry(surface=call.wire.name, response=body, usage=done.usage, cost_usd=done.cost,
                          served_model=served_model(call), tier=call.tier, created_at=time.time(), ttl_s=0,
                          baseline_usd=self.accountant.of_call(call, done).baseline_usd)
            entry_id = call.request_id
            key = _answer_key(call, body)
            try:
                if found.explored is not None:
                    same = bool(key) and key == found.explored.answer_key
                    await asyncio.to_thread(self.cache.explored, namespace, found.explored, found.score, same)
                await asyncio.to_thread(self.cache.add, namespace, text, entry_id, encode_entry(entry, entry_id),
                                        None, key)
            except SemanticStoreUnavailable as exc:
                log.warning("semantic cache unavailable, answer not stored: %s", exc)

        return await after_answer(answer, store, collect=True)

    def _remember(self, request_id: str, tenant: str, entry_id: str, text: str) -> None:
        self._served[request_id] = (tenant, entry_id, text)
        while len(self._served) > self._served_memory:
            self._served.popitem(last=False)

    async def feedback(self, tenant: str, request_id: str, bad: bool) -> dict[str, Any] | None:
        """A client's verdict on an answer this replica served from the semantic cache to
        `tenant`; None when it served no such answer to that tenant (another tenant's request
        id is not told apart from an unknown one)."""
        served = self._served.get(request_id)
        if served is None or served[0] != tenant:
            return None
        entry_id = served[1]
        threshold = await asyncio.to_thread(self.cache.feedback, entry_id, bad)
        if bad:
            self._served.pop(request_id, None)
        else:  # the query was served this answer and it was right: one more key of its cluster
            try:
                await asyncio.to_thread(self.cache.confirm, entry_id, served[2])
            except SemanticStoreUnavailable as exc:
                log.warning("semantic cache unavailable, confirmed query not stored: %s", exc)
        return {"request_id": request_id, "known": True, "evicted": bad, "namespace_threshold": threshold}


def _answer_key(call: Call, body: dict[str, Any]) -> str:
    """The key of the answer's text ("" when it has none, e.g. only tool calls)."""
    from thrifty.cache.semantic.semantic import answer_key

    try:
        canonical = call.wire.response_to_canonical(body, call.model)
        content = canonical["choices"][0]["message"].get("content")
    except Exception:  # noqa: BLE001 - an answer shape we cannot read: no key, the entry stands alone
        return ""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return answer_key(content) if isinstance(content, str) and content.strip() else ""
