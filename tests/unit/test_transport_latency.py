"""The latency the backfill throttle watches is what a caller waits, not only the time inside the service."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.core.collections import Collections
from proxy.core.model import RoutingMode
from proxy.core.service import QueryOutcome
from proxy.transport.vector_service import VectorServicer

SERVICE_S = 0.05
BUSY_S = 0.2


class _SlowService:
    def query(self, request: Any) -> QueryOutcome:
        time.sleep(SERVICE_S)
        return QueryOutcome(
            hits=[], served_by=RoutingMode.OLD, reason="test", coverage=1.0, merge_strategy="none"
        )


def test_query_latency_sink_includes_the_wait_for_a_worker_thread() -> None:
    seen: list[float] = []
    with ThreadPoolExecutor(max_workers=1) as executor:
        services = Collections({"default": _SlowService()}, "default")
        servicer = VectorServicer(services, executor, {}, latency_sink=seen.append)  # type: ignore[arg-type]

        async def one_query_behind_busy_worker() -> pb.QueryResponse:
            executor.submit(time.sleep, BUSY_S)  # the only worker is taken, as by a backfill batch
            return await servicer.Query(pb.QueryRequest(k=1, text="garlic"), None)  # type: ignore[arg-type]

        response = asyncio.run(one_query_behind_busy_worker())
    assert response.routing_reason == "test"
    [seconds] = seen
    assert seconds >= BUSY_S + SERVICE_S * 0.9, seconds
