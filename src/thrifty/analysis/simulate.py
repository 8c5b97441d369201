"""Replay recorded traffic through a candidate policy: what each lever would have saved on it.

The levers are the gateway's own, in the gateway's order (exact cache -> routing -> shaping ->
prompt cache -> batch), and the saving of each is priced by the one counterfactual,
`thrifty.pricing.Accountant`: nothing here re-implements a lever.

- exact cache: eligibility and keys from `thrifty.cache.keys` (needs the stored request body);
  a repeat within the route's TTL is answered from the cache and saves its observed cost.
- routing: `thrifty.routing.Router` decides from the request's features (from the body, else
  from the columns a token-only trace has: input tokens, request type, feature, call site).
  Escalation is not simulated; with outcomes (`--outcomes`) the expected quality change is.
- shaping: the route's `output_cap` (`thrifty.shaping.request.limit_output` on a body); an
  answer longer than the cap is counted at the cap, an estimated saving.
- prompt cache: replayed from `prefix_hashes` with the provider's rules (`cache_replay.py`).
- batch: calls of a `defer: true` route priced at the provider's batch price.

The baseline of a call is the traffic as it was observed (its model, its tokens, its own cache
reads), priced with genai-prices, so the savings of every call add up to baseline - simulated.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator, Protocol

from thrifty.analysis.cache_replay import AUTO_TTL_S, CACHE_RULES, PromptCacheReplay
from thrifty.analysis.schema import TABLE
from thrifty.analysis.sources.wire_log import dialect_of
from thrifty.cache.keys import cache_key, decide
from thrifty.config import Config
from thrifty.contract import AnsweredFromCache, Batched, BreakpointsAdded, Counted, Effect, ModelMoved, Usage
from thrifty.contract.levers import LEVERS
from thrifty.pricing import Accountant, PriceBook
from thrifty.routing import RequestFeatures, Router, features_from_body
from thrifty.shaping.request import limit_output
from thrifty.wire import OPENAI_CHAT, Wire

ZERO = Decimal(0)
_UNSET = object()
_MAX_EXACT_ENTRIES = 1_000_000  # bounds the replay's memory; the oldest entries go first
_COLUMNS = ("id", "ts", "tenant", "feature", "user_id", "call_site", "provider", "requested_model", "model",
            "lane", "status", "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens",
            "reasoning_tokens", "max_tokens", "prefix_hashes", "prompt_text", "request_type", "request_body")


@dataclass
class LeverTotal:
    saved_usd: Decimal = ZERO  # exact
    estimated_usd: Decimal = ZERO
    calls: int = 0

    def add(self, parts: list[tuple[Decimal, bool]]) -> None:
        """One call's saving from this lever: its (amount, estimated) parts."""
        for saved, estimated in parts:
            if estimated:
                self.estimated_usd += saved
            else:
                self.saved_usd += saved
        self.calls += 1


@dataclass
class Simulation:
    calls: int = 0
    priced_calls: int = 0
    baseline_usd: Decimal = ZERO
    simulated_usd: Decimal = ZERO
    levers: dict[str, LeverTotal] = field(default_factory=lambda: {lever: LeverTotal() for lever in LEVERS})
    unpriced_models: dict[str, int] = field(default_factory=dict)
    not_available: dict[str, str] = field(default_factory=dict)
    quality: dict[str, Any] | None = None
    cache_rules: tuple[dict[str, Any], ...] = CACHE_RULES

    def merge(self, other: "Simulation") -> None:
        """Adds the totals of a simulation of other calls (a worker's share)."""
        self.calls += other.calls
        self.priced_calls += other.priced_calls
        self.baseline_usd += other.baseline_usd
        self.simulated_usd += other.simulated_usd
        for name, t in other.levers.items():
            mine = self.levers.setdefault(name, LeverTotal())
            mine.saved_usd += t.saved_usd
            mine.estimated_usd += t.estimated_usd
            mine.calls += t.calls
        for model, n in other.unpriced_models.items():
            self.unpriced_models[model] = self.unpriced_models.get(model, 0) + n

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "priced_calls": self.priced_calls,
            "baseline_usd": float(self.baseline_usd), "simulated_usd": float(self.simulated_usd),
            "saved_usd": float(self.baseline_usd - self.simulated_usd),
            "levers": {name: {"saved_usd": float(t.saved_usd), "estimated_usd": float(t.estimated_usd),
                              "calls": t.calls} for name, t in self.levers.items() if t.calls},
            "unpriced_models": self.unpriced_models, "not_available": self.not_available,
            "quality": self.quality, "cache_rules": list(self.cache_rules),
        }


class RoutePolicies(Protocol):
    """The gateway's per-call lever settings (`thrifty.core.policy.Policies`, which the caller
    builds from the config: the composition root's, so passed in rather than imported here)."""

    def for_call(self, tenant: str, feature: str | None, model: str) -> Any: ...


class Simulator:
    """One candidate policy (a Thrifty config) replayed over a `traffic` table."""

    def __init__(self, config: Config, policies: RoutePolicies, *, prices: PriceBook | None = None,
                 default_model: str | None = None,
                 outcomes: dict[str, dict[str, float]] | None = None, auto_cache_ttl_s: float = AUTO_TTL_S) -> None:
        self.config = config
        self.prices = prices or PriceBook(config.prices)
        self.accountant = Accountant(self.prices)
        self.policies = policies
        self.router = (Router(config.routing, deployments=config.deployments, aliases=config.aliases,
                              prices=self.prices) if config.routing is not None else None)
        self.default_model = default_model
        self.outcomes = outcomes
        self.prompt_cache = PromptCacheReplay(self.prices, config.levers.prompt_cache.ttl, auto_cache_ttl_s)
        self._exact: OrderedDict[str, float] = OrderedDict()  # key -> when the entry expires
        self._providers: dict[tuple[str, str | None], str | None | object] = {}
        self._quality = {"matched": 0, "baseline_score": 0.0, "simulated_score": 0.0}

    def run(self, con: Any, *, progress: Callable[[int], None] | None = None,
            workers: int | None = None) -> Simulation:
        """The simulation of every call in `con`'s traffic table.

        Calls that no cache replay needs to see in order (no body, no prefix hashes) are
        independent of each other: on a large table they are spread over `workers` forked
        processes (default: up to 8 when there are at least PARALLEL_MIN_ROWS of them); the others
        are replayed here in time order, as the caches saw them.
        """
        result = Simulation()
        seen = {"body": False, "prefix": False}
        independent = con.execute(f"SELECT count(*) FROM {TABLE} WHERE {_INDEPENDENT}").fetchone()[0]
        if workers is None:
            workers = min(8, os.cpu_count() or 1) if independent >= PARALLEL_MIN_ROWS else 1
        where = None
        if workers > 1 and independent:
            self._parallel(con, workers, result, seen, progress)
            where = f"NOT ({_INDEPENDENT})"
        for row in _rows(con, where):
            self._one(row, result, seen)
            if progress is not None and result.calls % 10_000 == 0:
                progress(result.calls)
        if not seen["body"]:
            result.not_available["exact_cache"] = "the source has no request bodies"
        if not seen["prefix"]:
            result.not_available["prompt_cache"] = "the source has no prefix hashes"
        if self.router is None:
            result.not_available["routing"] = "the config has no routing section"
        if self.outcomes is not None:
            q = self._quality
            n = q["matched"]
            result.quality = {"matched_calls": n,
                              "baseline_score": q["baseline_score"] / n if n else None,
                              "simulated_score": q["simulated_score"] / n if n else None,
                              "change": (q["simulated_score"] - q["baseline_score"]) / n if n else None}
        return result

    def _parallel(self, con: Any, workers: int, result: Simulation, seen: dict[str, bool],
                  progress: Callable[[int], None] | None) -> None:
        global _WORKER
        _WORKER = self
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                chunks = _chunks(con.execute(f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} WHERE {_INDEPENDENT}"))
                for part, quality in pool.imap_unordered(_simulate_chunk, chunks):
                    result.merge(part)
                    for k, v in quality.items():
                        self._quality[k] += v
                    if progress is not None:
                        progress(result.calls)
        finally:
            _WORKER = None

    # --- one call -----------------------------------------------------------------------------

    def _one(self, row: dict[str, Any], result: Simulation, seen: dict[str, bool]) -> None:
        result.calls += 1
        model = row["model"] or row["requested_model"] or self.default_model
        if model is None:
            raise ValueError(f"call {row['id']}: no model in the source; pass a model for such traces")
        requested = row["requested_model"] or model
        provider = self._price_provider(model, row["provider"])
        observed = _observed_usage(row)
        baseline = self._cost(model, observed, provider, row["lane"] == "batch")
        if baseline is None:
            result.unpriced_models[model] = result.unpriced_models.get(model, 0) + 1
            return
        tenant = row["tenant"] or "-"
        policy = self.policies.for_call(tenant, row["feature"], requested)
        body, wire = _body(row["request_body"])
        seen["body"] |= body is not None
        seen["prefix"] |= bool(row["prefix_hashes"])
        hit = self._exact_hit(row, policy, tenant, wire, body, requested, baseline)
        if hit is not None:
            final, savings = ZERO, [("exact_cache", hit, False)]
        else:
            final, savings = self._levers(row, policy, body, wire, model, provider, requested, observed, baseline)
        result.priced_calls += 1
        result.baseline_usd += baseline
        result.simulated_usd += final
        by_lever: dict[str, list[tuple[Decimal, bool]]] = {}
        for lever, saved, estimated in savings:
            by_lever.setdefault(lever, []).append((saved, estimated))
        for lever, parts in by_lever.items():
            result.levers[lever].add(parts)

    def _exact_hit(self, row: dict[str, Any], policy: Any, tenant: str, wire: Wire, body: Any,
                   requested: str, baseline: Decimal) -> Decimal | None:
        """The saving when the exact cache answers this call, else None.

        A call that may be stored fills the entry, as the gateway's exact cache would. The saving
        is the call's own observed cost (the gateway uses the filler's baseline, which is the same
        request's cost; a recorded repeat's own cost is the better figure where both exist)."""
        if body is None or policy.exact_cache is None or row["status"] not in (None, 200):
            return None
        decision = decide(body, {}, policy.exact_cache)
        if not decision.active:
            return None
        key = cache_key(tenant, wire, body, policy.exact_cache, model=requested)
        ts = row["ts"] or 0.0
        entry = self._exact.get(key)
        if decision.read and entry is not None and ts < entry:
            acct = self.accountant.account([AnsweredFromCache("exact_cache", baseline, False)], model=None,
                                           provider=None, usage=Usage(), actual=ZERO)
            return acct.levers[0].saved_usd
        if decision.write:
            self._exact[key] = ts + decision.ttl_s
            if len(self._exact) > _MAX_EXACT_ENTRIES:
                self._exact.popitem(last=False)
        return None

    def _levers(self, row: dict[str, Any], policy: Any, body: Any, wire: Wire, model: str,
                provider: str | None, requested: str, observed: Usage,
                baseline: Decimal) -> tuple[Decimal, list[tuple[str, Decimal, bool]]]:
        """The simulated cost of a call no response cache answered, and each lever's saving."""
        effects: list[Effect] = []
        served, served_provider = model, provider
        if self.router is not None and (self.router.handles(requested) or self.router.config.allow_downgrade):
            decision = self.router.decide(self._features(row, body, wire), requested)
            dep = self.config.deployments.get(decision.deployment)
            # A deployment without a price provider is priced by model name, as the call already was.
            if dep is not None and (dep.model != model or dep.price_provider not in (None, provider)):
                served, served_provider = dep.model, dep.price_provider
                effects.append(ModelMoved("routing", model, provider))
                self._score(row, model, served)
        usage = observed
        capped = False
        cap = _output_cap(policy, body, wire, row["max_tokens"])
        if cap is not None and usage.output_tokens > cap:
            usage = Usage(input_tokens=usage.input_tokens, cache_read_tokens=usage.cache_read_tokens,
                          cache_write_5m_tokens=usage.cache_write_5m_tokens,
                          cache_write_1h_tokens=usage.cache_write_1h_tokens, output_tokens=cap,
                          reasoning_tokens=min(usage.reasoning_tokens, cap))
            capped = True
            effects.append(Counted("shaping", f"output cap {cap}"))
        if policy.prompt_cache and row["prefix_hashes"]:
            cached = self.prompt_cache.usage(row["tenant"] or "-", served, served_provider, row["ts"] or 0.0,
                                             list(row["prefix_hashes"]), usage.prompt_tokens, usage)
            if cached is not None:
                client = observed.cache_read_tokens + observed.cache_write_tokens
                effects.append(BreakpointsAdded("prompt_cache", client or None))
                usage = cached
        batch = row["lane"] == "batch"
        if policy.defer and self.config.batch.enabled and not batch:
            effects.append(Batched("batch"))
            batch = True
        if not effects:
            return baseline, []  # no lever acted: the call costs what it cost
        final = self._cost(served, usage, served_provider, batch)
        if final is None:
            return baseline, []  # the routed model has no price: nothing is claimed
        acct = self.accountant.account(effects, model=served, provider=served_provider, usage=usage, actual=final)
        savings = [(s.lever, s.saved_usd, s.estimated) for s in acct.levers if s.saved_usd is not None]
        # The counterfactual's own baseline differs from the observed one by what the Accountant
        # cannot undo: the cap (shaping), the replaced cache reads, or the routed model's hidden
        # reasoning. That rest is the estimated share of the lever it belongs to, so the savings
        # still add up to baseline - simulated.
        rest = baseline - (acct.baseline_usd if acct.baseline_usd is not None else final)
        if rest:
            owner = "shaping" if capped else ("routing" if effects and effects[0].lever == "routing"
                                              else "prompt_cache")
            savings.append((owner, rest, True))
        return final, savings

    def _features(self, row: dict[str, Any], body: Any, wire: Wire) -> RequestFeatures:
        if body is not None:
            headers = {k: v for k, v in (("x-thrifty-feature", row["feature"]),
                                         ("x-thrifty-call-site", row["call_site"])) if v}
            return features_from_body(body, wire, headers=headers, tenant=row["tenant"])
        tokens = (row["input_tokens"] or 0)
        return RequestFeatures(input_tokens=tokens, request_type=row["request_type"] or "generation",
                               feature=row["feature"], call_site=row["call_site"], user=row["user_id"],
                               tenant=row["tenant"], max_output_tokens=row["max_tokens"],
                               long_context=tokens >= self.config.routing.features.long_context_tokens
                               if self.config.routing else False)

    def _score(self, row: dict[str, Any], before: str, after: str) -> None:
        if self.outcomes is None or not row["prompt_text"]:
            return
        scores = self.outcomes.get(row["prompt_text"])
        if scores is None or before not in scores or after not in scores:
            return
        q = self._quality
        q["matched"] += 1
        q["baseline_score"] += scores[before]
        q["simulated_score"] += scores[after]

    def _price_provider(self, model: str, provider: str | None) -> str | None:
        """The source's provider when the catalog prices the model under it, else None (by name)."""
        key = (model, provider)
        found = self._providers.get(key, _UNSET)
        if found is _UNSET:
            found = provider if provider is not None and self.prices.card(model, provider) is not None else None
            self._providers[key] = found
        return found  # type: ignore[return-value]

    def _cost(self, model: str, usage: Usage, provider: str | None, batch: bool) -> Decimal | None:
        cost = self.prices.cost(model, usage, provider=provider, batch=batch)
        return None if cost is None else cost.total


def load_outcomes(path: str) -> dict[str, dict[str, float]]:
    """The routing outcomes contract (ARCHITECTURE.md): prompt -> {model: score}."""
    out: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                out[record["prompt"]] = {m: float(o["score"]) for m, o in record["outcomes"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}:{n}: not a routing outcome ({exc})") from None
    return out


# Calls the replay of the caches never looks at: their simulation depends on nothing before them.
_INDEPENDENT = "request_body IS NULL AND (prefix_hashes IS NULL OR len(prefix_hashes) = 0)"
PARALLEL_MIN_ROWS = 200_000
_WORKER: "Simulator | None" = None  # the simulator a forked worker inherits


def _simulate_chunk(rows: list[tuple[Any, ...]]) -> tuple[Simulation, dict[str, float]]:
    sim = _WORKER
    assert sim is not None
    sim._quality = {"matched": 0, "baseline_score": 0.0, "simulated_score": 0.0}
    part = Simulation()
    seen = {"body": False, "prefix": False}
    for values in rows:
        sim._one(dict(zip(_COLUMNS, values)), part, seen)
    return part, sim._quality


def _chunks(cur: Any) -> Iterator[list[tuple[Any, ...]]]:
    while batch := cur.fetchmany(20_000):
        yield batch


def _rows(con: Any, where: str | None = None) -> Iterator[dict[str, Any]]:
    cur = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} {'WHERE ' + where if where else ''} "
                      f"ORDER BY ts NULLS FIRST, source_line")
    while True:
        batch = cur.fetchmany(20_000)
        if not batch:
            return
        for values in batch:
            yield dict(zip(_COLUMNS, values))


def _observed_usage(row: dict[str, Any]) -> Usage:
    prompt = row["input_tokens"] or 0
    read = min(row["cached_tokens"] or 0, prompt)
    write = min(row["cache_write_tokens"] or 0, prompt - read)
    output = row["output_tokens"] or 0
    return Usage(input_tokens=prompt - read - write, cache_read_tokens=read, cache_write_5m_tokens=write,
                 output_tokens=output, reasoning_tokens=min(row["reasoning_tokens"] or 0, output))


def _body(text: str | None) -> tuple[Any, Wire]:
    """The stored request and its dialect (told apart by its shape, as the loader does)."""
    if not text:
        return None, OPENAI_CHAT
    try:
        body = json.loads(text)
    except ValueError:
        return None, OPENAI_CHAT
    if not isinstance(body, dict):
        return None, OPENAI_CHAT
    return body, dialect_of(body, None)


def _output_cap(policy: Any, body: Any, wire: Wire, asked: int | None) -> int | None:
    """The cap the gateway's shaping would send upstream for this call (None: no route cap)."""
    if policy.shape.output_cap is None:
        return None
    if body is not None:
        shaped, _ = limit_output(body, wire, policy.shape)
        return wire.output_cap(shaped)
    return min(asked or policy.shape.output_cap, policy.shape.output_cap)


def format_waterfall(sim: Simulation) -> str:
    """The savings waterfall as text: baseline, each lever (exact / estimated), final."""
    lines = [f"calls: {sim.calls} ({sim.priced_calls} priced)",
             f"{'baseline':<16}{_usd(sim.baseline_usd):>16}"]
    running = sim.baseline_usd
    for name, total in sim.levers.items():
        if not total.calls:
            continue
        saved = total.saved_usd + total.estimated_usd
        running -= saved
        lines.append(f"  - {name:<12}{_usd(saved):>16}  (exact {_usd(total.saved_usd)}, estimated "
                     f"{_usd(total.estimated_usd)}; {total.calls} calls) -> {_usd(running)}")
    lines.append(f"{'simulated':<16}{_usd(sim.simulated_usd):>16}")
    if sim.baseline_usd:
        share = (sim.baseline_usd - sim.simulated_usd) / sim.baseline_usd * 100
        lines.append(f"saved {_usd(sim.baseline_usd - sim.simulated_usd)} ({share:.1f}%)")
    for model, n in sim.unpriced_models.items():
        lines.append(f"not priced: {n} calls of {model} (no price card; add a price override)")
    for lever, why in sim.not_available.items():
        lines.append(f"{lever}: not simulated ({why})")
    if sim.quality is not None:
        q = sim.quality
        if q["matched_calls"]:
            lines.append(f"quality of routed calls with outcomes ({q['matched_calls']}): "
                         f"{q['baseline_score']:.3f} -> {q['simulated_score']:.3f} ({q['change']:+.3f})")
        else:
            lines.append("quality: no routed call's prompt is in the outcomes file")
    return "\n".join(lines)


def _usd(d: Decimal) -> str:
    return f"${d:,.4f}"
