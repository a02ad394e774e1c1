"""Test helper: a minimal OCPP 2.0.1 CSMS on a real WebSocket (subprotocol ocpp2.0.1).

It answers every CALL of the charge point with a schema-valid CALLRESULT, sends CALLs of its own
as raw frames (so a test sees exactly what travels), and records every frame both ways, for
`tests.schemas201_dm.frame_violations`. Waiting is on messages with a timeout, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import websockets


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _answer(action: str) -> dict[str, Any]:
    if action == "BootNotification":
        return {"currentTime": _now(), "interval": 300, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": _now()}
    if action == "Authorize":
        return {"idTokenInfo": {"status": "Accepted"}}
    if action == "DataTransfer":
        return {"status": "Accepted"}
    return {}


class Peer201:
    """One CSMS, one charge point at a time."""

    def __init__(self) -> None:
        self.frames: list[list[Any]] = []  # every frame, parsed, both ways
        self.calls: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.url = ""
        self._socket: Any = None
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._server: Any = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Peer201]:
        self._server = await websockets.serve(
            self._serve, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ocpp"
        try:
            yield self
        finally:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, socket: Any, path: str | None = None) -> None:
        self._socket = socket
        self.connected.set()
        try:
            async for raw in socket:
                msg = json.loads(raw)
                self.frames.append(msg)
                if msg[0] == 2:
                    answer = [3, msg[1], _answer(msg[2])]
                    await self._send(answer)
                    await self.calls.put((msg[2], msg[3]))
                elif msg[1] in self._pending:
                    self._pending.pop(msg[1]).set_result(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._socket is socket:
                self._socket = None
                self.connected.clear()

    async def _send(self, msg: list[Any]) -> None:
        self.frames.append(msg)
        await self._socket.send(json.dumps(msg))

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 5) -> list[Any]:
        """Send a CALL; the CALLRESULT or CALLERROR frame."""
        unique_id = str(uuid.uuid4())
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = future
        await self._send([2, unique_id, action, payload])
        return await asyncio.wait_for(future, timeout)

    async def wait_for(
        self,
        action: str,
        match: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = 5,
    ) -> dict[str, Any]:
        """The next CALL of ``action`` (matching) the charge point sends; others are skipped."""
        async with asyncio.timeout(timeout):
            while True:
                got, payload = await self.calls.get()
                if got == action and match(payload):
                    return payload
