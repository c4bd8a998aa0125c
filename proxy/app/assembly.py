"""Builds the sidecar from a config: adapters, the migration (if one is configured) and the vector service."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from opentelemetry.sdk.trace import SpanProcessor

from proxy.adapters.telemetry_otel import Telemetry, TracedEmbedder
from proxy.app.config import SwitchyardConfig
from proxy.app.cpu import available_cores
from proxy.app.telemetry_gauges import GAUGES, gauges
from proxy.app.wiring import build_backfill_embedder, build_bindings, build_state, migration_settings
from proxy.core.binding import IndexBinding
from proxy.core.merge import make_merger
from proxy.core.model import RoutingMode
from proxy.core.ports import Embedder, StateStore
from proxy.core.service import Limits, QueryObserver, QueryOutcome, VectorService
from proxy.core.topology import StaticTopology, Topology
from proxy.core.tracing import NOOP_TRACER
from proxy.migration.controller import MigrationController
from proxy.migration.priority import BackfillEmbedder
from proxy.migration.promoter import Promoter
from proxy.migration.shadow import ShadowRecorder
from proxy.migration.throttle import LatencyWindow
from proxy.migration.validation import load_golden_set


@dataclass
class App:
    """Everything a running sidecar owns; `close` flushes indexes to disk."""

    config: SwitchyardConfig
    bindings: dict[str, IndexBinding]
    state: StateStore
    topology: Topology
    service: VectorService
    executor: ThreadPoolExecutor
    shadow: ShadowRecorder
    latencies: LatencyWindow
    """Query latencies as the gRPC handler sees them (queueing included): the backfill throttle's signal."""
    controller: MigrationController | None = None
    promoter: Promoter | None = None
    telemetry: Telemetry | None = None

    def close(self) -> None:
        if self.telemetry is not None:
            self.telemetry.shutdown()
        if self.controller is not None:
            self.controller.stop_worker()
        self.service.close()
        for binding in self.bindings.values():
            binding.index.flush()
            binding.index.close()
        self.state.close()
        self.executor.shutdown(wait=True, cancel_futures=True)


def build_app(config: SwitchyardConfig, span_processors: Sequence[SpanProcessor] = ()) -> App:
    telemetry = _telemetry(config, span_processors)
    tracer = telemetry.tracer if telemetry and telemetry.tracer else None
    wrap: Callable[[Embedder], Embedder] = (lambda e: TracedEmbedder(e, tracer)) if tracer else (lambda e: e)
    bindings = build_bindings(config, wrap)
    state = build_state(config.state, config.data_dir)
    # A state store that lost its counter (Redis without persistence, a new namespace) must never hand out a
    # version the indexes already hold: every write would then be rejected as stale.
    state.advance_versions(max(b.index.max_version() for b in bindings.values()))
    latencies = LatencyWindow()
    shadow = ShadowRecorder()
    controller = _controller(
        config, bindings, state, latencies, shadow, build_backfill_embedder(config, wrap)
    )
    topology: Topology = controller.topology if controller else StaticTopology(bindings[config.serving_index])
    executor = ThreadPoolExecutor(max_workers=config.server.workers, thread_name_prefix="switchyard")
    limits = Limits(
        max_batch_size=config.server.max_batch_size,
        max_k=config.server.max_k,
        max_text_chars=config.server.max_text_chars,
        leg_timeout_s=config.query.leg_timeout_ms / 1000,
        sync_reembed_budget=config.migration.lazy.sync_budget if config.migration else 0,
        shadow_sample_rate=config.query.shadow_sample_rate,
    )
    dims = {b.model: b.embedder.dim for b in bindings.values()}
    merger = make_merger(config.query.merge, serving=True)
    promoter = controller.promoter if controller else None
    observers: list[QueryObserver] = []
    if promoter is not None:
        observers.append(promoter.stats.record)
    if telemetry is not None:
        observers.append(telemetry.observe_query)
    service = VectorService(
        topology,
        state.next_versions,
        merger,
        executor,
        limits,
        dims,
        shadow_sink=shadow.record,
        observer=_observe_all(observers),
        tracer=tracer or NOOP_TRACER,
        cores=available_cores(),
    )
    if telemetry is not None:
        telemetry.watch(lambda: gauges(bindings, shadow, controller), GAUGES)
    return App(
        config,
        bindings,
        state,
        topology,
        service,
        executor,
        shadow,
        latencies,
        controller,
        promoter,
        telemetry,
    )


def _telemetry(config: SwitchyardConfig, span_processors: Sequence[SpanProcessor]) -> Telemetry | None:
    t = config.telemetry
    if not (t.metrics_listen or t.otlp_endpoint or t.tracing or span_processors):
        return None
    return Telemetry(
        t.service_name,
        metrics_listen=t.metrics_listen,
        otlp_endpoint=t.otlp_endpoint,
        tracing=t.tracing,
        span_processors=span_processors,
    )


def _observe_all(observers: list[QueryObserver]) -> QueryObserver:
    def observe(outcome: QueryOutcome, seconds: float) -> None:
        for observer in observers:
            observer(outcome, seconds)

    return observe


def _controller(
    config: SwitchyardConfig,
    bindings: dict[str, IndexBinding],
    state: StateStore,
    latencies: LatencyWindow,
    shadow: ShadowRecorder,
    backfill_embedder: BackfillEmbedder | None,
) -> MigrationController | None:
    if config.migration is None:
        return None
    golden_path = config.migration.validation.golden_set
    owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return MigrationController(
        migration_settings(config.migration),
        bindings[config.migration.old_index],
        bindings[config.migration.new_index],
        state,
        owner,
        latencies,
        shadow,
        default_traffic_percent=config.query.traffic_percent,
        new_path=RoutingMode(config.query.new_path),
        golden=load_golden_set(golden_path) if golden_path else (),
        backfill_embedder=backfill_embedder,
    )
