"""Event loop selection: uvloop when installed, the standard asyncio loop otherwise."""

from __future__ import annotations

import asyncio

__all__ = ["install_best_event_loop_policy"]


def install_best_event_loop_policy() -> str:
    """Install uvloop's event loop policy if importable; return ``"uvloop"`` or ``"asyncio"``."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"  # leave whatever policy is installed alone
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
