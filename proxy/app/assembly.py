"""Builds the sidecar from a config: adapters, the migration (if one is configured) and the vector service."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from opentelemetry.sdk.trace import SpanProcessor

from proxy.adapters.telemetry_otel import Telemetry, TracedEmbedder
from proxy.app.config import Collection, RerankConfig, SwitchyardConfig
from proxy.app.config_models import ModelConfig
from proxy.app.cpu import available_cores
from proxy.app.telemetry_gauges import GAUGES, CollectionGauges, gauges
from proxy.app.wiring import (
    build_backfill_embedder,
    build_bindings,
    build_embedders,
    build_state,
    migration_settings,
)
from proxy.core.binding import IndexBinding
from proxy.core.collections import Collections
from proxy.core.merge import make_merger
from proxy.core.model import RoutingMode
from proxy.core.ports import Embedder, StateStore
from proxy.core.rerank import Reranker
from proxy.core.service import Limits, QueryObserver, QueryOutcome, VectorService
from proxy.core.topology import StaticTopology, Topology
from proxy.core.tracing import NOOP_TRACER, Tracer
from proxy.migration.controller import MigrationController
from proxy.migration.priority import BackfillEmbedder
from proxy.migration.promoter import Promoter
from proxy.migration.shadow import ShadowRecorder
from proxy.migration.throttle import LatencyWindow
from proxy.migration.validation import load_golden_set


@dataclass
class CollectionApp:
    """One collection's part of a running sidecar: its indexes, state namespace, migration and data plane."""

    name: str
    config: Collection
    bindings: dict[str, IndexBinding]
    """This collection's indexes (the app's bindings hold every collection's)."""
    state: StateStore
    topology: Topology
    service: VectorService
    shadow: ShadowRecorder
    controller: MigrationController | None = None

    @property
    def promoter(self) -> Promoter | None:
        return self.controller.promoter if self.controller else None

    def close(self) -> None:
        if self.controller is not None:
            self.controller.stop_worker()
        self.service.close()


@dataclass
class App:
    """Everything a running sidecar owns; `close` flushes indexes to disk.

    `service`, `controller`, `topology`, `state`, `shadow` and `promoter` are the default collection's, for
    the one-collection sidecar most code and tests drive."""

    config: SwitchyardConfig
    bindings: dict[str, IndexBinding]
    collections: Collections[CollectionApp]
    executor: ThreadPoolExecutor
    latencies: LatencyWindow
    """Query latencies as the gRPC handler sees them (queueing included): every collection's backfill
    throttle watches this one window, so all backfills together keep one latency budget."""
    telemetry: Telemetry | None = None

    @property
    def default(self) -> CollectionApp:
        return self.collections.get("")

    @property
    def service(self) -> VectorService:
        return self.default.service

    @property
    def controller(self) -> MigrationController | None:
        return self.default.controller

    @property
    def promoter(self) -> Promoter | None:
        return self.default.promoter

    @property
    def topology(self) -> Topology:
        return self.default.topology

    @property
    def state(self) -> StateStore:
        return self.default.state

    @property
    def shadow(self) -> ShadowRecorder:
        return self.default.shadow

    def controllers(self) -> list[MigrationController]:
        return [c.controller for _, c in self.collections.items() if c.controller is not None]

    def close(self) -> None:
        if self.telemetry is not None:
            self.telemetry.shutdown()
        for _, collection in self.collections.items():
            collection.close()
        for binding in self.bindings.values():
            binding.index.flush()
            binding.index.close()
        for _, collection in self.collections.items():
            collection.state.close()
        self.executor.shutdown(wait=True, cancel_futures=True)


def build_app(config: SwitchyardConfig, span_processors: Sequence[SpanProcessor] = ()) -> App:
    telemetry = _telemetry(config, span_processors)
    tracer = telemetry.tracer if telemetry and telemetry.tracer else None
    wrap: Callable[[Embedder], Embedder] = (lambda e: TracedEmbedder(e, tracer)) if tracer else (lambda e: e)
    models = build_embedders(config)
    bindings = build_bindings(config, wrap, models)
    latencies = LatencyWindow()
    executor = ThreadPoolExecutor(max_workers=config.server.workers, thread_name_prefix="switchyard")
    parts = _Shared(config, bindings, executor, latencies, telemetry, tracer, wrap)
    members = {c.name: _collection(c, parts) for c in config.collection_list()}
    collections = Collections(members, config.default_collection_name())
    if telemetry is not None:
        sources = [CollectionGauges(n, c.bindings, c.shadow, c.controller) for n, c in collections.items()]
        telemetry.watch(lambda: gauges(sources, models), GAUGES)
    return App(config, bindings, collections, executor, latencies, telemetry)


@dataclass(frozen=True)
class _Shared:
    """What every collection of one sidecar shares: indexes and models, the worker threads, the latency
    window, telemetry."""

    config: SwitchyardConfig
    bindings: dict[str, IndexBinding]
    executor: ThreadPoolExecutor
    latencies: LatencyWindow
    telemetry: Telemetry | None
    tracer: Tracer | None
    wrap: Callable[[Embedder], Embedder]


def _collection(collection: Collection, parts: _Shared) -> CollectionApp:
    config = parts.config
    bindings = {name: parts.bindings[name] for name in collection.index_names()}
    state = build_state(config.state, config.data_dir, collection.name)
    # A state store that lost its counter (Redis without persistence, a new namespace) must never hand out a
    # version the indexes already hold: every write would then be rejected as stale.
    state.advance_versions(max(b.index.max_version() for b in bindings.values()))
    shadow = ShadowRecorder()
    backfill_embedder = build_backfill_embedder(config, collection.migration, parts.wrap)
    budget = config.latency_budget_ms()
    new_model = (
        config.models[config.indexes[collection.migration.new_index].model] if collection.migration else None
    )
    controller = _controller(
        collection, bindings, state, parts.latencies, shadow, backfill_embedder, budget, new_model
    )
    topology: Topology = (
        controller.topology if controller else StaticTopology(bindings[collection.serving_index])
    )
    query = collection.query
    limits = Limits(
        max_batch_size=config.server.max_batch_size,
        max_k=config.server.max_k,
        max_text_chars=config.server.max_text_chars,
        leg_timeout_s=query.leg_timeout_ms / 1000,
        sync_reembed_budget=collection.migration.lazy.sync_budget if collection.migration else 0,
        shadow_sample_rate=query.shadow_sample_rate,
    )
    observers: list[QueryObserver] = []
    if controller is not None:
        observers.append(controller.promoter.stats.record)
    if parts.telemetry is not None:
        observers.append(parts.telemetry.query_observer(collection.name))
    service = VectorService(
        topology,
        state.next_versions,
        make_merger(query.merge, serving=True),
        parts.executor,
        limits,
        {b.model: b.embedder.dim for b in bindings.values()},
        shadow_sink=shadow.record,
        observer=_observe_all(observers),
        tracer=parts.tracer or NOOP_TRACER,
        cores=available_cores(),
        collection=collection.name,
        reranker=_reranker(query.rerank, controller),
    )
    return CollectionApp(collection.name, collection, bindings, state, topology, service, shadow, controller)


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
    collection: Collection,
    bindings: dict[str, IndexBinding],
    state: StateStore,
    latencies: LatencyWindow,
    shadow: ShadowRecorder,
    backfill_embedder: BackfillEmbedder | None,
    latency_budget_ms: float | None,
    new_model: ModelConfig | None,
) -> MigrationController | None:
    migration = collection.migration
    if migration is None:
        return None
    settings = migration_settings(migration, new_model)
    settings = replace(settings, backfill=replace(settings.backfill, latency_budget_ms=latency_budget_ms))
    golden_path = migration.validation.golden_set
    owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return MigrationController(
        settings,
        bindings[migration.old_index],
        bindings[migration.new_index],
        state,
        owner,
        latencies,
        shadow,
        default_traffic_percent=collection.query.traffic_percent,
        new_path=RoutingMode(collection.query.new_path),
        golden=load_golden_set(golden_path) if golden_path else (),
        backfill_embedder=backfill_embedder,
    )


def _reranker(settings: RerankConfig, controller: MigrationController | None) -> Reranker | None:
    """Only a migration has candidates to re-rank; a request may ask for it when the config leaves it off."""
    if controller is None:
        return None
    return Reranker(settings.settings(), on_embedded=controller.topology.write_moved)
