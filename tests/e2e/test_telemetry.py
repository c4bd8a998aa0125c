"""Metrics on /metrics from a running sidecar, and the span tree of a query."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from pathlib import Path

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.app.assembly import build_app
from proxy.app.config import parse_config
from proxy.cli.client import Doc
from proxy.core.model import RoutingMode
from proxy.core.service import QueryInput
from proxy.demo.corpus import synthetic_corpus
from proxy.demo.sidecar_process import free_port
from tests.conftest import SidecarFactory
from tests.migration_support import load_corpus, migration_config


def _scrape(url: str) -> dict[str, float]:
    """Prometheus text format -> {series with labels: value}."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    series = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) ([-+\deE.naNinf]+)$", line)
        if match:
            series[match.group(1)] = float(match.group(2))
    return series


def _value(series: dict[str, float], name: str, **labels: str) -> float:
    for key, value in series.items():
        if key.split("{")[0] == name and all(f'{k}="{v}"' in key for k, v in labels.items()):
            return value
    raise AssertionError(f"{name} {labels} not in /metrics: {sorted(series)[:40]}")


def test_metrics_endpoint_follows_queries_and_the_backfill(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    config = migration_config(tmp_path / "data", f"test-{uuid.uuid4().hex}", rate_limit=400)
    metrics_port = free_port()
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    config["telemetry"] = {"metrics_listen": f"127.0.0.1:{metrics_port}"}
    sidecar = start_sidecar(config)
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    corpus = synthetic_corpus(400)
    with sidecar.client() as client:
        for start in range(0, 400, 200):
            client.upsert([Doc(d.id, d.text) for d in corpus[start : start + 200]])
        for d in corpus[:5]:
            client.query(d.text, k=3)
        before = _scrape(url)
        assert _value(before, "switchyard_queries_total", path="old") == 5
        assert _value(before, "switchyard_coverage") == 0.0
        client.admin.StartMigration(admin_pb.StartMigrationRequest())
        client.admin.SetTrafficSplit(admin_pb.SetTrafficSplitRequest(percent=50))
        for d in corpus[:20]:
            client.query(d.text, k=3, mode=pb.ROUTING_MODE_DUAL)
        time.sleep(1.5)  # gauges are read at most once a second
        during = _scrape(url)
    assert _value(during, "switchyard_queries_total", path="dual", collection="default") == 20
    assert _value(during, "switchyard_query_duration_seconds_count", path="dual") == 20
    assert _value(during, "switchyard_backfill_done") > 0
    assert _value(during, "switchyard_backfill_total") == 400
    assert _value(during, "switchyard_coverage") > 0.0
    assert _value(during, "switchyard_traffic_split_percent") == 50
    assert _value(during, "switchyard_storage_bytes", index="idx-b", collection="default") > 0
    assert _value(during, "switchyard_backfill_duty") == 1.0, (
        "no latency budget: the backfill may work all the time"
    )
    assert "switchyard_lazy_queue_depth" in {k.split("{")[0] for k in during}


def test_a_dual_query_is_a_span_with_one_child_per_leg_and_embedding_spans(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    config = migration_config(tmp_path / "data")
    app = build_app(parse_config(config), span_processors=[SimpleSpanProcessor(exporter)])
    try:
        assert app.controller is not None
        docs = load_corpus(app, 50)
        app.controller.start()
        exporter.clear()
        app.service.query(QueryInput(k=5, text=docs[3].text, override=RoutingMode.DUAL, routing_key="u"))
        spans = {s.name: s for s in exporter.get_finished_spans() if s.name == "switchyard.query"}
        root = spans["switchyard.query"]
        children = [
            s for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == root.context.span_id
        ]
        legs = sorted(s.attributes["index"] for s in children if s.name == "switchyard.leg")
        assert legs == ["idx-a", "idx-b"]
        assert root.attributes["path"] == "dual" and root.attributes["merge_strategy"] == "calibrated"
        assert root.attributes["collection"] == "default"
        for leg in (s for s in children if s.name == "switchyard.leg"):
            embeds = [
                s
                for s in exporter.get_finished_spans()
                if s.name == "switchyard.embed" and s.parent and s.parent.span_id == leg.context.span_id
            ]
            assert len(embeds) == 1 and embeds[0].attributes["batch"] == 1
            assert leg.attributes["latency_ms"] > 0
        hits = {s.attributes["index"]: s.attributes["hits"] for s in children if s.name == "switchyard.leg"}
        assert hits == {"idx-a": 5, "idx-b": 0}  # nothing backfilled yet: the new index is empty
    finally:
        app.close()


def test_without_telemetry_the_core_gets_the_noop_tracer(tmp_path: Path) -> None:
    from proxy.core.tracing import NOOP_TRACER

    app = build_app(parse_config(migration_config(tmp_path / "data")))
    try:
        assert app.telemetry is None
        assert app.service._tracer is NOOP_TRACER
    finally:
        app.close()
