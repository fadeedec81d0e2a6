"""Prometheus metrics at ``/metrics``, read from the live hub and the store at scrape time.

A custom collector on a per-app registry (no global state, so tests can run several apps):
nothing is counted twice, and the hot paths (legs publishing to the hub) pay only the hub's own
integer increments.  Per-second rates (segment revisions/s = ASR deltas turned into text) are
``rate()`` over the ``*_total`` counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.asr.pool import AsrPool
from bridge.health import Health
from bridge.leg import COUNTERS, live_legs
from bridge.live import LiveHub
from storage import TranscriptStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class BridgeCollector(Collector):
    def __init__(
        self,
        hub: LiveHub,
        store: TranscriptStore,
        uploads_running: Callable[[], int],
        health: Health,
        pool: AsrPool,
    ) -> None:
        self.hub = hub
        self.store = store
        self.uploads_running = uploads_running
        self.health = health
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        calls = hub.active_calls()
        yield GaugeMetricFamily("bridge_active_calls", "Calls in progress", value=len(calls))
        yield GaugeMetricFamily(
            "bridge_active_legs", "Legs in progress", value=sum(len(c.legs) for c in calls)
        )
        lags = [leg.lag_ms for c in calls for leg in c.legs.values() if leg.lag_ms is not None]
        yield GaugeMetricFamily(
            "bridge_text_lag_ms",
            "Largest lag of transcript text behind live audio over active legs (ms)",
            value=max(lags, default=0),
        )
        sessions = CounterMetricFamily(
            "bridge_asr_events",
            "ASR session events by kind (asr.session = sessions opened)",
            labels=["kind"],
        )
        for kind, n in sorted(hub.asr_events.items()):
            sessions.add_metric([kind], n)
        yield sessions
        errors = CounterMetricFamily("bridge_asr_errors", "ASR errors by code", labels=["code"])
        for code, n in sorted(hub.asr_errors.items()):
            errors.add_metric([code], n)
        yield errors
        revisions = CounterMetricFamily(
            "bridge_segment_revisions",
            "Segment revisions published (ASR deltas as text)",
            labels=["final"],
        )
        revisions.add_metric(["false"], hub.counts["segment.partial"])
        revisions.add_metric(["true"], hub.counts["segment.final"])
        yield revisions
        yield CounterMetricFamily(
            "bridge_gaps", "Gaps (untranscribed audio)", value=hub.counts["gap"]
        )
        yield CounterMetricFamily(
            "bridge_gap_ms", "Audio not transcribed (ms): dropped frames", value=hub.gap_ms_total
        )
        yield CounterMetricFamily(
            "bridge_store_dropped_partials",
            "Partial revisions the store dropped (queue full)",
            value=self.store.dropped_partials,
        )
        yield GaugeMetricFamily(
            "bridge_store_backlog", "Writes queued, not yet committed", value=self.store.backlog
        )
        legs = live_legs()
        yield CounterMetricFamily(
            "bridge_asr_deltas",
            "transcription.delta events received (one per 80 ms step; rate() = deltas/s)",
            value=COUNTERS.deltas,
        )
        step_lags = [leg.step_lag_ms for leg in legs if leg.step_lag_ms is not None]
        yield GaugeMetricFamily(
            "bridge_asr_step_lag_ms",
            "Largest delay over live legs from a step's audio being sent to its delta (ms)",
            value=max(step_lags, default=0),
        )
        yield CounterMetricFamily(
            "bridge_samples_dropped",
            "Input samples the legs' audio paths dropped (duplicate/overlapping frames)",
            value=COUNTERS.samples_dropped + sum(leg.audio.samples_dropped for leg in legs),
        )
        yield GaugeMetricFamily(
            "bridge_asr_legs_lagging",
            "Live legs whose ASR text is behind the audio by more than asr.max_step_lag_ms "
            "(new calls are refused while any is)",
            value=sum(1 for leg in legs if leg.lagging),
        )
        yield GaugeMetricFamily(
            "bridge_asr_legs_reconnecting",
            "Live legs whose ASR connection is down (audio buffered)",
            value=sum(1 for leg in legs if not leg.client.connected),
        )
        yield from self._backends()
        yield GaugeMetricFamily(
            "bridge_push_clients", "Connected live-API clients", value=hub.subscribers
        )
        yield CounterMetricFamily(
            "bridge_push_slow_disconnects",
            "Live clients closed for falling behind",
            value=hub.slow_disconnects,
        )
        yield GaugeMetricFamily(
            "bridge_uploads_running",
            "Uploaded calls being transcribed",
            value=self.uploads_running(),
        )
        crashes = CounterMetricFamily(
            "bridge_process_crashes",
            "Child processes that died (a SIP worker: restarted), by component and cause",
            labels=["component", "cause"],
        )
        for (component, cause), n in sorted(self.health.crashes.items()):
            crashes.add_metric([component, cause], n)
        yield crashes
        yield GaugeMetricFamily(
            "bridge_ready", "1 when /ready answers 200", value=0 if self.health.problems() else 1
        )
        for name, text, value in self.health.gauges():
            yield GaugeMetricFamily(f"bridge_{name}", text, value=value)

    def _backends(self) -> Iterator[Metric]:
        """Per ASR server of the pool (label ``backend``: its name)."""
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "legs": GaugeMetricFamily(
                "bridge_asr_backend_legs", "Live legs placed on the ASR server", labels=["backend"]
            ),
            "max_legs": GaugeMetricFamily(
                "bridge_asr_backend_max_legs",
                "The server's leg budget (asr.backends max_legs; absent: no limit)",
                labels=["backend"],
            ),
            "lagging": GaugeMetricFamily(
                "bridge_asr_backend_lagging",
                "Its live legs whose text is behind real time (no new legs go there)",
                labels=["backend"],
            ),
            "healthy": GaugeMetricFamily(
                "bridge_asr_backend_healthy",
                "1 when the server's probe and its legs say it serves (new legs go there)",
                labels=["backend"],
            ),
            "failures": CounterMetricFamily(
                "bridge_asr_backend_failures",
                "Times the server went unhealthy (a leg's error or its probe)",
                labels=["backend"],
            ),
        }
        problems = GaugeMetricFamily(
            "bridge_asr_backend_problem",
            "1 while the server is unhealthy, with why (the server's message) as a label",
            labels=["backend", "problem"],
        )
        for b in self.pool.backends:
            families["legs"].add_metric([b.name], b.legs)
            if b.endpoint.max_legs is not None:
                families["max_legs"].add_metric([b.name], b.endpoint.max_legs)
            families["lagging"].add_metric([b.name], b.lagging)
            families["healthy"].add_metric([b.name], 1 if b.healthy else 0)
            families["failures"].add_metric([b.name], b.failures)
            if b.problem is not None:
                problems.add_metric([b.name, b.problem[:200]], 1)
        yield from families.values()
        yield problems


def make_registry(
    hub: LiveHub,
    store: TranscriptStore,
    uploads_running: Callable[[], int],
    health: Health,
    pool: AsrPool,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgeCollector(hub, store, uploads_running, health, pool))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
