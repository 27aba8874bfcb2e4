"""Errors of the ACD core: one root, :class:`AcdError`; misuse of the API is a
:class:`LocalProtocolError` (the engine asked for something the state machine forbids)."""

from __future__ import annotations

__all__ = ["AcdError", "IllegalTransition", "LocalProtocolError", "UnknownCall", "UnknownName"]


class AcdError(Exception):
    """Root of every error raised by ``ivr.acd``."""


class LocalProtocolError(AcdError):
    """The caller of the core misused the API (a bug in the engine, not in the peer)."""


class IllegalTransition(LocalProtocolError):
    """An agent command that the transition table does not allow in the current state."""

    def __init__(self, agent_id: str, state: object, event: object) -> None:
        self.agent_id = agent_id
        self.state = state
        self.event = event
        super().__init__(f"agent {agent_id!r}: {event} is not allowed in state {state}")


class UnknownName(LocalProtocolError, KeyError):
    """An agent or queue name that the configuration does not define."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown name"


class UnknownCall(LocalProtocolError, KeyError):
    """A call id the ACD does not hold (never queued, or already gone)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown call"
