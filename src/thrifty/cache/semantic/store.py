"""Where semantic-cache entries live: in this process, or in Redis shared by gateway replicas.

The ANN index of each replica is a local copy; the store is the truth. `changes()` hands a replica
what other replicas put or deleted since it last asked, so it can keep its index in step (the
Redis store reads a stream that every write appends to). A lookup re-reads its candidate from
the store, so an entry deleted or expired elsewhere is never served, even before the change
reaches this replica.
"""

from __future__ import annotations

import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from thrifty.errors import SemanticStoreUnavailable


@dataclass(frozen=True, slots=True)
class SemanticEntry:
    entry_id: str
    namespace: str
    text: str  # what was embedded: the verifier compares it with the query
    payload: bytes  # the cached answer, opaque here
    vector: np.ndarray | None = None  # kept by stores that other replicas rebuild from
    created_at: float = 0.0
    answer_key: str = ""  # entries with the same key in a namespace give the same answer ("": only itself)

    @property
    def cluster(self) -> str:
        """The answer cluster this entry votes for (thrifty.cache.semantic.vote)."""
        return self.answer_key or self.entry_id


@dataclass(frozen=True, slots=True)
class Change:
    op: str  # "put" or "delete"
    entry_id: str
    entry: SemanticEntry | None = None  # for "put"


class EntryStore(ABC):
    @abstractmethod
    def put(self, entry: SemanticEntry) -> None: ...

    @abstractmethod
    def get(self, entry_id: str) -> SemanticEntry | None: ...

    @abstractmethod
    def delete(self, entry_id: str) -> SemanticEntry | None:
        """Remove an entry; returns it (without its vector) when it existed."""

    @abstractmethod
    def __len__(self) -> int: ...

    def entries(self) -> Iterator[SemanticEntry]:
        """Every entry with its vector, to build a replica's index at start."""
        return iter(())

    def changes(self) -> list[Change]:
        """What other replicas changed since the last call (nothing, for a process-local store)."""
        return []

    def close(self) -> None:
        return None


class InMemoryEntryStore(EntryStore):
    """Entries in a dict, oldest evicted first past `max_entries`.

    Vectors are dropped by default: the index holds this process's only needed copy.
    """

    def __init__(self, max_entries: int | None = None, *, keep_vectors: bool = False) -> None:
        self.max_entries = max_entries
        self.keep_vectors = keep_vectors
        self._entries: OrderedDict[str, SemanticEntry] = OrderedDict()
        self._evicted: list[Change] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, entry: SemanticEntry) -> None:
        if not self.keep_vectors and entry.vector is not None:
            entry = replace(entry, vector=None)
        with self._lock:
            self._entries[entry.entry_id] = entry
            self._entries.move_to_end(entry.entry_id)
            while self.max_entries is not None and len(self._entries) > self.max_entries:
                old_id, _ = self._entries.popitem(last=False)
                self._evicted.append(Change("delete", old_id))

    def get(self, entry_id: str) -> SemanticEntry | None:
        return self._entries.get(entry_id)

    def delete(self, entry_id: str) -> SemanticEntry | None:
        with self._lock:
            return self._entries.pop(entry_id, None)

    def entries(self) -> Iterator[SemanticEntry]:
        return iter(list(self._entries.values()))

    def changes(self) -> list[Change]:
        # Capacity evictions are the only changes the owner did not make itself.
        with self._lock:
            out, self._evicted = self._evicted, []
        return out


class RedisEntryStore(EntryStore):
    """Entries as Redis hashes plus a change stream that replicas follow.

    Keys: `{prefix}:e:{entry_id}` (hash: ns, text, payload, vec as float32 bytes, ts) and
    `{prefix}:log` (stream of op/id/origin, trimmed to about `log_length`). A replica that fell
    further behind than the trimmed stream reaches rebuilds from `entries()`.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "thrifty:sc",
                 ttl_s: int | None = None, log_length: int = 100_000, client=None) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis is a declared dependency
            raise SemanticStoreUnavailable("the Redis entry store needs the redis package") from exc
        self._redis_error = redis.RedisError
        self._r = client or redis.Redis.from_url(url, socket_timeout=2.0)
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.log_length = log_length
        self.origin = uuid.uuid4().hex[:12]  # tells this replica's own writes apart in the log
        self._cursor = self._call(self._last_log_id)
        self.fell_behind = False

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except self._redis_error as exc:
            raise SemanticStoreUnavailable(f"redis: {exc}") from exc

    def _key(self, entry_id: str) -> str:
        return f"{self.prefix}:e:{entry_id}"

    @property
    def _log(self) -> str:
        return f"{self.prefix}:log"

    def _last_log_id(self) -> bytes:
        last = self._r.xrevrange(self._log, count=1)
        return last[0][0] if last else b"0-0"

    def __len__(self) -> int:
        return sum(1 for _ in self._call(lambda: list(self._r.scan_iter(match=self._key("*"), count=1000))))

    def put(self, entry: SemanticEntry) -> None:
        fields = {"ns": entry.namespace, "text": entry.text, "payload": entry.payload,
                  "ts": repr(entry.created_at or time.time())}
        if entry.answer_key:
            fields["ak"] = entry.answer_key
        if entry.vector is not None:
            fields["vec"] = np.asarray(entry.vector, dtype=np.float32).tobytes()

        def write():
            pipe = self._r.pipeline(transaction=True)
            pipe.delete(self._key(entry.entry_id))
            pipe.hset(self._key(entry.entry_id), mapping=fields)
            if self.ttl_s:
                pipe.expire(self._key(entry.entry_id), self.ttl_s)
            pipe.xadd(self._log, {"op": "put", "id": entry.entry_id, "origin": self.origin},
                      maxlen=self.log_length, approximate=True)
            pipe.execute()
        self._call(write)

    def _decode(self, entry_id: str, raw: dict) -> SemanticEntry:
        vec = raw.get(b"vec")
        return SemanticEntry(entry_id=entry_id, namespace=raw[b"ns"].decode(), text=raw[b"text"].decode(),
                             payload=raw[b"payload"],
                             vector=np.frombuffer(vec, dtype=np.float32).copy() if vec else None,
                             created_at=float(raw.get(b"ts", b"0")), answer_key=raw.get(b"ak", b"").decode())

    def get(self, entry_id: str) -> SemanticEntry | None:
        raw = self._call(self._r.hgetall, self._key(entry_id))
        return self._decode(entry_id, raw) if raw else None

    def delete(self, entry_id: str) -> SemanticEntry | None:
        def remove():
            pipe = self._r.pipeline(transaction=True)
            pipe.hgetall(self._key(entry_id))
            pipe.delete(self._key(entry_id))
            pipe.xadd(self._log, {"op": "delete", "id": entry_id, "origin": self.origin},
                      maxlen=self.log_length, approximate=True)
            return pipe.execute()[0]
        raw = self._call(remove)
        return replace(self._decode(entry_id, raw), vector=None) if raw else None

    def entries(self) -> Iterator[SemanticEntry]:
        cut = len(self._key(""))
        for key in self._call(lambda: list(self._r.scan_iter(match=self._key("*"), count=1000))):
            raw = self._call(self._r.hgetall, key)
            if raw:
                yield self._decode(key.decode()[cut:], raw)

    def changes(self, limit: int = 1000) -> list[Change]:
        def read():
            return self._r.xread({self._log: self._cursor}, count=limit)
        out: list[Change] = []
        first = self._call(self._r.xrange, self._log, "-", "+", 1)
        if first and _stream_id(first[0][0]) > _stream_id(self._cursor) and self._cursor != b"0-0":
            # Events between our cursor and the stream's start were trimmed away.
            self.fell_behind = True
        for _, events in self._call(read) or []:
            for event_id, fields in events:
                self._cursor = event_id
                if fields.get(b"origin", b"").decode() == self.origin:
                    continue
                entry_id = fields[b"id"].decode()
                if fields[b"op"] == b"put":
                    entry = self.get(entry_id)
                    if entry is not None:
                        out.append(Change("put", entry_id, entry))
                else:
                    out.append(Change("delete", entry_id))
        return out

    def clear(self) -> None:
        """Delete every entry and the log under this prefix (tests, resets)."""
        def wipe():
            keys = list(self._r.scan_iter(match=f"{self.prefix}:*", count=1000))
            if keys:
                self._r.delete(*keys)
        self._call(wipe)
        self._cursor = b"0-0"

    def close(self) -> None:
        self._r.close()


def _stream_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.decode().partition("-")
    return int(ms), int(seq or 0)
