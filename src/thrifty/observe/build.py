"""The observers the `observe:` config asks for, built once by the gateway.

Each part is imported only when on: with metrics off, prometheus_client is not needed; with
OpenTelemetry off (the default), neither is the SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

from thrifty.ledger import LedgerRow
from thrifty.observe.settings import ObserveConfig

if TYPE_CHECKING:
    from thrifty.budgets import Enforcer
    from thrifty.observe.alerts import Alerts
    from thrifty.observe.metrics import Metrics
    from thrifty.observe.otel import Spans


class Observability:
    def __init__(self, config: ObserveConfig, *, enforcer: Enforcer | None = None,
                 provider_kinds: Mapping[str, str] | None = None, span_processor: Any = None) -> None:
        self.config = config
        self.metrics: Metrics | None = None
        self.spans: Spans | None = None
        self.alerts: Alerts | None = None
        if config.metrics.enabled:
            from thrifty.observe.metrics import Metrics

            self.metrics = Metrics(config.metrics, enforcer)
        if config.otel.enabled:
            from thrifty.observe.otel import Spans, tracer_provider

            self.spans = Spans(tracer_provider(config.otel, span_processor), provider_kinds)
        if config.alerts:
            from thrifty.observe.alerts import Alerts

            self.alerts = Alerts(config.alerts, enforcer=enforcer, budget_check_s=config.budget_check_s)

    @property
    def observers(self) -> tuple[Callable[[LedgerRow, float | None], None], ...]:
        """What the Recorder calls with each row (and its call's seconds upstream), cheapest first."""
        return tuple(part.observe for part in (self.metrics, self.alerts, self.spans) if part is not None)

    def start(self) -> None:
        if self.alerts is not None:
            self.alerts.start()

    async def close(self) -> None:
        if self.alerts is not None:
            await self.alerts.close()
        if self.spans is not None:
            self.spans.close()
        if self.metrics is not None:
            self.metrics.close()
