"""Bridging asyncio RTP endpoints: the pure :class:`media.bridge.Bridge` on the endpoints'
shared media clock (this module only binds the types; the bridge itself is sans-IO)."""

from __future__ import annotations

from media.aio.rtp import RtpEndpoint
from media.bridge import Bridge, Side, Tap, TapMode

__all__ = ["Bridge", "Side", "Tap", "TapMode", "open_bridge"]


def open_bridge(caller: RtpEndpoint, agent: RtpEndpoint, *, slot_depth: int = 2) -> Bridge:
    """A started bridge between two endpoints on the same clock (RtpEndpoint is a
    :class:`media.bridge.BridgeLeg`; MediaClock a :class:`media.bridge.TickClock`)."""
    if caller.clock is not agent.clock:
        raise ValueError("both legs must tick on the same media clock")
    bridge = Bridge(caller, agent, clock=caller.clock, slot_depth=slot_depth)
    bridge.start()
    return bridge
