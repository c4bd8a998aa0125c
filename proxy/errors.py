"""The errors the core raises; transport/errors.py maps each to a gRPC status."""

from __future__ import annotations


class SwitchyardError(Exception):
    """Base of every error the core raises on purpose."""


class InvalidArgument(SwitchyardError):
    """The request is malformed; the message says which field and how to fix it."""


class NotFound(SwitchyardError):
    pass


class FailedPrecondition(SwitchyardError):
    """The request is valid but the system is not in a state to run it (e.g. cut-over before full coverage)."""


class Unavailable(SwitchyardError):
    """A backend (index, embedder, state store) could not be reached; retrying later is safe."""


class ConfigError(SwitchyardError):
    """The configuration file is invalid; the message names the field."""
