"""Which scopes a call belongs to: its tenant, feature, user, virtual key, agent task, and global.

The virtual key enters only as `key_id(key)`, a short SHA-256 digest: budgets, Redis keys, logs
and webhooks never hold a key itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thrifty.contract import Call

GLOBAL = "*"
_MAX_VALUE = 128  # longer client-chosen values are replaced by their digest in counter keys


def key_id(key: str) -> str:
    """The id budgets use for a virtual key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class CallScopes:
    tenant: str
    feature: str | None = None
    user: str | None = None
    key: str | None = None  # key_id of the virtual key
    task: str | None = None

    def value(self, scope: str) -> str | None:
        if scope == "global":
            return GLOBAL
        return getattr(self, scope) or None

    @classmethod
    def of(cls, call: "Call") -> "CallScopes":
        api_key = call.wire.api_key(call.headers)
        return cls(tenant=call.tenant, feature=call.feature or None, user=call.user or None,
                   key=key_id(api_key) if api_key else None, task=call.task or None)


def key_part(value: str) -> str:
    """A scope value made safe as one `:`-separated part of a counter key."""
    if len(value) > _MAX_VALUE:
        return "#" + hashlib.sha256(value.encode()).hexdigest()[:32]
    if "%" in value or ":" in value or "/" in value or "#" in value:
        value = value.replace("%", "%25").replace(":", "%3A").replace("/", "%2F").replace("#", "%23")
    return value
