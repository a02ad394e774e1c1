"""Test helper: a small scripted OCPP 2.0.1 CSMS over a real websockets server, and the strict
check of every 2.0.1 frame against the official schemas the `ocpp` library ships.

The peer answers the charge point's CALLs with canned valid payloads (``answers`` overrides them
per action), sends CALLs of its own (`ScriptedCsms201.call`, or raw frames with `send_raw`), and
records every frame both ways; `strict_violations` checks each CALL and CALLRESULT of either side
against its schema with ``additionalProperties: false`` on every object (as tests/strict_schemas.py
does for 1.6), draft-06 as the schemas declare, and RFC 3339 date-times.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from jsonschema import Draft6Validator, FormatChecker
from websockets.asyncio.server import ServerConnection, serve

CALL, CALLRESULT, CALLERROR = 2, 3, 4
SUBPROTOCOL = "ocpp2.0.1"

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_FORMATS = FormatChecker()


@_FORMATS.checks("date-time")
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_RFC3339.match(value))


def _schema_dir() -> Path:
    spec = find_spec("ocpp")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "v201" / "schemas"


def _closed(schema: Any) -> Any:
    """Every object of the schema closed to properties it does not list (but customData)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    # CustomDataType is open on purpose: vendors extend it with their own properties.
    if "properties" in out and schema.get("javaType") != "CustomData":
        out.setdefault("additionalProperties", False)
    return out


@cache
def _validator(name: str) -> Draft6Validator:
    schema = json.loads((_schema_dir() / f"{name}.json").read_text("utf-8-sig"))
    return Draft6Validator(_closed(schema), format_checker=_FORMATS)


def strict_violations(action: str, payload: Any, *, response: bool) -> list[str]:
    """Every violation of the official 2.0.1 schema of ``action``'s request (or response)."""
    name = f"{action}{'Response' if response else 'Request'}"
    if not (_schema_dir() / f"{name}.json").is_file():
        return [f"{name}: no such OCPP 2.0.1 message"]
    return [
        f"{name} {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(name).iter_errors(payload)
    ]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def default_answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    if action == "BootNotification":
        return {"currentTime": now(), "interval": 300, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": now()}
    if action == "Authorize":
        return {"idTokenInfo": {"status": "Accepted"}}
    if action == "DataTransfer":
        return {"status": "UnknownVendorId"}
    return {}


class ScriptedCsms201:
    """One charge point's OCPP 2.0.1 CSMS, on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        #: every frame as (sent by the CSMS?, parsed frame), in order
        self.frames: list[tuple[bool, Any]] = []
        #: action -> a function of the payload giving the answer (or a list used up in order)
        self.answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self.queued: dict[str, list[dict[str, Any]]] = {}
        self.connected = asyncio.Event()
        self.ws: ServerConnection | None = None
        self.paths: list[str] = []
        self.subprotocols: list[str | None] = []
        self._changed = asyncio.Condition()
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._ids = itertools.count(1)
        self._server: Any = None
        self.url = ""
        #: while set, every handshake is answered with this HTTP status instead (401, 403, 503)
        self.refuse_status: int | None = None
        #: the HTTP status of every handshake refused so far, in order
        self.refused: list[int] = []

    async def __aenter__(self) -> ScriptedCsms201:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            0,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            process_request=self._refuse,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _refuse(self, connection: ServerConnection, request: Any) -> Any:
        status = self.refuse_status
        if status is None:
            return None
        async with self._changed:
            self.refused.append(status)
            self._changed.notify_all()
        return connection.respond(status, "refused by the test\n")

    async def wait_for_refusals(self, count: int, timeout: float = 5) -> None:
        """Until ``count`` handshakes have been refused in all."""
        async with asyncio.timeout(timeout), self._changed:
            while len(self.refused) < count:
                await self._changed.wait()

    async def _serve(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.paths.append(ws.request.path if ws.request else "")
        self.subprotocols.append(ws.subprotocol)
        self.connected.set()
        try:
            async for raw in ws:
                msg = json.loads(raw)
                await self._record(False, msg)
                if msg[0] == CALL:
                    _, uid, action, payload = msg
                    queue = self.queued.get(action)
                    if queue:
                        answer = queue.pop(0)
                    elif (answering := self.answers.get(action)) is not None:
                        answer = answering(payload)
                    else:
                        answer = default_answer(action, payload)
                    await self._send([CALLRESULT, uid, answer])
                elif (waiter := self._pending.pop(msg[1], None)) is not None:
                    waiter.set_result(msg)
        finally:
            self.connected.clear()

    async def _record(self, sent: bool, msg: Any) -> None:
        async with self._changed:
            self.frames.append((sent, msg))
            self._changed.notify_all()

    async def _send(self, msg: list[Any]) -> None:
        assert self.ws is not None
        await self._record(True, msg)
        await self.ws.send(json.dumps(msg))

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send(text)

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 5) -> list[Any]:
        """Send a CALL; the whole answer frame (CALLRESULT or CALLERROR)."""
        uid = f"csms-{next(self._ids)}"
        waiter: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[uid] = waiter
        await self._send([CALL, uid, action, payload])
        async with asyncio.timeout(timeout):
            return await waiter

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL that must be answered with a CALLRESULT; its payload."""
        answer = await self.call(action, payload)
        assert answer[0] == CALLRESULT, answer
        return answer[2]  # type: ignore[no-any-return]

    async def answer_to(self, uid: str, timeout: float = 5) -> list[Any]:
        """The charge point's answer to a raw CALL with unique id ``uid``."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for sent, msg in self.frames:
                    if not sent and msg[0] in (CALLRESULT, CALLERROR) and msg[1] == uid:
                        return msg  # type: ignore[no-any-return]
                await self._changed.wait()

    def mark(self) -> int:
        return len(self.frames)

    def calls(self, action: str, since: int = 0) -> list[dict[str, Any]]:
        """The payloads of the charge point's ``action`` CALLs so far."""
        return [
            msg[3]
            for sent, msg in self.frames[since:]
            if not sent and msg[0] == CALL and msg[2] == action
        ]

    async def wait_for(
        self,
        action: str,
        where: Callable[[dict[str, Any]], bool] = lambda p: True,
        *,
        since: int = 0,
        count: int = 1,
        timeout: float = 5,
    ) -> list[dict[str, Any]]:
        """The first ``count`` of the charge point's ``action`` CALLs (after frame ``since``)
        that match ``where``, waiting for them."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                found = [p for p in self.calls(action, since) if where(p)]
                if len(found) >= count:
                    return found[:count]
                await self._changed.wait()

    def violations(self) -> list[str]:
        """Every schema violation of every CALL and CALLRESULT, both ways."""
        actions: dict[str, str] = {}
        found: list[str] = []
        for _sent, msg in self.frames:
            if msg[0] == CALL and len(msg) == 4 and isinstance(msg[2], str):
                actions[msg[1]] = msg[2]
                found += strict_violations(msg[2], msg[3], response=False)
            elif msg[0] == CALLRESULT and msg[1] in actions:
                found += strict_violations(actions.pop(msg[1]), msg[2], response=True)
        return found
