"""The small set of errors a user can act on. Surfaces render ``str(err)``; never a traceback.

Each error names what went wrong and, in ``hint``, what to do about it. REST maps ``http_status``.
"""

from __future__ import annotations


class NeoError(Exception):
    """Base of every error jupyter-neo reports to a user."""

    http_status = 400
    code = "bad_request"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class InvalidRequest(NeoError):
    """The request itself is malformed (bad numbers, unknown names)."""


class ConfigError(NeoError):
    """The cluster configuration file is unreadable or invalid."""


class NotFound(NeoError):
    http_status = 404
    code = "not_found"


class NoCapacity(NeoError):
    """No cluster that fits the request has the GPUs free right now."""

    http_status = 409
    code = "no_capacity"


class Conflict(NeoError):
    http_status = 409
    code = "conflict"


class BackendError(NeoError):
    """The backend failed (a pod did not come up, a stream broke)."""

    http_status = 502
    code = "backend"


class AgentError(NeoError):
    """The pod agent refused or failed a request."""

    http_status = 502
    code = "agent"

    def __init__(self, message: str, hint: str | None = None, agent_code: str = "") -> None:
        super().__init__(message, hint)
        self.agent_code = agent_code


class StateError(NeoError):
    """The state directory cannot be used."""

    http_status = 500
    code = "state"


class InternalError(NeoError):
    """A bug met in another process (the resident controller): its one line names the log that
    holds the traceback, so a surface shows it as it would show its own."""

    http_status = 500
    code = "internal"
