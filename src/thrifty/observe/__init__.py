"""Watching the gateway from outside: Prometheus metrics, OpenTelemetry spans, cost alerts.

Each part is an observer of ledger rows (core.recorder.Recorder.observers): the recorder is where
every call's facts come together, so it is the one place that sees them all. Nothing here is
imported unless the config turns it on, so prometheus_client and OpenTelemetry are only needed
by those who use them.
"""
