"""The `observe:` section of the config file: metrics, OpenTelemetry and alerts.

    observe:
      metrics: {enabled: true, key: ${THRIFTY_METRICS_KEY}, max_label_values: 50}
      otel: {enabled: false, endpoint: http://127.0.0.1:4318/v1/traces, service_name: thrifty}
      alerts:
        - {name: fast-tier-creep, kind: cost_per_request, tier: fast, above_usd: 0.002, window_s: 3600}
        - {name: small-model-too-small, kind: escalation_rate, above: 0.3, window_s: 3600, min_calls: 20}
        - {name: burn, kind: budget_burn, budget: tenant-monthly}
          webhook: https://hooks.example.com/thrifty

Kept apart from thrifty.config (which imports it), as budgets/limits.py is, so the observers
can be built and tested from these types alone.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricsConfig(_Strict):
    """`GET /metrics`. Who may scrape it: with `key` set, that key or the admin key (as a Bearer
    token, Prometheus' `authorization` / `bearer_token`); with no key but an admin key, the admin
    key; with neither, only clients on loopback (a Prometheus on the same host)."""

    enabled: bool = True
    key: str | None = None  # the metrics key; empty means none
    # Feature and tenant labels: the first N distinct values each, later ones counted as "other",
    # so a client inventing feature names cannot blow up the time series.
    max_label_values: int = Field(default=50, ge=1, le=10_000)


class OtelConfig(_Strict):
    """A span per call with the GenAI semantic conventions, sent over OTLP/HTTP (protobuf).
    Needs the opentelemetry-exporter-otlp-proto-http package when enabled."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = "thrifty"
    headers: dict[str, str] = {}  # e.g. an API key of the tracing backend


AlertKind = Literal["cost_per_request", "escalation_rate", "budget_burn"]


class AlertRule(_Strict):
    """One threshold. Each (rule, tier, feature) fires at most once per `window_s`.

    cost_per_request: the average cost of the calls of the last `window_s` above `above_usd`.
    escalation_rate: the share of calls first answered in a tier that were re-run one tier up,
      above `above` (0..1; the seeds: above ~0.3 the small model is too small).
    budget_burn: at the spend rate of the window so far, the budget runs out before the window
      ends (budgets with one value only: global, or with `match`).
    `tier` / `feature` narrow the calls a rule watches; unset, each value is watched apart.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: AlertKind
    tier: str | None = None
    feature: str | None = None
    above_usd: Decimal | None = Field(default=None, gt=0)
    above: float | None = Field(default=None, gt=0, le=1)
    budget: str | None = None  # budget_burn: one budget by name; None: every budget it can read
    window_s: float = Field(default=3600.0, gt=0)
    min_calls: int = Field(default=10, ge=1)  # fewer calls in the window say nothing yet
    webhook: str | None = None  # POSTed a JSON body when it fires; the log line is always written

    @model_validator(mode="after")
    def _threshold_for_kind(self) -> "AlertRule":
        if self.kind == "cost_per_request" and self.above_usd is None:
            raise ValueError("a cost_per_request alert needs above_usd")
        if self.kind == "escalation_rate" and self.above is None:
            raise ValueError("an escalation_rate alert needs above (a share, 0..1)")
        return self


class ObserveConfig(_Strict):
    metrics: MetricsConfig = MetricsConfig()
    otel: OtelConfig = OtelConfig()
    alerts: list[AlertRule] = []
    budget_check_s: float = Field(default=60.0, gt=0)  # how often budget_burn rules read the budgets

    @model_validator(mode="after")
    def _unique_names(self) -> "ObserveConfig":
        names = [a.name for a in self.alerts]
        if len(names) != len(set(names)):
            raise ValueError("alert names must be unique")
        return self
