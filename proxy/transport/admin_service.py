"""gRPC servicer for the control plane: operator commands on the configured migration."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

import grpc

from proxy._gen.switchyard.v1 import admin_service_pb2 as pb
from proxy._gen.switchyard.v1 import admin_service_pb2_grpc as pb_grpc
from proxy.errors import FailedPrecondition
from proxy.migration.controller import MigrationController, MigrationStatus
from proxy.transport.errors import grpc_errors

T = TypeVar("T")


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, controller: MigrationController | None, executor: Executor) -> None:
        self._controller = controller
        self._executor = executor

    async def _call(self, fn: Callable[[MigrationController], T]) -> T:
        controller = self._controller
        if controller is None:
            raise FailedPrecondition("no migration is configured; add a `migration:` section to the config")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, controller)

    @grpc_errors
    async def GetMigrationStatus(
        self, request: pb.GetMigrationStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMigrationStatusResponse:
        return status_to_pb(await self._call(lambda c: c.status()))

    @grpc_errors
    async def StartMigration(
        self, request: pb.StartMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartMigrationResponse:
        state = await self._call(lambda c: c.start())
        return pb.StartMigrationResponse(phase=state.phase.value)

    @grpc_errors
    async def PauseMigration(
        self, request: pb.PauseMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseMigrationResponse:
        state = await self._call(lambda c: c.pause())
        return pb.PauseMigrationResponse(phase=state.phase.value)

    @grpc_errors
    async def ResumeMigration(
        self, request: pb.ResumeMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeMigrationResponse:
        state = await self._call(lambda c: c.resume())
        return pb.ResumeMigrationResponse(phase=state.phase.value)

    @grpc_errors
    async def SetBackfillRate(
        self, request: pb.SetBackfillRateRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetBackfillRateResponse:
        rate = await self._call(lambda c: c.set_rate(request.docs_per_second))
        return pb.SetBackfillRateResponse(docs_per_second=rate)

    @grpc_errors
    async def SetTrafficSplit(
        self, request: pb.SetTrafficSplitRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetTrafficSplitResponse:
        percent = await self._call(lambda c: c.set_traffic_percent(request.percent))
        return pb.SetTrafficSplitResponse(percent=percent)

    @grpc_errors
    async def TransitionMigration(
        self, request: pb.TransitionMigrationRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionMigrationResponse:
        state = await self._call(lambda c: c.transition(request.to_phase, request.force, request.reason))
        return pb.TransitionMigrationResponse(phase=state.phase.value)


def status_to_pb(status: MigrationStatus) -> pb.GetMigrationStatusResponse:
    b = status.backfill
    return pb.GetMigrationStatusResponse(
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
        ),
        coverage=status.coverage,
        traffic_percent=status.traffic_percent,
        history=[
            pb.PhaseChange(
                from_phase=c.from_phase.value, to_phase=c.to_phase.value, at_unix=c.at, reason=c.reason
            )
            for c in status.state.history
        ],
    )
