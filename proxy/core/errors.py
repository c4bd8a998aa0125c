"""The one error hierarchy: the core and every adapter raise these; transport/errors.py maps each to a gRPC
status, so a client never meets an error the proxy did not decide on."""

from __future__ import annotations


class SwitchyardError(Exception):
    """Base of every error the core raises on purpose."""


class InvalidArgument(SwitchyardError):
    """The request is malformed; the message says which field and how to fix it."""


class NotFound(SwitchyardError):
    """A named thing (index, phase, document set) does not exist; the message lists the known names."""


class FailedPrecondition(SwitchyardError):
    """The request is valid but the system is not in a state to run it (e.g. cut-over before full coverage)."""


class Unavailable(SwitchyardError):
    """A backend (index, embedder, state store) could not be reached; retrying later is safe."""


class StateUnavailable(Unavailable):
    """The shared state store (Redis or the local SQLite file) could not be reached; retrying later is safe."""


class IndexClosed(Unavailable):
    """An index was used after `close()`: the sidecar is shutting down, so another replica (or a retry after
    the restart) can answer; UNAVAILABLE tells a client exactly that."""


class ConfigError(SwitchyardError):
    """The configuration file is invalid; the message names the field."""


class IndexConfigMismatch(ConfigError, ValueError):
    """An existing index was built with another dim or space than it is opened with."""
