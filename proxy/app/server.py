"""Builds the sidecar from a config and runs the grpc.aio server until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import SpanProcessor

from proxy._gen.switchyard.v1 import admin_service_pb2, vector_service_pb2
from proxy._gen.switchyard.v1 import admin_service_pb2_grpc as admin_grpc
from proxy._gen.switchyard.v1 import vector_service_pb2_grpc as vector_grpc
from proxy.adapters.telemetry_otel import Telemetry, TracedEmbedder
from proxy.app.config import SwitchyardConfig, TlsConfig
from proxy.app.config_watch import ConfigWatcher
from proxy.app.cpu import available_cores
from proxy.app.telemetry_gauges import GAUGES, gauges
from proxy.app.wiring import build_backfill_embedder, build_bindings, build_state
from proxy.core.binding import IndexBinding
from proxy.core.errors import ConfigError
from proxy.core.merge import make_merger
from proxy.core.model import RoutingMode
from proxy.core.ports import Embedder, StateStore
from proxy.core.service import Limits, QueryObserver, QueryOutcome, VectorService
from proxy.core.topology import StaticTopology, Topology
from proxy.core.tracing import NOOP_TRACER
from proxy.migration.controller import MigrationController
from proxy.migration.priority import BackfillEmbedder
from proxy.migration.promoter import Promoter
from proxy.migration.query_stats import QueryStats
from proxy.migration.shadow import ShadowRecorder
from proxy.migration.state import MigrationRecord
from proxy.migration.throttle import LatencyWindow
from proxy.migration.validation import load_golden_set
from proxy.transport.admin_service import AdminServicer
from proxy.transport.auth import ADMIN_PREFIX, DATA_PREFIX, BearerTokenInterceptor
from proxy.transport.vector_service import VectorServicer

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    vector_service_pb2.DESCRIPTOR.services_by_name["VectorService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


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
    controller = _controller(config, bindings, state, latencies, build_backfill_embedder(config, wrap))
    topology: Topology = controller or StaticTopology(bindings[config.serving_index])
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
    shadow = ShadowRecorder()
    promoter = _promoter(config, controller, shadow)
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
    app = App(
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
    if telemetry is not None:
        telemetry.watch(lambda: gauges(app), GAUGES)
    return app


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


def _promoter(
    config: SwitchyardConfig, controller: MigrationController | None, shadow: ShadowRecorder
) -> Promoter | None:
    if controller is None or config.migration is None:
        return None
    golden_path = config.migration.validation.golden_set
    golden = load_golden_set(golden_path) if golden_path else []
    stats = QueryStats(controller.new.name)
    promoter = Promoter(controller, config.migration, stats, shadow, golden)
    controller.periodic.append(promoter.tick)
    return promoter


def apply_reload(app: App, previous: SwitchyardConfig, updated: SwitchyardConfig) -> None:
    """Applies what may change while serving; other changes wait for a restart (and say so)."""
    live = {"query", "migration"}
    for section in sorted(set(SwitchyardConfig.model_fields) - live):
        if getattr(previous, section) != getattr(updated, section):
            log.warning("config: `%s` changed; it takes effect after a restart", section)
    if updated.query.merge != previous.query.merge:
        app.service.set_merger(make_merger(updated.query.merge, serving=True))
    app.service.set_shadow_sample_rate(updated.query.shadow_sample_rate)
    controller = app.controller
    if controller is None or updated.migration is None or previous.migration is None:
        return
    if updated.query.traffic_percent != previous.query.traffic_percent:
        controller.set_traffic_percent(updated.query.traffic_percent)
        log.info("config: traffic split set to %g%%", updated.query.traffic_percent)
    if updated.migration.backfill.rate_limit != previous.migration.backfill.rate_limit:
        controller.set_rate(updated.migration.backfill.rate_limit)
        log.info("config: backfill rate limit set to %g docs/s", updated.migration.backfill.rate_limit)
    if updated.migration.backfill.batch_time_ms != previous.migration.backfill.batch_time_ms:
        controller.throttle.batch_time_s = updated.migration.backfill.batch_time_ms / 1000
        log.info("config: backfill batch time set to %g ms", updated.migration.backfill.batch_time_ms)
    if updated.migration.backfill.embed_nice != previous.migration.backfill.embed_nice:
        log.warning("config: `migration.backfill.embed_nice` changed; it takes effect after a restart")
    budget = updated.migration.backfill.latency_budget_ms
    if budget != previous.migration.backfill.latency_budget_ms:
        controller.set_latency_budget(budget)
        log.info("config: backfill latency budget set to %s", f"{budget:g} ms" if budget else "none")


def _controller(
    config: SwitchyardConfig,
    bindings: dict[str, IndexBinding],
    state: StateStore,
    latencies: LatencyWindow,
    backfill_embedder: BackfillEmbedder | None,
) -> MigrationController | None:
    if config.migration is None:
        return None
    owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return MigrationController(
        config.migration,
        bindings[config.migration.old_index],
        bindings[config.migration.new_index],
        MigrationRecord(state),
        owner,
        config.query.traffic_percent,
        RoutingMode(config.query.new_path),
        latencies,
        backfill_embedder,
    )


async def _watch_loop_lag(window: LatencyWindow, interval_s: float = 0.01) -> None:
    """Records how late the event loop wakes up, every `interval_s` (about 0.2 % of a core)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval_s)
        window.record_loop_lag(max(0.0, time.perf_counter() - started - interval_s))


async def serve(config: SwitchyardConfig, config_path: Path | None = None) -> None:
    """Runs until SIGTERM or SIGINT, then drains in-flight calls and saves the indexes."""
    app = build_app(config)
    try:
        servers = await _start_servers(app)
    except Exception:
        app.close()
        raise
    if app.controller is not None:
        app.controller.start_worker()
    if app.telemetry is not None:
        app.telemetry.start_http()
    lag_watch = asyncio.get_running_loop().create_task(_watch_loop_lag(app.latencies))
    watcher = None
    if config_path is not None:
        watcher = ConfigWatcher(config_path, config, lambda old, new: apply_reload(app, old, new)).start()
    log.info("switchyard listening on %s (data in %s)", config.server.listen, config.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    lag_watch.cancel()
    if watcher is not None:
        watcher.stop()
    log.info("shutting down: draining in-flight calls (grace %.1fs)", config.server.shutdown_grace_s)
    for _, health_servicer in servers:
        await health_servicer.enter_graceful_shutdown()
    await asyncio.gather(*(server.stop(config.server.shutdown_grace_s) for server, _ in servers))
    app.close()
    log.info("indexes saved; bye")


async def _start_servers(app: App) -> list[tuple[grpc.aio.Server, health.aio.HealthServicer]]:
    """The data plane on server.listen; the Admin service there too, or on its own server.admin_listen."""
    cfg = app.config.server
    interceptors = _interceptors(app.config)
    dims = {b.model: b.embedder.dim for b in app.bindings.values()}
    admin = AdminServicer(app.promoter, app.executor)
    main = grpc.aio.server(interceptors=interceptors)
    servicer = VectorServicer(app.service, app.executor, dims, latency_sink=app.latencies.record)
    vector_grpc.add_VectorServiceServicer_to_server(servicer, main)
    servers = [(main, cfg.listen, (SERVICE_NAMES[0],) if cfg.admin_listen else SERVICE_NAMES)]
    if cfg.admin_listen:
        admin_server = grpc.aio.server(interceptors=interceptors)
        servers.append((admin_server, cfg.admin_listen, (SERVICE_NAMES[1],)))
    else:
        admin_server = main
    admin_grpc.add_AdminServiceServicer_to_server(admin, admin_server)
    return [await _start(server, listen, names, cfg.tls) for server, listen, names in servers]


async def _start(
    server: grpc.aio.Server, listen: str, names: tuple[str, ...], tls: TlsConfig | None
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_secure_port(listen, _credentials(tls)) if tls else server.add_insecure_port(listen)
    except RuntimeError:
        port = 0  # grpc raises for an address it cannot parse, returns 0 for one it cannot bind
    if port == 0:
        raise ConfigError(
            f"server.listen / server.admin_listen: cannot listen on {listen!r} (in use or not host:port)"
        )
    await server.start()
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer


def _interceptors(config: SwitchyardConfig) -> list[grpc.aio.ServerInterceptor]:
    tokens = {
        prefix: token
        for prefix, token in (
            (ADMIN_PREFIX, config.server.auth.token("admin")),
            (DATA_PREFIX, config.server.auth.token("data")),
        )
        if token is not None
    }
    return [BearerTokenInterceptor(tokens)] if tokens else []


def _credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    try:
        key, cert = tls.key_file.read_bytes(), tls.cert_file.read_bytes()
        ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    except OSError as exc:
        raise ConfigError(f"server.tls: cannot read {exc.filename}: {exc.strerror}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )
