"""The data plane's core: upsert, delete, get and query against the current layout, no gRPC here."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

from proxy.core.binding import IndexBinding
from proxy.core.coverage_guard import guard_new_hits
from proxy.core.errors import FailedPrecondition, InvalidArgument, Unavailable
from proxy.core.fanout import LegPools, LegRequest, LegResult, fan_out
from proxy.core.merge import ScoreMerger
from proxy.core.model import DocumentInput, Hit, Metadata, RoutingMode, StoredDocument, Vector
from proxy.core.rerank import (
    NO_RERANK,
    RerankBusy,
    Reranker,
    RerankReport,
    RerankRequest,
    RerankSettings,
)
from proxy.core.router import RoutingDecision, route
from proxy.core.topology import Layout, Topology
from proxy.core.tracing import NOOP_TRACER, Span, Tracer
from proxy.core.validation import check_batch_size, check_documents, check_ids, check_k

log = logging.getLogger(__name__)

VersionSource = Callable[[int], int]
"""Reserves n consecutive versions and returns the first."""

Payload = TypeVar("Payload")
"""What one write sends to each index: its records for an upsert, nothing for a delete."""


@dataclass(frozen=True)
class Limits:
    max_batch_size: int = 256
    max_k: int = 100
    max_text_chars: int = 100_000
    leg_timeout_s: float = 2.0
    sync_reembed_budget: int = 0
    """Uncovered documents a query may move into the new index inline before answering."""
    shadow_sample_rate: float = 0.0
    """Share of old-path queries that also run against the new index in the background."""
    leg_workers: int = 16
    """Threads per index for query legs (each index has its own pool: a slow one fills only its own)."""


@dataclass(frozen=True)
class QueryInput:
    k: int
    text: str = ""
    vector: Vector | None = None
    vector_model: str = ""
    where: Metadata = field(default_factory=dict)
    routing_key: str = ""
    override: RoutingMode | None = None
    include_text: bool = False
    rerank_candidates: int | None = None
    """k' for candidate re-ranking; None: the collection's setting; 0: the merge answers."""


@dataclass(frozen=True)
class QueryOutcome:
    hits: list[Hit]
    served_by: RoutingMode
    reason: str
    coverage: float
    merge_strategy: str
    failed_legs: tuple[str, ...] = ()
    legs: tuple[LegResult, ...] = ()
    rerank: RerankReport = NO_RERANK

    @property
    def degraded(self) -> bool:
        return bool(self.failed_legs)


@dataclass(frozen=True)
class DocumentRead:
    document: StoredDocument
    indexes: tuple[str, ...]


ShadowSink = Callable[[LegResult, LegResult, int, float], None]
"""Gets (served old leg, background new leg, k, coverage when the query ran)."""
QueryObserver = Callable[["QueryOutcome", float], None]
"""Sees every answered query and its latency in seconds (throttle, promotion gates, metrics)."""


class VectorService:
    def __init__(
        self,
        topology: Topology,
        versions: VersionSource,
        merger: ScoreMerger,
        executor: Executor,
        limits: Limits,
        model_dims: Mapping[str, int],
        shadow_sink: ShadowSink | None = None,
        observer: QueryObserver | None = None,
        tracer: Tracer = NOOP_TRACER,
        cores: int = 1,
        collection: str = "default",
        reranker: Reranker | None = None,
    ) -> None:
        self._collection = collection
        """Named on every span, so a trace says which collection a query ran against."""
        self._topology = topology
        self._versions = versions
        self._merger = merger
        self._executor = executor
        """Runs background work (shadow comparisons); query legs run in per-index pools."""
        self._legs = LegPools(limits.leg_workers)
        self._limits = limits
        self._dims = dict(model_dims)
        self._shadow_sink = shadow_sink
        self._observer = observer
        self._tracer = tracer
        self._shadow_rate = limits.shadow_sample_rate
        self._random = random.Random()
        self._cores = cores
        """Cores this process may use: while fewer queries run, a second leg may overlap the first."""
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._reranker = reranker

    def close(self) -> None:
        """Stops the leg pools' threads and the re-ranker's (both are this service's own)."""
        self._legs.shutdown()
        if self._reranker is not None:
            self._reranker.close()

    def set_merger(self, merger: ScoreMerger) -> None:
        self._merger = merger

    def set_shadow_sample_rate(self, rate: float) -> None:
        self._shadow_rate = rate

    def set_rerank_settings(self, settings: RerankSettings) -> None:
        if self._reranker is not None:
            self._reranker.reconfigure(settings)

    # -- writes ---------------------------------------------------------------------------------------

    def upsert(self, documents: Sequence[DocumentInput]) -> dict[str, int]:
        """Writes the batch to every write target; returns the version given to each id."""
        check_documents(documents, self._limits.max_batch_size, self._limits.max_text_chars, self._dims)
        layout = self._topology.layout()
        first = self._versions(len(documents))
        versions = [first + i for i in range(len(documents))]
        # Embed for every target before writing anything: an embedder failure must leave no partial write.
        batches = [(b, b.records_for(documents, versions)) for b in layout.write_targets]
        assigned = {d.id: v for d, v in zip(documents, versions, strict=True)}
        self._write(batches, assigned, lambda b, recs: b.index.upsert(recs))
        return assigned

    def delete(self, ids: Sequence[str]) -> tuple[dict[str, int], list[str]]:
        """Deletes ids everywhere; returns (deleted id -> tombstone version, ids that did not exist)."""
        check_batch_size(len(ids), self._limits.max_batch_size, "ids")
        check_ids(ids, "ids")
        layout = self._topology.layout()
        live = {d.id for d in layout.primary.index.get(ids)}
        version = self._versions(1)
        batches = [(b, None) for b in layout.write_targets]
        self._write(batches, dict.fromkeys(ids, version), lambda b, _: b.index.delete(ids, version))
        return {i: version for i in ids if i in live}, [i for i in ids if i not in live]

    def _write(
        self,
        batches: Sequence[tuple[IndexBinding, Payload]],
        versions: Mapping[str, int],
        write: Callable[[IndexBinding, Payload], object],
    ) -> None:
        (primary, primary_payload), *others = batches
        for binding, _ in others:
            # Before the primary: a process killed between the two writes still leaves the repair record.
            self._topology.record_pending(binding.name, versions)
        try:
            write(primary, primary_payload)
        except FailedPrecondition:
            raise  # the index refuses such writes at all (an application's own table): nothing to retry
        except Exception as exc:
            raise Unavailable(
                f"index {primary.name!r} rejected the write: {exc}; nothing was written"
            ) from exc
        for binding, payload in others:
            self._write_secondary(binding, payload, write)

    def _write_secondary(
        self, binding: IndexBinding, payload: Payload, write: Callable[[IndexBinding, Payload], object]
    ) -> None:
        for attempt in (1, 2):
            try:
                write(binding, payload)
                return
            except Exception as exc:
                log.warning("write to %s failed (attempt %d): %s", binding.name, attempt, exc)
                error = exc
        # The primary holds the write and record_pending queued it: the backfill worker repairs the secondary.
        raise Unavailable(
            f"written to the primary index but index {binding.name!r} failed ({error}); "
            "it is queued for repair and retrying this call is safe"
        )

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> tuple[list[DocumentRead], list[str]]:
        check_batch_size(len(ids), self._limits.max_batch_size, "ids")
        check_ids(ids, "ids")
        layout = self._topology.layout()
        documents = layout.primary.index.get(ids)
        if layout.secondary is not None and len(documents) < len(ids):
            # A document retired from the primary (retire_as_you_go) lives on in the secondary.
            found = {d.id for d in documents}
            documents += layout.secondary.index.get([i for i in ids if i not in found])
            order = {doc_id: n for n, doc_id in enumerate(ids)}
            documents.sort(key=lambda d: order[d.id])
        holders = {b.name: b.index.versions(ids) for b in layout.write_targets}
        reads = [
            DocumentRead(d, tuple(name for name, v in holders.items() if v.get(d.id) == d.version))
            for d in documents
        ]
        found = {d.id for d in documents}
        return reads, [i for i in ids if i not in found]

    def query(self, request: QueryInput) -> QueryOutcome:
        with self._in_flight_lock:
            self._in_flight += 1
            # Counted with this query: below the core count some core has nothing to run, and a second leg
            # may use it (measured: dual / slower leg p50 at 1 client 1.25-1.29 inline vs 1.17-1.24).
            spare_cores = self._in_flight < self._cores
        try:
            with self._tracer.span(
                "switchyard.query", {"k": request.k, "collection": self._collection}
            ) as span:
                started = time.perf_counter()
                outcome = self._query(request, spare_cores)
                seconds = time.perf_counter() - started
                _describe_span(span, outcome)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
        if self._observer is not None:
            self._observer(outcome, seconds)
        return outcome

    def _query(self, request: QueryInput, spare_cores: bool) -> QueryOutcome:
        check_k(request.k, self._limits.max_k)
        if request.vector is None and not request.text.strip():
            raise InvalidArgument("query needs text or an embedding; both are empty")
        layout = self._topology.layout()
        decision = self._decide(request, layout)
        coverage = self._topology.coverage() if layout.migrating else 1.0
        bindings = self._bindings_for(decision.mode, layout, coverage, request)
        candidates = self._candidates(request) if len(bindings) > 1 else 0
        # The old leg (first of two) fetches the re-ranking's candidates; the new leg only the top k.
        legs = [self._leg(b, request, candidates if n == 0 else 0) for n, b in enumerate(bindings)]
        results = fan_out(legs, self._legs, self._limits.leg_timeout_s, self._tracer, spare_cores=spare_cores)
        if not any(r.ok for r in results):
            raise Unavailable(
                "every index leg failed: " + "; ".join(f"{r.index}: {r.error}" for r in results)
            )
        if decision.mode is RoutingMode.SHADOW and layout.new is not None:
            self._start_shadow(layout.new, request, results[0], coverage)
        hits, rerank = self._combine(results, legs, layout, request, coverage, candidates)
        failed = tuple(r.index for r in results if not r.ok)
        return QueryOutcome(
            hits=hits,
            served_by=decision.mode,
            reason=decision.reason,
            coverage=coverage,
            merge_strategy=self._merger.name if len(results) > 1 else "none",
            failed_legs=failed,
            legs=tuple(results),
            rerank=rerank,
        )

    def _decide(self, request: QueryInput, layout: Layout) -> RoutingDecision:
        if not layout.migrating:
            return RoutingDecision(RoutingMode.OLD, "no migration: the serving index answers")
        if layout.forced_mode is not None and request.override is None:
            return RoutingDecision(
                layout.forced_mode, f"migration phase pins the path to {layout.forced_mode.value}"
            )
        # Without a key each request is its own bucket: the split still holds on average. Drawn here, not in
        # the transport, because only a migration needs it.
        key = request.routing_key or f"{self._random.getrandbits(64):016x}"
        decision = route(key, layout.traffic_percent, layout.new_path, request.override, True)
        if (
            decision.mode is RoutingMode.OLD
            and self._shadow_rate
            and self._random.random() < self._shadow_rate
        ):
            return RoutingDecision(RoutingMode.SHADOW, f"{decision.reason}; sampled for shadow comparison")
        return decision

    def _bindings_for(
        self, mode: RoutingMode, layout: Layout, coverage: float, request: QueryInput
    ) -> list[IndexBinding]:
        candidates: list[IndexBinding | None]
        if not layout.migrating:
            candidates = [layout.primary]
        elif mode in (RoutingMode.OLD, RoutingMode.SHADOW):
            candidates = [layout.old]
        elif mode is RoutingMode.NEW and coverage >= 1.0:
            candidates = [layout.new]
        else:
            # dual, or new with partial coverage: the old leg answers for what the new index lacks.
            candidates = [layout.old, layout.new]
        bindings = [b for b in candidates if b is not None]
        if request.vector is None:
            return bindings
        own = [b for b in bindings if b.model == request.vector_model]
        if not own:
            raise InvalidArgument(
                f"embedding.model {request.vector_model!r} has no index on this query path "
                f"(searched: {', '.join(b.model for b in bindings)}); send text or a vector of those models"
            )
        return own

    def _candidates(self, request: QueryInput) -> int:
        if self._reranker is None:
            return 0
        wanted = request.rerank_candidates
        return self._reranker.settings.candidates if wanted is None else wanted

    def _leg(self, binding: IndexBinding, request: QueryInput, candidates: int = 0) -> LegRequest:
        where = dict(request.where) or None
        k = max(request.k, candidates)
        return LegRequest(binding, request.text, request.vector, k, where, request.include_text)

    def _combine(
        self,
        results: list[LegResult],
        legs: list[LegRequest],
        layout: Layout,
        request: QueryInput,
        coverage: float,
        candidates: int,
    ) -> tuple[list[Hit], RerankReport]:
        k = request.k
        if len(results) == 1:
            return list(results[0].hits)[:k], NO_RERANK
        old, new = results
        if not new.ok:
            return list(old.hits)[:k], NO_RERANK
        if not old.ok:
            return list(new.hits)[:k], NO_RERANK
        assert layout.old is not None and layout.new is not None
        top_old = list(old.hits)[:k]
        top_ids = {h.id for h in top_old}
        self._merger.observe(top_old, new.hits)
        if candidates > 0 and self._reranker is not None:
            uncovered = self._uncovered(old.hits, new.hits, layout.new)
            if not uncovered:
                return list(new.hits)[:k], NO_RERANK
            # As without re-ranking, the top k's uncovered hits are queued for a lazy move; the re-ranker
            # writes the candidates it embeds itself.
            self._topology.record_uncovered([h.id for h in uncovered if h.id in top_ids])
            return self._reranked(uncovered, new, layout, request, top_ids, coverage, candidates)
        uncovered = self._uncovered(top_old, new.hits, layout.new)
        budget = self._limits.sync_reembed_budget
        if uncovered and budget and self._topology.reembed_now([h.id for h in uncovered[:budget]]):
            # Moved documents now compete on the new index's own scores: search it again.
            new = fan_out(legs[1:], self._legs, self._limits.leg_timeout_s)[0]
            if not new.ok:
                return top_old, NO_RERANK
            uncovered = self._uncovered(top_old, new.hits, layout.new)
        if not uncovered:
            # The new index holds every hit: its own scores need no normalization against anything.
            return list(new.hits)[:k], NO_RERANK
        self._topology.record_uncovered([h.id for h in uncovered])
        return self._merged(uncovered, new.hits, top_ids, layout, k, coverage), NO_RERANK

    def _merged(
        self,
        uncovered: Sequence[Hit],
        new_hits: Sequence[Hit],
        top_ids: set[str],
        layout: Layout,
        k: int,
        coverage: float,
    ) -> list[Hit]:
        """`top_ids`: the old leg's top k, which the coverage guard never holds back."""
        assert layout.old is not None and layout.new is not None
        old = layout.old.index
        # The old leg contributes only what the new index lacks; normalizing that remainder on its own
        # measured better recall for rank fusion than normalizing the whole old leg (proxy/bench/recall.py).
        merged = self._merger.merge(uncovered, new_hits, len(uncovered) + len(new_hits))
        return guard_new_hits(
            merged, layout.new.name, top_ids, k, coverage, lambda ids: {d.id for d in old.get(ids)}
        )

    def _reranked(
        self,
        uncovered: Sequence[Hit],
        new: LegResult,
        layout: Layout,
        request: QueryInput,
        top_ids: set[str],
        coverage: float,
        candidates: int,
    ) -> tuple[list[Hit], RerankReport]:
        assert self._reranker is not None and layout.old is not None and layout.new is not None
        started = time.perf_counter()
        where = dict(request.where) or None
        ask = RerankRequest(request.k, candidates, where, request.include_text)
        try:
            assert new.query_vector is not None
            answer = self._reranker.rerank(new.query_vector, uncovered, new.hits, layout.old, layout.new, ask)
            return answer.hits, answer.report
        except Exception as exc:
            reason = _fallback_reason(exc)
            if reason.startswith("embedder"):
                log.warning("candidate re-ranking failed, the merge answers: %s", exc)
            merged = self._merged(
                [h for h in uncovered if h.id in top_ids], new.hits, top_ids, layout, request.k, coverage
            )
            report = RerankReport(
                candidates=candidates,
                uncovered=len(uncovered),
                seconds=time.perf_counter() - started,
                fallback=reason,
            )
            return merged, report

    @staticmethod
    def _uncovered(old_hits: Sequence[Hit], new_hits: Sequence[Hit], new: IndexBinding) -> list[Hit]:
        """Old-leg hits the new index does not hold at their version yet: the old leg answers for those."""
        # The new leg's own hits say what it holds for free; only the rest cost an index lookup.
        held = {h.id: h.version for h in new_hits}
        unknown = [h.id for h in old_hits if held.get(h.id, -1) < h.version]
        if unknown:
            held.update(new.index.versions(unknown, for_query=True))
        return [h for h in old_hits if held.get(h.id, -1) < h.version]

    def _start_shadow(
        self, new: IndexBinding, request: QueryInput, served: LegResult, coverage: float
    ) -> None:
        sink = self._shadow_sink
        if sink is None:
            return
        leg = self._leg(new, request)

        def run() -> None:
            # In the new index's own pool, under the deadline: a slow new index must not hold this thread.
            results = fan_out([leg], self._legs, self._limits.leg_timeout_s, inline=False)
            sink(served, results[0], request.k, coverage)

        self._executor.submit(run)


def _fallback_reason(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "budget"
    if isinstance(exc, RerankBusy):
        return "busy"
    return f"embedder: {type(exc).__name__}"


def _describe_span(span: Span, outcome: QueryOutcome) -> None:
    span.set_attribute("path", outcome.served_by.value)
    span.set_attribute("reason", outcome.reason)
    span.set_attribute("coverage", outcome.coverage)
    span.set_attribute("merge_strategy", outcome.merge_strategy)
    span.set_attribute("degraded", outcome.degraded)
    span.set_attribute("hits", len(outcome.hits))
    rerank = outcome.rerank
    if rerank.candidates:
        span.set_attribute("rerank.embedded_now", rerank.embedded_now)
        span.set_attribute("rerank.from_cache", rerank.from_cache)
        span.set_attribute("rerank.fallback", rerank.fallback)
