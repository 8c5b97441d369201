"""Prometheus metrics, served as text at `GET /metrics`: counted from ledger rows as they are made.

One registry per gateway (no module globals): tests and several gateways in one process never
share counters. Every label is bounded:

- surface, provider, tier, cache outcome, lane, lever and token kind come from a fixed set or
  from the config file;
- model is the deployment that served the call (the config's), never the name a client sent;
- feature and tenant keep their first `max_label_values` distinct values, later ones are
  counted as "other" (see BoundedLabel);
- users, agent tasks and request ids never become labels: they would make a series per call.

Money is Decimal in the ledger and a float here, at the edge: Prometheus keeps only floats.
Budget utilisation is read from the Enforcer when scraped, not counted, so it is the store's
truth on every replica.

Gateway overhead is the latency of a call less the time it spent on providers (Call.upstream_s,
which ProviderCall times and the recorder passes with the row): what Thrifty itself adds.

Under `thrifty serve --workers N` the values live in files that every worker's scrape reads
(observe/workers.py), so `/metrics` shows the whole server, not the worker that answered.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from thrifty.ledger import LedgerRow
from thrifty.observe.settings import MetricsConfig
from thrifty.observe.workers import multiprocess_dir, render_all, worker_exits

if TYPE_CHECKING:
    from thrifty.budgets import Enforcer

log = logging.getLogger("thrifty.observe")

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
# Seconds; from a cache hit (milliseconds) to a long reasoning answer (minutes).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Seconds Thrifty adds to a call: a fraction of a millisecond when no lever waits on anything,
# tens of milliseconds with an embedding to compute or a store to ask.
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class BoundedLabel:
    """A label's values, capped: the first `cap` distinct values pass, the rest read "other".

    A value, once admitted, stays admitted, so a series never changes label halfway. Reads
    of admitted values take no lock (a dict lookup); admitting races harmlessly (the cap may be
    passed by a value or two when calls admit at once)."""

    __slots__ = ("cap", "_seen")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._seen: dict[str, str] = {}

    def __call__(self, value: str | None) -> str:
        if value is None:
            return ""
        found = self._seen.get(value)
        if found is not None:
            return found
        if len(self._seen) >= self.cap:
            return OTHER
        self._seen[value] = value
        return value


def status_class(status: int) -> str:
    """200 -> "2xx"; a status of 0 (no answer, e.g. an interrupted call) -> "none"."""
    return f"{status // 100}xx" if 100 <= status < 600 else "none"


class Metrics:
    """The gateway's metrics; `observe(row)` is its Recorder observer."""

    def __init__(self, config: MetricsConfig, enforcer: Enforcer | None = None) -> None:
        self.config = config
        self.enforcer = enforcer
        self.registry = CollectorRegistry(auto_describe=True)
        # Set when the values are kept in files shared by the worker processes (see workers.py).
        self.multiprocess_dir = multiprocess_dir()
        self._feature = BoundedLabel(config.max_label_values)
        self._tenant = BoundedLabel(config.max_label_values)
        self._model = BoundedLabel(max(config.max_label_values, 200))  # config-bound already; belt and braces
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.requests = Counter("thrifty_requests", "Calls answered, one per ledger row (discarded attempts included)",
                                ("surface", "provider", "model", "tier", "status_class", "cache", "lane"), registry=r)
        self.tokens = Counter("thrifty_tokens", "Tokens billed, by kind (input = uncached input)",
                              ("provider", "model", "kind"), registry=r)
        self.cost = Counter("thrifty_cost_usd", "USD billed for the calls (exact in the ledger, float here)",
                            ("provider", "model", "tier", "feature", "tenant"), registry=r)
        self.baseline = Counter("thrifty_baseline_usd",
                                "USD the same calls would have cost sent directly, with no lever",
                                ("feature", "tenant"), registry=r)
        self.saved = Counter("thrifty_saved_usd", "USD each lever took off the bill (negative parts included)",
                             ("lever", "estimated"), registry=r)
        self.provider_discount = Counter("thrifty_provider_discount_usd",
                                         "USD the provider's own caching took off (not a Thrifty saving)",
                                         ("provider",), registry=r)
        self.unpriced = Counter("thrifty_unpriced_calls", "Calls whose cost is unknown (no price)",
                                ("provider", "model"), registry=r)
        self.cache = Counter("thrifty_cache_outcomes", "Response cache outcome of each call",
                             ("outcome",), registry=r)
        self.latency = Histogram("thrifty_request_duration_seconds", "Time from request to the last byte",
                                 ("surface", "tier", "stream"), buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("thrifty_time_to_first_token_seconds", "Time to the first byte of a streamed answer",
                              ("surface", "tier"), buckets=TTFT_BUCKETS, registry=r)
        self.overhead = Histogram("thrifty_gateway_overhead_seconds",
                                  "Latency less the time spent on providers, of answered calls that reached one",
                                  ("surface", "stream"), buckets=OVERHEAD_BUCKETS, registry=r)
        self.upstream_errors = Counter("thrifty_upstream_errors",
                                       "Calls and attempts that reached a provider and failed",
                                       ("provider", "status_class"), registry=r)
        self.retries = Counter("thrifty_retries", "Upstream retries (after backoff) behind the calls",
                               ("provider",), registry=r)
        self.escalations = Counter("thrifty_escalations", "Answers discarded and re-run one tier up, by the tier left",
                                   ("tier",), registry=r)
        # The shadow lane (routing/shadow.py), per route (config-bound): its events and the sum
        # of the agreement scores it recorded (mean agreement = score sum / scored events).
        self.shadow = Counter("thrifty_shadow_events",
                              "Shadow lane events per route: eligible, sampled, dropped (queue full), "
                              "over_budget (cap), sent, failed, scored, unscored", ("route", "event"), registry=r)
        self.shadow_score = Counter("thrifty_shadow_agreement_score",
                                    "Sum of the shadow lane's agreement scores (0-1) per route; divide by "
                                    "thrifty_shadow_events{event=\"scored\"} for the mean", ("route",), registry=r)
        # Set on each scrape from the store: with several workers, the one set last is the truth.
        gauge = {"registry": r, "multiprocess_mode": "mostrecent"}
        self.budget_ratio = Gauge("thrifty_budget_utilisation_ratio",
                                  "Spent / limit (USD, else tokens) of each budget in its current window",
                                  ("budget",), **gauge)
        self.budget_spent = Gauge("thrifty_budget_spent_usd", "USD spent of each budget in its current window",
                                  ("budget",), **gauge)
        self.budget_limit = Gauge("thrifty_budget_limit_usd", "USD limit of each budget", ("budget",), **gauge)

    # --- the observer (request path) ---------------------------------------------------------

    def observe(self, row: LedgerRow, upstream_s: float | None = None) -> None:
        """Count one row; `upstream_s`: the seconds its call spent on providers (None: it reached
        none, or the row is a discarded attempt's), for the gateway overhead."""
        provider, model, tier = row.provider or "", self._model(row.served_model), row.tier or ""
        child = self._child
        child(self.requests, row.surface, provider, model, tier, status_class(row.status), row.cache,
              row.lane).inc()
        child(self.cache, row.cache).inc()
        for kind, n in (("input", row.prompt_tokens), ("cache_read", row.cached_tokens),
                        ("cache_write", row.cache_write_tokens), ("output", row.completion_tokens),
                        ("reasoning", row.reasoning_tokens)):
            if n:
                child(self.tokens, provider, model, kind).inc(n)
        feature, tenant = self._feature(row.feature), self._tenant(row.tenant)
        if row.cost_usd is None:
            if row.status == 200:
                child(self.unpriced, provider, model).inc()
        elif row.cost_usd:
            child(self.cost, provider, model, tier, feature, tenant).inc(float(row.cost_usd))
        if row.baseline_cost_usd:
            child(self.baseline, feature, tenant).inc(float(row.baseline_cost_usd))
        for s in row.levers:
            if s.saved_usd:
                # Counters only go up: a lever that added cost (negative saving) is a
                # decrement Prometheus cannot hold, so it is kept apart as its own series.
                estimated = "true" if s.estimated else "false"
                if s.saved_usd > 0:
                    child(self.saved, s.lever, estimated).inc(float(s.saved_usd))
                else:
                    child(self.saved, f"{s.lever}_added", estimated).inc(float(-s.saved_usd))
        if row.provider_discount_usd:
            child(self.provider_discount, provider).inc(float(row.provider_discount_usd))
        stream = "true" if row.stream else "false"
        child(self.latency, row.surface, tier, stream).observe(row.latency_ms / 1000.0)
        if upstream_s is not None and row.status == 200:
            # Both clocks are perf_counter, the upstream time inside the latency: max() only
            # guards the float subtraction.
            child(self.overhead, row.surface, stream).observe(max(0.0, row.latency_ms / 1000.0 - upstream_s))
        if row.ttft_ms is not None:
            child(self.ttft, row.surface, tier).observe(row.ttft_ms / 1000.0)
        if row.provider is not None and row.status >= 400:
            child(self.upstream_errors, provider, status_class(row.status)).inc()
        if row.retries:
            child(self.retries, provider).inc(row.retries)
        if row.error_type is not None and row.error_type.startswith("escalated"):
            child(self.escalations, tier).inc()

    def shadow_event(self, route: str, event: str, score: float | None = None) -> None:
        """One shadow-lane event of a route (its name comes from the config: bounded)."""
        self._child(self.shadow, route, event).inc()
        if score is not None:
            self._child(self.shadow_score, route).inc(score)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: prometheus_client validates the labels and
        takes a lock on each call, a dict lookup here does neither. Bounded as the labels are."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    # --- the scrape ------------------------------------------------------------------------

    async def render(self) -> bytes:
        """The text exposition, budgets read from the Enforcer first."""
        if self.enforcer is not None:
            await self._read_budgets()
        if self.multiprocess_dir is not None:
            return render_all(self.multiprocess_dir)
        return generate_latest(self.registry)

    def close(self) -> None:
        """This process stops: with shared files, the library's bookkeeping for a dead worker."""
        if self.multiprocess_dir is not None:
            worker_exits(self.multiprocess_dir)

    async def _read_budgets(self) -> None:
        """Budgets with one counter (global, or a `match` value): a gauge each. A budget that
        gives each tenant or feature its own allowance has a counter per value, unbounded: it
        is left to the admin API (`/admin/spend`)."""
        assert self.enforcer is not None
        for b in self.enforcer.budgets:
            value = None if b.scope == "global" else b.match
            if b.scope != "global" and value is None:
                continue
            try:
                found = await self.enforcer.spend(b.scope, value, tenant=b.tenant)
            except Exception as exc:  # store down, or a per-tenant budget without its tenant
                log.debug("metrics: budget %s not read: %s", b.name, exc)
                continue
            for entry in found["budgets"]:
                if entry["budget"] != b.name:
                    continue
                ratio = _ratio(entry)
                if ratio is not None:
                    self.budget_ratio.labels(b.name).set(ratio)
                self.budget_spent.labels(b.name).set(float(entry["spent_usd"]))
                if entry["limit_usd"] is not None:
                    self.budget_limit.labels(b.name).set(float(entry["limit_usd"]))


def _ratio(entry: dict[str, Any]) -> float | None:
    if entry["limit_usd"]:
        return float(entry["spent_usd"]) / float(entry["limit_usd"])
    if entry["limit_tokens"]:
        return entry["spent_tokens"] / entry["limit_tokens"]
    return None


def may_scrape(config: MetricsConfig, admin_key: str | None, given: str | None, client_host: str | None) -> bool:
    """Who may read /metrics (see MetricsConfig): the metrics key or the admin key when either
    is configured; else only a client on loopback."""
    import hmac

    keys = [k for k in (config.key, admin_key) if k]
    if keys:
        return given is not None and any(hmac.compare_digest(given.encode(), k.encode()) for k in keys)
    try:
        return client_host is not None and ipaddress.ip_address(client_host).is_loopback
    except ValueError:
        return False
