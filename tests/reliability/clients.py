"""Client threads over real gRPC: a writer that records what the server acknowledged, a querier that
records every answer and its latency."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from proxy.cli.client import Doc, SwitchyardClient
from tests.reliability.support import Ledger, Op


class Writer(threading.Thread):
    """Upserts, updates and deletes its own ids (no other thread writes them) until `stop` is set.

    After each restart it moves on to a fresh id set: the write a kill cut off stays the last one its ids
    ever got, so a half-applied write cannot be healed by a later write of the same id and must be
    repaired by the sidecar itself.

    It writes only while `alive` is set: the test clears it before killing the sidecar, so an error seen
    while `alive` is set is unexpected, and one seen after it was cleared is the call the kill cut off.
    """

    def __init__(
        self,
        target: str,
        id_sets: Sequence[Sequence[str]],
        ledger: Ledger,
        seed: int,
        alive: threading.Event,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"writer-{seed}", daemon=True)
        self.target = target
        self.id_sets = [list(ids) for ids in id_sets]
        self.phase = 0
        """Which id set it writes; the test moves it on at each restart."""
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.alive = alive
        self.stop = stop
        self.errors: list[tuple[grpc.StatusCode, bool]] = []
        """(status, whether `alive` was set when the call failed) per failed call."""
        self._revision = 0

    def run(self) -> None:
        client = SwitchyardClient(self.target, timeout_s=5.0)
        try:
            while not self.stop.is_set():
                if not self.alive.wait(0.05):
                    continue
                try:
                    self._one_write(client)
                except grpc.RpcError as exc:
                    self.errors.append((exc.code(), self.alive.is_set()))
                    # A fresh channel reconnects at once instead of waiting out gRPC's reconnect backoff.
                    client.close()
                    client = SwitchyardClient(self.target, timeout_s=5.0)
                    self.stop.wait(0.02)
        finally:
            client.close()

    @property
    def unexpected(self) -> list[str]:
        """Failures while the sidecar was meant to be up."""
        return [code.name for code, alive in self.errors if alive]

    def _one_write(self, client: SwitchyardClient) -> None:
        ids = self.rng.sample(self.id_sets[self.phase], self.rng.randint(1, 4))
        if self.rng.random() < 0.7:
            self._upsert_docs(client, ids)
        else:
            self._delete_ids(client, ids[:2])

    def _upsert_docs(self, client: SwitchyardClient, ids: list[str]) -> None:
        texts = {}
        for doc_id in ids:
            self._revision += 1
            texts[doc_id] = f"{doc_id} revision {self._revision} of {self.name} about garlic and comets"
        try:
            versions = client.upsert([Doc(i, t, {"writer": self.name}) for i, t in texts.items()])
        except grpc.RpcError:
            for doc_id, text in texts.items():
                self.ledger.add(doc_id, Op("upsert", text, acked=False, version=None))
            raise
        for doc_id, text in texts.items():
            self.ledger.add(doc_id, Op("upsert", text, acked=True, version=versions[doc_id]))

    def _delete_ids(self, client: SwitchyardClient, ids: list[str]) -> None:
        try:
            response = client.delete(ids)
        except grpc.RpcError:
            for doc_id in ids:
                self.ledger.add(doc_id, Op("delete", None, acked=False, version=None))
            raise
        deleted = {d.id: d.version for d in response.deleted}
        for doc_id in ids:
            self.ledger.add(doc_id, Op("delete", None, acked=True, version=deleted.get(doc_id)))


@dataclass(frozen=True)
class Answer:
    at: float
    """time.monotonic() when the call returned."""
    latency_s: float
    code: grpc.StatusCode
    served_by: int = 0
    degraded: bool = False


class Querier(threading.Thread):
    """Sends queries with random routing keys until `stop` is set; keeps every answer."""

    def __init__(self, target: str, texts: Sequence[str], seed: int, stop: threading.Event) -> None:
        super().__init__(name=f"querier-{seed}", daemon=True)
        self.target = target
        self.texts = list(texts)
        self.rng = random.Random(seed)
        self.stop = stop
        self.answers: list[Answer] = []

    def run(self) -> None:
        with SwitchyardClient(self.target, timeout_s=5.0) as client:
            while not self.stop.is_set():
                self.answers.append(self._one_query(client))

    def _one_query(self, client: SwitchyardClient) -> Answer:
        text = self.rng.choice(self.texts)
        started = time.monotonic()
        try:
            response = client.query(text, k=5, routing_key=f"user-{self.rng.randrange(10_000)}")
        except grpc.RpcError as exc:
            now = time.monotonic()
            return Answer(now, now - started, exc.code())
        now = time.monotonic()
        return Answer(now, now - started, grpc.StatusCode.OK, response.served_by, response.degraded)
