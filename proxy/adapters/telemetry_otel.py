"""OpenTelemetry: spans for the query path, metrics on a Prometheus /metrics endpoint and/or OTLP.

Everything here is set up per App (own providers and Prometheus registry, nothing global), so several
apps in one process (tests) never see each other's data. With tracing off, the core gets the no-op tracer
and the only per-query cost is one histogram record and one counter add.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from proxy.core.model import EmbedderLoad, Vector
from proxy.core.ports import Embedder, ReportsLoad
from proxy.core.rerank import RerankReport
from proxy.core.service import QueryOutcome
from proxy.core.tracing import AttributeValue, Span, Tracer

log = logging.getLogger(__name__)

# Buckets in seconds for query latency: sub-millisecond hnswlib searches up to multi-second embedding calls.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

GaugeValue = tuple[float, Mapping[str, str]]
"""One series of a gauge: its value and its attributes (collection, index)."""
GaugeSource = Callable[[], Mapping[str, Sequence[GaugeValue]]]
"""Returns the series of each gauge by name."""


class OtelTracer:
    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("switchyard")

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[Span]:
        with self._tracer.start_as_current_span(name, attributes=dict(attributes or {})) as span:
            yield span


class TracedEmbedder:
    """An embedder whose calls show up as `switchyard.embed` spans (model, batch size)."""

    def __init__(self, inner: Embedder, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    @property
    def model(self) -> str:
        return self._inner.model

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def in_process(self) -> bool:
        return self._inner.in_process

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        with self._tracer.span("switchyard.embed", {"model": self._inner.model, "batch": len(texts)}):
            return self._inner.embed(texts)

    def load(self) -> EmbedderLoad | None:
        """The wrapped embedder's load, when it reports one (tracing must not hide it from status)."""
        return self._inner.load() if isinstance(self._inner, ReportsLoad) else None

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        attributes: dict[str, AttributeValue] = {
            "model": self._inner.model,
            "batch": len(texts),
            "query": True,
        }
        with self._tracer.span("switchyard.embed", attributes):
            return self._inner.embed_query(texts)


class Telemetry:
    def __init__(
        self,
        service_name: str,
        *,
        metrics_listen: str | None,
        otlp_endpoint: str | None,
        tracing: bool,
        span_processors: Sequence[SpanProcessor] = (),
    ) -> None:
        resource = Resource.create({"service.name": service_name})
        self.registry = CollectorRegistry()
        self._metrics_listen = metrics_listen
        readers: list[MetricReader] = (
            [PrometheusMetricReader(registry=self.registry)] if metrics_listen else []
        )
        if otlp_endpoint:
            readers.append(PeriodicExportingMetricReader(_otlp_metric_exporter(otlp_endpoint)))
        self.meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        self.tracer: Tracer | None = None
        self.tracer_provider: TracerProvider | None = None
        if tracing or otlp_endpoint or span_processors:
            self.tracer_provider = TracerProvider(resource=resource)
            for processor in span_processors:
                self.tracer_provider.add_span_processor(processor)
            if otlp_endpoint:
                self.tracer_provider.add_span_processor(
                    BatchSpanProcessor(_otlp_span_exporter(otlp_endpoint))
                )
            self.tracer = OtelTracer(self.tracer_provider)
        meter = self.meter_provider.get_meter("switchyard")
        self._meter = meter
        self._server: Any = None
        # Per-query metrics use prometheus_client directly: a few microseconds a query, against ~100 µs for
        # the OpenTelemetry SDK's measurement pipeline. They are pushed through OTel only when OTLP is on.
        self._latency = Histogram(
            "switchyard_query_duration_seconds",
            "Query latency by collection and serving path",
            ["collection", "path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._queries = Counter(
            "switchyard_queries",
            "Queries by collection, path and merge strategy",
            ["collection", "path", "merge_strategy", "degraded"],
            registry=self.registry,
        )
        self._failed_legs = Counter(
            "switchyard_query_legs_failed",
            "Legs failed or timed out",
            ["collection", "index"],
            registry=self.registry,
        )
        self._rerank = _RerankMetrics(self.registry)
        self._otlp_query_metrics = _OtlpQueryMetrics(meter) if otlp_endpoint else None
        # labels() looks the child up under a lock each call; the label sets are few and fixed.
        self._children: dict[tuple[str, str, str, bool], tuple[Any, Any]] = {}

    def query_observer(self, collection: str) -> Callable[[QueryOutcome, float], None]:
        """Records one collection's queries: its series carry a `collection` label."""
        return lambda outcome, seconds: self.observe_query(outcome, seconds, collection)

    def observe_query(self, outcome: QueryOutcome, seconds: float, collection: str = "default") -> None:
        key = (collection, outcome.served_by.value, outcome.merge_strategy, outcome.degraded)
        children = self._children.get(key)
        if children is None:
            _, path, merge, degraded = key
            children = self._children[key] = (
                self._latency.labels(collection, path),
                self._queries.labels(collection, path, merge, "true" if degraded else "false"),
            )
        latency, queries = children
        latency.observe(seconds)
        queries.inc()
        for index in outcome.failed_legs:
            self._failed_legs.labels(collection, index).inc()
        if outcome.rerank.candidates:
            self._rerank.observe(outcome.rerank, collection)
        if self._otlp_query_metrics is not None:
            self._otlp_query_metrics.observe(outcome, seconds, collection)

    def watch(self, source: GaugeSource, names: Mapping[str, str], ttl_s: float = 1.0) -> None:
        """Registers observable gauges read from `source` at scrape time, sharing one read per `ttl_s`."""
        cached = _Cached(source, ttl_s)
        for name, description in names.items():
            self._meter.create_observable_gauge(
                f"switchyard.{name}", callbacks=[cached.callback(name)], description=description
            )

    def start_http(self) -> None:
        """Serves /metrics; a taken port is logged, not fatal: the data plane matters more than its metrics."""
        if not self._metrics_listen:
            return
        host, _, port = self._metrics_listen.rpartition(":")
        try:
            self._server, _ = start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)
            log.info("metrics on http://%s/metrics", self._metrics_listen)
        except OSError as exc:
            log.error("cannot serve metrics on %s (telemetry.metrics_listen): %s", self._metrics_listen, exc)

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        self.meter_provider.shutdown()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


class _RerankMetrics:
    """What candidate re-ranking did: queries by outcome, documents by where their vector came from, time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._queries = Counter(
            "switchyard_rerank_queries",
            "Dual queries that re-ranked candidates (outcome=reranked) or fell back to the merge (budget, error)",
            ["collection", "outcome"],
            registry=registry,
        )
        self._documents = Counter(
            "switchyard_rerank_documents",
            "Uncovered candidates by source: embedded now, from the cache, skipped past max_embed",
            ["collection", "source"],
            registry=registry,
        )
        self._duration = Histogram(
            "switchyard_rerank_duration_seconds",
            "Time a query spent re-ranking, embeddings included",
            ["collection"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, report: RerankReport, collection: str) -> None:
        outcome = "reranked" if not report.fallback else report.fallback.split(":")[0]
        self._queries.labels(collection, outcome).inc()
        for source, count in (
            ("embedded", report.embedded_now),
            ("cache", report.from_cache),
            ("skipped", report.skipped),
        ):
            if count:
                self._documents.labels(collection, source).inc(count)
        self._duration.labels(collection).observe(report.seconds)


class _OtlpQueryMetrics:
    """The per-query metrics as OpenTelemetry instruments, for an OTLP collector."""

    def __init__(self, meter: Any) -> None:
        self._latency = meter.create_histogram(
            "switchyard.query.duration",
            unit="s",
            description="Query latency by serving path",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self._queries = meter.create_counter(
            "switchyard.queries", description="Queries by path and merge strategy"
        )
        self._failed_legs = meter.create_counter(
            "switchyard.query.legs_failed", description="Legs failed or timed out"
        )
        self._rerank_documents = meter.create_counter(
            "switchyard.rerank.documents",
            description="Re-ranked candidates by source (embedded, cache, skipped)",
        )

    def observe(self, outcome: QueryOutcome, seconds: float, collection: str) -> None:
        path = outcome.served_by.value
        self._latency.record(seconds, {"collection": collection, "path": path})
        self._queries.add(
            1,
            {
                "collection": collection,
                "path": path,
                "merge_strategy": outcome.merge_strategy,
                "degraded": outcome.degraded,
            },
        )
        for index in outcome.failed_legs:
            self._failed_legs.add(1, {"collection": collection, "index": index})
        report = outcome.rerank
        for source, count in (
            ("embedded", report.embedded_now),
            ("cache", report.from_cache),
            ("skipped", report.skipped),
        ):
            if count:
                self._rerank_documents.add(count, {"collection": collection, "source": source})


class _Cached:
    def __init__(self, source: GaugeSource, ttl_s: float) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._at = 0.0
        self._values: Mapping[str, Sequence[GaugeValue]] = {}

    def callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, dict(attributes)) for value, attributes in self._read().get(name, ())]

        return observe

    def _read(self) -> Mapping[str, Sequence[GaugeValue]]:
        with self._lock:
            if time.monotonic() - self._at > self._ttl_s:
                try:
                    self._values = self._source()
                except Exception:  # a scrape must not fail because state is briefly unreachable
                    log.warning("telemetry gauges: reading the migration status failed", exc_info=True)
                self._at = time.monotonic()
            return self._values


def _otlp_span_exporter(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))


def _otlp_metric_exporter(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
