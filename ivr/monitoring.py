"""Supervisors monitoring bridged calls (listen, coach, barge), from the admin API and by
dial-in; supervisors' phones registering; audit of every monitor and end-call action."""

from __future__ import annotations

from typing import Any


class Supervision:
    @classmethod
    async def start(cls, engine: Any) -> Supervision:
        return cls()

    async def close(self) -> None:
        return None
