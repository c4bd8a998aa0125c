"""Builds the sidecar from a config and runs the grpc.aio server until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proxy._gen.switchyard.v1 import admin_service_pb2, vector_service_pb2
from proxy._gen.switchyard.v1 import admin_service_pb2_grpc as admin_grpc
from proxy._gen.switchyard.v1 import vector_service_pb2_grpc as vector_grpc
from proxy.config import SwitchyardConfig
from proxy.config_watch import ConfigWatcher
from proxy.core.binding import IndexBinding
from proxy.core.merge import make_merger
from proxy.core.model import RoutingMode
from proxy.core.service import Limits, VectorService
from proxy.core.topology import StaticTopology, Topology
from proxy.migration.controller import MigrationController
from proxy.migration.shadow import ShadowRecorder
from proxy.migration.state import MigrationRecord
from proxy.migration.throttle import LatencyWindow
from proxy.ports import StateStore
from proxy.transport.admin_service import AdminServicer
from proxy.transport.vector_service import VectorServicer
from proxy.wiring import build_bindings, build_state

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
    controller: MigrationController | None = None

    def close(self) -> None:
        if self.controller is not None:
            self.controller.stop_worker()
        for binding in self.bindings.values():
            binding.index.flush()
            binding.index.close()
        self.state.close()
        self.executor.shutdown(wait=True, cancel_futures=True)


def build_app(config: SwitchyardConfig) -> App:
    bindings = build_bindings(config)
    state = build_state(config.state, config.data_dir)
    # A state store that lost its counter (Redis without persistence, a new namespace) must never hand out a
    # version the indexes already hold: every write would then be rejected as stale.
    state.advance_versions(max(b.index.max_version() for b in bindings.values()))
    latencies = LatencyWindow()
    controller = _controller(config, bindings, state, latencies)
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
    merger = make_merger(config.query.merge)
    shadow = ShadowRecorder()
    service = VectorService(
        topology,
        state.next_versions,
        merger,
        executor,
        limits,
        dims,
        shadow_sink=shadow.record,
        latency_sink=latencies.record,
    )
    return App(config, bindings, state, topology, service, executor, shadow, controller)


def apply_reload(app: App, previous: SwitchyardConfig, updated: SwitchyardConfig) -> None:
    """Applies what may change while serving; other changes wait for a restart (and say so)."""
    live = {"query", "migration"}
    for section in sorted(set(SwitchyardConfig.model_fields) - live):
        if getattr(previous, section) != getattr(updated, section):
            log.warning("config: `%s` changed; it takes effect after a restart", section)
    if updated.query.merge != previous.query.merge:
        app.service.set_merger(make_merger(updated.query.merge))
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


def _controller(
    config: SwitchyardConfig, bindings: dict[str, IndexBinding], state: StateStore, latencies: LatencyWindow
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
    )


async def serve(config: SwitchyardConfig, config_path: Path | None = None) -> None:
    """Runs until SIGTERM or SIGINT, then drains in-flight calls and saves the indexes."""
    app = build_app(config)
    server = grpc.aio.server()
    dims = {b.model: b.embedder.dim for b in app.bindings.values()}
    vector_grpc.add_VectorServiceServicer_to_server(VectorServicer(app.service, app.executor, dims), server)
    admin_grpc.add_AdminServiceServicer_to_server(AdminServicer(app.controller, app.executor), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(config.server.listen)
    if port == 0:
        app.close()
        raise OSError(f"cannot listen on {config.server.listen} (server.listen): address in use or invalid")
    await server.start()
    if app.controller is not None:
        app.controller.start_worker()
    watcher = None
    if config_path is not None:
        watcher = ConfigWatcher(config_path, config, lambda old, new: apply_reload(app, old, new)).start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("switchyard listening on %s (data in %s)", config.server.listen, config.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if watcher is not None:
        watcher.stop()
    log.info("shutting down: draining in-flight calls (grace %.1fs)", config.server.shutdown_grace_s)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(config.server.shutdown_grace_s)
    app.close()
    log.info("indexes saved; bye")
