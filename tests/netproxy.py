"""A real TCP proxy between the charge point and the CSMS that can misbehave like a network.

`blackhole()` stops forwarding without closing anything: exactly what a dropped Wi-Fi or a
half-open TCP connection looks like from both ends. `refuse_next` answers new connections with
an HTTP error instead of a WebSocket handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refuse_next = 0
        self.connections = 0
        self._holes: list[asyncio.Event] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await self._server.wait_closed()

    def blackhole(self) -> None:
        """Silently drop everything on the connections open now."""
        for hole in self._holes:
            hole.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        if self.refuse_next > 0:
            self.refuse_next -= 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.append(up_writer)
        hole = asyncio.Event()
        self._holes.append(hole)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, hole)),
            asyncio.create_task(self._pump(up_reader, writer, hole)),
        ]
        self._tasks.update(pumps)
        with contextlib.suppress(Exception):
            await asyncio.gather(*pumps)
        for w in (writer, up_writer):
            w.close()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hole: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if hole.is_set():
                continue  # swallowed: no RST, no FIN, nothing
            writer.write(data)
            await writer.drain()
