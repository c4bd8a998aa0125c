"""Spans around the query path, behind a small interface so the core never imports a telemetry SDK."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
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


class _NullSpanContext(AbstractContextManager[Span]):
    def __enter__(self) -> Span:
        return _NULL_SPAN

    def __exit__(self, *exc_info: object) -> None:
        return None


_NULL_CONTEXT = _NullSpanContext()


class NoopTracer:
    """Tracing off: one shared context and span, nothing recorded, nothing allocated per call."""

    def span(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> AbstractContextManager[Span]:
        return _NULL_CONTEXT


NOOP_TRACER = NoopTracer()
