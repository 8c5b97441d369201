"""A chat fine-tuning set from traffic a small model could take over (the seeds' playbook, step 7).

The calls kept are those the routing rules place in the given tier (the gateway's own `Router` on
the request's features) whose answer came from a stronger model (one in a tier above it): a
small model fine-tuned on them learns to answer that tier's requests as the stronger one did
(seeds/003, "Only then model swaps": fine-tune a small model on Tier 1 traffic once you know which
task). Only stored bodies are used (request_body and response_body both kept): nothing is
reconstructed from token counts.

Each line is the chat fine-tuning format OpenAI documents (`{"messages": [...]}`): the request's
messages in the canonical (OpenAI chat) form, the stronger model's answer appended as the
assistant turn. A held-out share goes to a second file, chosen by a hash of the call's id, so the
split is the same on every run and does not depend on the order of the source.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from thrifty.analysis.schema import TABLE
from thrifty.analysis.sources.wire_log import dialect_of
from thrifty.config import Config
from thrifty.routing import Router, features_from_body
from thrifty.wire import Wire


@dataclass
class FinetuneReport:
    tier: str
    out: str
    holdout_out: str
    train: int = 0
    holdout: int = 0
    by_request_type: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # why calls with bodies were left out

    def as_json(self) -> dict[str, Any]:
        return {"tier": self.tier, "out": self.out, "holdout_out": self.holdout_out, "train": self.train,
                "holdout": self.holdout, "by_request_type": dict(self.by_request_type),
                "skipped": dict(self.skipped)}


def holdout_path(out: str) -> str:
    """`train.jsonl` -> `train.holdout.jsonl`."""
    p = Path(out)
    return str(p.with_name(p.stem + ".holdout" + (p.suffix or ".jsonl")))


def in_holdout(call_id: str, share: float) -> bool:
    """Whether a call is held out: the first 8 bytes of SHA-256 of its id, as a fraction, below `share`."""
    h = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    return h / 2**64 < share


def export_finetune(con: Any, config: Config, tier: str, out: str, *, holdout: float = 0.1) -> FinetuneReport:
    if config.routing is None:
        raise ValueError("the config has no routing section: its tiers say which requests a tier takes")
    order = config.routing.order()
    if tier not in order:
        raise ValueError(f"unknown tier {tier!r} (the config's tiers: {', '.join(order)})")
    if not 0 <= holdout < 1:
        raise ValueError(f"--holdout must be at least 0 and below 1, not {holdout}")
    router = Router(config.routing, deployments=config.deployments, aliases=config.aliases)
    rank = {t: i for i, t in enumerate(order)}
    tier_of_model: dict[str, str] = {}
    for t in reversed(order):  # a model listed in several tiers counts as its weakest
        for name in config.routing.tiers[t]:
            dep = config.deployments.get(name)
            tier_of_model[dep.model if dep else name] = t
    auto = config.routing.model_prefix + config.routing.auto_name
    report = FinetuneReport(tier, out, holdout_path(out))
    cur = con.execute(f"SELECT id, tenant, feature, call_site, model, request_type, request_body, response_body "
                      f"FROM {TABLE} WHERE request_body IS NOT NULL AND response_body IS NOT NULL "
                      f"AND coalesce(status, 200) = 200 ORDER BY ts NULLS FIRST, source_line")
    with open(out, "w", encoding="utf-8") as train, open(report.holdout_out, "w", encoding="utf-8") as held:
        while batch := cur.fetchmany(5_000):
            for call_id, tenant, feature, call_site, model, rtype, req, resp in batch:
                reason = _one(report, router, rank, tier_of_model, auto, tier, holdout, train, held,
                              call_id, tenant, feature, call_site, model, rtype, req, resp)
                if reason:
                    report.skipped[reason] += 1
    return report


def _one(report: FinetuneReport, router: Router, rank: dict[str, int], tier_of_model: dict[str, str], auto: str,
         tier: str, holdout: float, train: TextIO, held: TextIO, call_id: str, tenant: str | None,
         feature: str | None, call_site: str | None, model: str | None, rtype: str | None, req: str,
         resp: str) -> str | None:
    """Writes one call's example, or says why it was left out."""
    try:
        body, answer = json.loads(req), json.loads(resp)
    except ValueError:
        return "body not JSON"
    if not isinstance(body, dict) or not isinstance(answer, dict):
        return "body not a JSON object"
    wire = dialect_of(body, answer)
    served = tier_of_model.get(model or "")
    if served is None:
        return "served by a model outside the routing tiers"
    if rank[served] <= rank[tier]:
        return "answered by the tier itself or a weaker one"
    headers = {k: v for k, v in (("x-thrifty-feature", feature), ("x-thrifty-call-site", call_site)) if v}
    features = features_from_body(body, wire, headers=headers, tenant=tenant)
    if router.decide(features, auto).tier != tier:
        return "the routing rules put it in another tier"
    messages = _messages(wire, body, answer, model or "")
    if messages is None:
        return "no answer text"
    line = json.dumps({"messages": messages}, ensure_ascii=False) + "\n"
    if in_holdout(call_id, holdout):
        held.write(line)
        report.holdout += 1
    else:
        train.write(line)
        report.train += 1
    report.by_request_type[rtype or features.request_type] += 1
    return None


def _messages(wire: Wire, body: dict[str, Any], answer: dict[str, Any], model: str) -> list[Any] | None:
    """The request's chat messages (canonical form) with the answer appended as the assistant turn."""
    try:
        canonical = wire.request_to_canonical(body, model)
        reply = wire.response_to_canonical(answer, model)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    choices = reply.get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    if not isinstance(message, dict) or not (message.get("content") or message.get("tool_calls")):
        return None
    assistant = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        assistant["tool_calls"] = message["tool_calls"]
    return [*canonical.get("messages", []), assistant]
