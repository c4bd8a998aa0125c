"""gRPC servicer for the control plane: operator commands on the configured migration."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

import grpc

from proxy._gen.switchyard.v1 import admin_service_pb2 as pb
from proxy._gen.switchyard.v1 import admin_service_pb2_grpc as pb_grpc
from proxy.core.collections import Collections
from proxy.core.errors import FailedPrecondition
from proxy.core.model import EmbedderLoad
from proxy.migration.controller import MigrationController
from proxy.migration.phases import Phase
from proxy.migration.promoter import Promoter
from proxy.migration.status import MigrationStatus
from proxy.migration.validation import Gate, GoldenQuery, report_table
from proxy.transport.errors import grpc_errors

T = TypeVar("T")


@dataclass(frozen=True)
class CollectionAdmin:
    """What the Admin service acts on in one collection."""

    serving_index: str
    controller: MigrationController | None


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, collections: Collections[CollectionAdmin], executor: Executor) -> None:
        self._collections = collections
        self._executor = executor

    def _controller(self, collection: str) -> MigrationController:
        controller = self._collections.get(collection).controller
        if controller is None:
            name = self._collections.name_of(collection)
            raise FailedPrecondition(
                f"no migration is configured for collection {name!r}; add a `migration:` section to it in the config"
            )
        return controller

    async def _promote(self, collection: str, fn: Callable[[Promoter], T]) -> T:
        promoter = self._controller(collection).promoter
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, promoter)

    async def _call(self, collection: str, fn: Callable[[MigrationController], T]) -> T:
        controller = self._controller(collection)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, controller)

    @grpc_errors
    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        def summaries() -> list[pb.CollectionSummary]:
            return [self._summary(name, member) for name, member in self._collections.items()]

        found = await asyncio.get_running_loop().run_in_executor(self._executor, summaries)
        return pb.ListCollectionsResponse(collections=found)

    def _summary(self, name: str, member: CollectionAdmin) -> pb.CollectionSummary:
        summary = pb.CollectionSummary(
            name=name,
            is_default=name == self._collections.default,
            serving_index=member.serving_index,
            phase="none",
            coverage=1.0,
        )
        if member.controller is not None:
            status = member.controller.status()
            cut_over = status.state.phase in (Phase.CUT_OVER, Phase.OLD_RETIRED)
            summary.serving_index = status.new_index if cut_over else status.old_index
            summary.old_index, summary.new_index = status.old_index, status.new_index
            summary.phase = status.state.phase.value
            summary.coverage = status.coverage
            summary.traffic_percent = status.traffic_percent
            summary.backfill_done, summary.backfill_total = status.backfill.done, status.backfill.total
        return summary

    @grpc_errors
    async def GetMigrationStatus(
        self, request: pb.GetMigrationStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMigrationStatusResponse:
        name = self._collections.name_of(request.collection)
        return await self._call(request.collection, lambda c: status_to_pb(c.status(), c.promoter, name))

    @grpc_errors
    async def StartMigration(
        self, request: pb.StartMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartMigrationResponse:
        state = await self._call(request.collection, lambda c: c.start())
        return pb.StartMigrationResponse(phase=state.phase.value)

    @grpc_errors
    async def PauseMigration(
        self, request: pb.PauseMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseMigrationResponse:
        state = await self._call(request.collection, lambda c: c.pause())
        return pb.PauseMigrationResponse(phase=state.phase.value)

    @grpc_errors
    async def ResumeMigration(
        self, request: pb.ResumeMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeMigrationResponse:
        state = await self._call(request.collection, lambda c: c.resume())
        return pb.ResumeMigrationResponse(phase=state.phase.value)

    @grpc_errors
    async def SetBackfillRate(
        self, request: pb.SetBackfillRateRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetBackfillRateResponse:
        rate = await self._call(request.collection, lambda c: c.set_rate(request.docs_per_second))
        return pb.SetBackfillRateResponse(docs_per_second=rate)

    @grpc_errors
    async def SetTrafficSplit(
        self, request: pb.SetTrafficSplitRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetTrafficSplitResponse:
        percent = await self._call(request.collection, lambda c: c.set_traffic_percent(request.percent))
        return pb.SetTrafficSplitResponse(percent=percent)

    @grpc_errors
    async def TransitionMigration(
        self, request: pb.TransitionMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionMigrationResponse:
        state = await self._call(
            request.collection, lambda c: c.transition(request.to_phase, request.force, request.reason)
        )
        return pb.TransitionMigrationResponse(phase=state.phase.value)

    @grpc_errors
    async def ValidateMigration(
        self, request: pb.ValidateMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ValidateMigrationResponse:
        golden = [GoldenQuery(q.query, dict(q.relevant)) for q in request.golden]
        report = await self._promote(request.collection, lambda p: p.validate(golden or None))
        return pb.ValidateMigrationResponse(
            passed=report.passed,
            gates=[_gate(g) for g in report.gates],
            report_json=report.to_json(),
            report_text=report_table(report),
        )

    @grpc_errors
    async def PromoteMigration(
        self, request: pb.PromoteMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.PromoteMigrationResponse:
        percent = await self._promote(
            request.collection, lambda p: p.promote(request.reason or "promoted by operator")
        )
        phase = await self._call(request.collection, lambda c: c.record.load().phase.value)
        return pb.PromoteMigrationResponse(percent=percent, phase=phase)

    @grpc_errors
    async def RollbackMigration(
        self, request: pb.RollbackMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RollbackMigrationResponse:
        reason = request.reason or "rolled back by operator"
        state = await self._promote(request.collection, lambda p: p.rollback(reason, force=request.force))
        return pb.RollbackMigrationResponse(phase=state.phase.value)


def _gate(gate: Gate) -> pb.Gate:
    return pb.Gate(
        name=gate.name,
        value=gate.value or 0.0,
        has_value=gate.value is not None,
        threshold=gate.threshold,
        passed=gate.passed,
        detail=gate.detail,
    )


def status_to_pb(
    status: MigrationStatus, promoter: Promoter, collection: str
) -> pb.GetMigrationStatusResponse:
    b = status.backfill
    s = status.storage
    promotion = promoter.promotion
    return pb.GetMigrationStatusResponse(
        collection=collection,
        migration_id=f"{status.old_index}->{status.new_index}",
        old_index=status.old_index,
        new_index=status.new_index,
        phase=status.state.phase.value,
        backfill=pb.BackfillProgress(
            done=b.done,
            total=b.total,
            rate=b.rate,
            eta_seconds=b.eta_s,
            paused=b.paused,
            throttle_reason=b.throttle_reason,
            rate_limit=b.rate_limit,
            lazy_queue_depth=b.lazy_queue,
            pending_repairs=b.pending_repairs,
            complete=b.complete,
            query_p99_ms=b.query_p99_ms,
            latency_budget_ms=b.latency_budget_ms,
            throttle_duty=b.throttle_duty,
            direct_writes_pending=b.direct_writes_pending,
        ),
        coverage=status.coverage,
        traffic_percent=status.traffic_percent,
        search_index=status.search_index,
        storage=pb.StorageStatus(
            policy=s.policy,
            old_bytes=s.old_bytes,
            new_bytes=s.new_bytes,
            baseline_bytes=s.baseline_bytes,
            peak_ratio=s.peak_ratio,
            retired=s.retired,
        ),
        promotion=pb.PromotionStatus(
            auto=promotion.auto,
            steps=list(promotion.steps),
            step_started_at_unix=promoter.step_started_at(),
            events=promoter.events(),
            last_report_passed=promoter.report_passed(),
        ),
        history=[
            pb.PhaseChange(
                from_phase=c.from_phase.value, to_phase=c.to_phase.value, at_unix=c.at, reason=c.reason
            )
            for c in status.state.history
        ],
        new_model_load=_load_to_pb(status.new_model, status.new_model_load),
    )


def _load_to_pb(model: str, load: EmbedderLoad | None) -> pb.EmbedderLoad | None:
    if load is None:
        return None
    return pb.EmbedderLoad(
        model=model,
        in_flight=load.in_flight,
        concurrency=load.concurrency,
        max_concurrency=load.max_concurrency,
        requests_last_minute=load.requests_last_minute,
        tokens_last_minute=load.tokens_last_minute,
        requests_per_minute_budget=load.requests_per_minute or 0.0,
        tokens_per_minute_budget=load.tokens_per_minute or 0.0,
        throttled=load.throttled,
        retries=load.retries,
        batch_cap=load.batch_cap or 0,
    )
