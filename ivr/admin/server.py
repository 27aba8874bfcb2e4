"""The admin API's HTTP/1.1 adapter: h11 (sans-IO) over asyncio streams.

The connection object turns bytes into events and events into bytes; this module only reads,
feeds, and writes, one request at a time per connection (keep-alive, no pipelining needed by
our clients). Requests are bounded (headers by h11, body by ``MAX_BODY_BYTES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

import h11

from ..logs import get_logger
from .api import AdminApi, ApiResponse

if TYPE_CHECKING:
    from ..monitoring import Supervision

log = get_logger("switchhook.admin")

MAX_BODY_BYTES = 1 << 20
READ_TIMEOUT_SECONDS = 30.0


class AdminServer:
    def __init__(self, api: AdminApi) -> None:
        self.api = api
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] = ("", 0)

    @classmethod
    async def start(cls, supervision: Supervision, host: str, port: int) -> AdminServer:
        self = cls(AdminApi(supervision))
        self._server = await asyncio.start_server(self._client, host, port)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("admin API listening", host=sockname[0], port=sockname[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
        try:
            while True:
                try:
                    request, body = await self._read_request(conn, reader)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send(
                            conn,
                            writer,
                            ApiResponse(
                                exc.error_status_hint, {"error": str(exc) or "bad request"}
                            ),
                        )
                    return
                if request is None:
                    return
                response = await self.api.handle(
                    request.method.decode("ascii"),
                    request.target.decode("ascii", "replace"),
                    {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers},
                    body,
                )
                await self._send(conn, writer, response)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            return
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT_SECONDS)
                conn.receive_data(data)  # b"" is EOF
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None, b""

    async def _send(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, response: ApiResponse
    ) -> None:
        payload = json.dumps(response.body, default=str).encode("utf-8") + b"\n"
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Server", "switchhook-admin"),
            *response.headers,
        ]
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
        writer.write(conn.send(h11.Data(data=payload)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
