"""Queues and agents at run time: the asyncio side of the sans-IO ACD core (``ivr.acd``)."""

from __future__ import annotations

from typing import Any


class AcdRuntime:
    @classmethod
    async def start(cls, engine: Any) -> AcdRuntime:
        return cls()

    async def close(self) -> None:
        return None
