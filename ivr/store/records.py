"""The rows of the store's tables, as frozen dataclasses.

Times are wall-clock UNIX seconds (``time.time()``), never ``loop.time()``: they must mean the
same thing after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sipstack.registrar import Binding
from sipstack.transaction import Flow

__all__ = [
    "AuditEntry",
    "CallRecord",
    "NewOutboxItem",
    "OutboxItem",
    "OutboxState",
    "Registration",
    "Voicemail",
    "VoicemailState",
]

OutboxState = Literal["pending", "done", "failed"]
VoicemailState = Literal["new", "notified", "handled"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """One agent contact binding (RFC 3261 §10.3). ``expires_at`` is wall-clock seconds."""

    aor: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    transport: str
    remote_host: str
    remote_port: int
    local_host: str | None = None
    local_port: int | None = None
    q: float = 1.0
    user_agent: str = ""

    @classmethod
    def from_binding(cls, binding: Binding, *, mono_now: float, wall_now: float) -> Registration:
        """The registrar keeps ``loop.time()`` deadlines; the store keeps wall-clock ones."""
        local = binding.flow.local
        return cls(
            aor=binding.aor,
            contact=binding.contact,
            expires_at=wall_now + (binding.expires_at - mono_now),
            call_id=binding.call_id,
            cseq=binding.cseq,
            transport=binding.flow.transport,
            remote_host=binding.flow.remote[0],
            remote_port=binding.flow.remote[1],
            local_host=local[0] if local else None,
            local_port=local[1] if local else None,
            q=binding.q,
            user_agent=binding.user_agent,
        )

    def to_binding(self, *, mono_now: float, wall_now: float) -> Binding:
        """Back to a registrar binding. Connections do not survive a restart: a TCP/TLS
        contact is reached on a new connection (or re-registers)."""
        local = (self.local_host, self.local_port) if self.local_host and self.local_port else None
        flow = Flow(self.transport, (self.remote_host, self.remote_port), None, local)
        return Binding(
            aor=self.aor,
            contact=self.contact,
            expires_at=mono_now + (self.expires_at - wall_now),
            call_id=self.call_id,
            cseq=self.cseq,
            flow=flow,
            q=self.q,
            user_agent=self.user_agent,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """What happened on one call, written when it ends."""

    call_id: str
    started_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    caller: str = ""
    called: str = ""
    trunk: str | None = None
    queue: str | None = None
    agent: str | None = None
    menu_path: tuple[str, ...] = ()
    wait_seconds: float = 0.0
    ring_seconds: float = 0.0
    talk_seconds: float = 0.0
    hold_seconds: float = 0.0
    transfers: tuple[Mapping[str, Any], ...] = ()
    outcome: str = ""
    profile: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Voicemail:
    """A voicemail: the WAV on disk plus what the caller told us."""

    id: str
    queue: str
    caller: str
    callback_number: str | None
    started_at: float
    duration_seconds: float
    menu_path: tuple[str, ...]
    wav_path: Path
    state: VoicemailState = "new"
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """A delivery to the CRM. ``files`` are the ordered parts; ``parts_acked`` of them are done."""

    id: int
    kind: str
    delivery_id: str
    payload: Mapping[str, Any]
    files: tuple[Path, ...]
    parts_acked: int
    attempts: int
    next_attempt_at: float
    created_at: float
    state: OutboxState
    last_error: str | None
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOutboxItem:
    """What the outbox table's ``enqueue`` persists (the outbox assigns ``delivery_id``)."""

    kind: str
    delivery_id: str
    payload: Mapping[str, Any]
    files: tuple[Path, ...]
    created_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """Who did what, when, to which call."""

    who: str
    at: float
    action: str
    call_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None  # assigned by the store
