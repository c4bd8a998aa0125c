"""Runs the sidecar's grpc.aio servers until SIGTERM/SIGINT (the app itself is built in proxy.app.assembly)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proxy._gen.switchyard.v1 import admin_service_pb2, vector_service_pb2
from proxy._gen.switchyard.v1 import admin_service_pb2_grpc as admin_grpc
from proxy._gen.switchyard.v1 import vector_service_pb2_grpc as vector_grpc
from proxy.app.assembly import App, build_app
from proxy.app.config import SwitchyardConfig
from proxy.app.config_server import TlsConfig
from proxy.app.config_watch import ConfigWatcher
from proxy.app.reload import apply_reload
from proxy.core.errors import ConfigError
from proxy.migration.throttle import LatencyWindow
from proxy.transport.admin_service import AdminServicer, CollectionAdmin
from proxy.transport.auth import ADMIN_PREFIX, DATA_PREFIX, BearerTokenInterceptor
from proxy.transport.vector_service import VectorServicer

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    vector_service_pb2.DESCRIPTOR.services_by_name["VectorService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
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
    for controller in app.controllers():
        controller.start_worker()
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
    admin_parts = app.collections.map(lambda c: CollectionAdmin(c.config.serving_index, c.controller))
    admin = AdminServicer(admin_parts, app.executor)
    main = grpc.aio.server(interceptors=interceptors)
    services = app.collections.map(lambda c: c.service)
    servicer = VectorServicer(services, app.executor, dims, latency_sink=app.latencies.record)
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
