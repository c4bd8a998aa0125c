"""Errors of the state store adapters (to be folded into proxy/errors.py)."""

from __future__ import annotations

from proxy.errors import Unavailable


class StateUnavailable(Unavailable):
    """The shared state store (Redis or the local SQLite file) could not be reached; retrying later is safe.

    A subclass of `Unavailable` so the transport already maps it to gRPC UNAVAILABLE.
    """
