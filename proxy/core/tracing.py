"""Spans around the query path, behind a small interface so the core never imports a telemetry SDK."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

AttributeValue = str | bool | int | float


class Span(Protocol):
    def set_attribute(self, key: str, value: AttributeValue) -> None: ...


class Tracer(Protocol):
    def span(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> AbstractContextManager[Span]:
        """A child of the current span (or a root), ended when the block exits."""
        ...


class _NullSpan:
    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None


_NULL_SPAN = _NullSpan()


class NoopTracer:
    """Tracing off: one shared span object and a generator per call, nothing recorded."""

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[Span]:
        yield _NULL_SPAN


NOOP_TRACER = NoopTracer()
