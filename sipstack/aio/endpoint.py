"""asyncio adapter for :class:`sipstack.ua.UserAgent`: UDP and TCP listeners, one timer.

Like aioquic's ``asyncio/protocol.py``: every datagram is fed to the core with
``now=loop.time()``, then the core's outgoing messages are sent, its events handed to the
application, and ONE ``loop.call_at`` is re-armed for the core's next deadline. Nothing a peer
sends can raise out of here: parse errors are answered or dropped by the core, and transport
errors are logged.

TLS plugs in as another stream listener (``listen_tls`` with an ``ssl.SSLContext``): framing
and connection reuse are the same as TCP (RFC 3261 §18.3, §26.2).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, cast

import structlog

from ..errors import ParseError
from ..message import DEFAULT_LIMITS, Limits, StreamFramer
from ..transaction import Flow, Outgoing
from ..ua import Event, UserAgent

log = structlog.get_logger("sipstack.transport")

Address = tuple[str, int]
EventHandler = Callable[[Event], None]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint, local: Address) -> None:
        self.endpoint = endpoint
        self.local = local
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio's.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.endpoint.feed(data, Flow("UDP", (addr[0], addr[1]), None, self.local))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction timers handle the loss.
        log.debug("udp error", error=str(exc))


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, endpoint: SipEndpoint, transport_name: str, local: Address) -> None:
        self.endpoint = endpoint
        self.transport_name = transport_name
        self.local = local
        self.framer = StreamFramer(endpoint.limits)
        self.transport: asyncio.Transport | None = None
        self.connection_id = 0
        self.remote: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.remote = (peer[0], peer[1])
        self.connection_id = self.endpoint._register_connection(self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except ParseError as exc:
            # A stream cannot resynchronise after a framing error (§18.3): close it.
            log.warning(
                "closing stream after framing error",
                remote=self.remote,
                transport=self.transport_name,
                error=str(exc),
            )
            if self.transport is not None:
                self.transport.close()
            return
        flow = Flow(self.transport_name, self.remote, self.connection_id, self.local)
        for message in messages:
            self.endpoint.feed(message, flow)

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._unregister_connection(self.connection_id)


class SipEndpoint:
    """Runs a :class:`UserAgent` on asyncio sockets and hands its events to ``on_event``."""

    def __init__(
        self,
        ua: UserAgent,
        on_event: EventHandler,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.ua = ua
        self.on_event = on_event
        self.loop = loop or asyncio.get_event_loop()
        self.limits = limits
        self._udp: dict[Address, _UdpProtocol] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: dict[int, _StreamProtocol] = {}
        self._next_connection = 1
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flushing = False
        self.messages_in = 0
        self.messages_out = 0

    # ---- listeners --------------------------------------------------------------------------

    async def listen_udp(self, host: str, port: int) -> Address:
        transport, protocol = await self.loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self, (host, port)), local_addr=(host, port)
        )
        sock = transport.get_extra_info("sockname")
        local = (sock[0], sock[1])
        protocol.local = local
        self._udp[local] = protocol
        return local

    async def listen_tcp(self, host: str, port: int) -> Address:
        return await self._listen_stream("TCP", host, port, None)

    async def listen_tls(self, host: str, port: int, context: ssl.SSLContext) -> Address:
        return await self._listen_stream("TLS", host, port, context)

    async def _listen_stream(
        self, name: str, host: str, port: int, context: ssl.SSLContext | None
    ) -> Address:
        holder: dict[str, Address] = {}
        server = await self.loop.create_server(
            lambda: _StreamProtocol(self, name, holder["local"]),
            host,
            port,
            ssl=context,
            reuse_address=True,
        )
        sock = server.sockets[0].getsockname()
        holder["local"] = (sock[0], sock[1])
        self._servers.append(server)
        return holder["local"]

    def udp_flow(self, remote: Address, local: Address | None = None) -> Flow:
        """A flow to send new requests over UDP from ``local`` (default: first listener)."""
        if local is None:
            local = next(iter(self._udp))
        return Flow("UDP", remote, None, local)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for protocol in self._udp.values():
            if protocol.transport is not None:
                protocol.transport.close()
        for server in self._servers:
            server.close()
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for server in self._servers:
            await server.wait_closed()

    # ---- core driving -----------------------------------------------------------------------

    def feed(self, data: bytes, flow: Flow) -> None:
        self.messages_in += 1
        try:
            self.ua.receive_datagram(data, flow, self.loop.time())
        except Exception:
            log.exception(
                "SIP core failed on an incoming message",
                remote=flow.remote,
                transport=flow.transport,
            )
        self.flush()

    def flush(self) -> None:
        """Send what the core queued, deliver its events, re-arm the timer. Re-entrant safe:
        commands issued by event handlers are flushed by the same loop."""
        if self._flushing:
            return
        self._flushing = True
        try:
            while True:
                outgoing = self.ua.datagrams_to_send()
                for item in outgoing:
                    self._send(item)
                event = self.ua.next_event()
                if event is None and not outgoing:
                    break
                if event is not None:
                    try:
                        self.on_event(event)
                    except Exception:
                        log.exception("event handler failed", event=type(event).__name__)
        finally:
            self._flushing = False
        self._rearm()

    def _send(self, item: Outgoing) -> None:
        flow = item.flow
        self.messages_out += 1
        if flow.transport == "UDP":
            protocol = self._udp.get(flow.local) if flow.local else None
            if protocol is None and self._udp:
                protocol = next(iter(self._udp.values()))
            if protocol is not None and protocol.transport is not None:
                protocol.transport.sendto(item.data, flow.remote)
            return
        conn = self._connections.get(flow.connection or -1)
        if conn is None:
            conn = self._find_connection(flow)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(item.data)
            return
        if flow.transport == "TCP":
            self.loop.create_task(self._connect_and_send(flow, item.data))
        else:
            log.warning(
                "no connection for stream message", remote=flow.remote, transport=flow.transport
            )

    async def _connect_and_send(self, flow: Flow, data: bytes) -> None:
        """RFC 3261 §18.1.1: open a new connection when none exists to the destination."""
        try:
            local = flow.local or ("0.0.0.0", 0)
            _, protocol = await self.loop.create_connection(
                lambda: _StreamProtocol(self, "TCP", local), flow.remote[0], flow.remote[1]
            )
        except OSError as exc:
            log.warning("TCP connect failed", remote=flow.remote, error=str(exc))
            return
        assert protocol.transport is not None
        protocol.transport.write(data)

    def _find_connection(self, flow: Flow) -> _StreamProtocol | None:
        for conn in self._connections.values():
            if conn.remote == flow.remote and conn.transport_name == flow.transport:
                return conn
        return None

    def _register_connection(self, protocol: _StreamProtocol) -> int:
        cid = self._next_connection
        self._next_connection += 1
        self._connections[cid] = protocol
        return cid

    def _unregister_connection(self, cid: int) -> None:
        self._connections.pop(cid, None)

    def _rearm(self) -> None:
        deadline = self.ua.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.ua.handle_timer(self.loop.time())
        except Exception:
            log.exception("SIP core failed in a timer")
        self.flush()

    def run_command(self, command: Callable[[float], object]) -> object:
        """Run a UA command with the current time and flush what it produced."""
        result = command(self.loop.time())
        self.flush()
        return result
