"""Frames on the wire: the one place both the charge point and the built-in CSMS observe traffic.

The `ocpp` library only ever calls ``recv()`` and ``send()`` on its connection, so wrapping the
websocket is enough to see every frame in both directions, exactly as sent, without patching the
library. Listeners run synchronously in the loop and must not block: they append to a log, put
into a queue, or print a line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hilsim.security import RedactingLogger, redact

CALL, CALLRESULT, CALLERROR = 2, 3, 4


@dataclass(frozen=True, slots=True)
class Frame:
    """One OCPP-J frame as it crossed the socket."""

    sent: bool  # True: this side sent it; False: this side received it
    text: str
    at: float = field(default_factory=time.time)  # wall clock, for traces only

    def parsed(self) -> list[Any] | None:
        """The decoded frame, or None when it is not a JSON array (a malformed frame)."""
        try:
            msg = json.loads(self.text)
        except ValueError:
            return None
        return msg if isinstance(msg, list) else None


FrameListener = Callable[[Frame], None]


class _Socket(Protocol):
    async def recv(self) -> str | bytes: ...
    async def send(self, message: str) -> None: ...


class TracedConnection:
    """A websocket wrapper that reports every frame to its listeners."""

    def __init__(self, websocket: _Socket, listeners: list[FrameListener] | None = None) -> None:
        self.websocket = websocket
        self.listeners: list[FrameListener] = list(listeners or [])

    async def recv(self) -> str:
        raw = await self.websocket.recv()
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        self._emit(Frame(sent=False, text=text))
        return text

    async def send(self, message: str) -> None:
        await self.websocket.send(message)
        self._emit(Frame(sent=True, text=message))

    def _emit(self, frame: Frame) -> None:
        for listener in self.listeners:
            listener(frame)


class ActionNamer:
    """Remembers the action of each outstanding CALL so that its result can be named in a trace.

    A CALLRESULT carries only the unique id; a person reading a trace wants to see
    "StartTransaction.conf", not a UUID.
    """

    def __init__(self, limit: int = 256) -> None:
        self._pending: dict[str, str] = {}
        self._limit = limit

    def name(self, msg: list[Any]) -> str:
        kind = msg[0] if msg else None
        uid = str(msg[1]) if len(msg) > 1 else "?"
        if kind == CALL and len(msg) > 2:
            if len(self._pending) >= self._limit:
                self._pending.pop(next(iter(self._pending)))
            self._pending[uid] = str(msg[2])
            return str(msg[2])
        action = self._pending.pop(uid, "?")
        if kind == CALLRESULT:
            return f"{action}.conf"
        if kind == CALLERROR:
            return f"{action}.error"
        return "?"


def format_frame(frame: Frame, *, namer: ActionNamer, local: str, remote: str) -> str:
    """One readable, timestamped trace line: time, direction, action, payload."""
    stamp = time.strftime("%H:%M:%S", time.localtime(frame.at)) + f".{int(frame.at % 1 * 1000):03d}"
    arrow = f"{local} → {remote}" if frame.sent else f"{local} ← {remote}"
    msg = frame.parsed()
    if not msg:
        return f"{stamp}  {arrow}  (malformed) {frame.text[:200]}"
    action = namer.name(msg)
    body = msg[-1] if msg else None
    if msg[0] == CALLERROR and len(msg) >= 4:
        body = {"errorCode": msg[2], "errorDescription": msg[3]}
    payload = redact(json.dumps(body, separators=(",", ":"), ensure_ascii=False))
    return f"{stamp}  {arrow}  {action:<28} {payload}"


class QuietLibraryLog(RedactingLogger):
    """The `ocpp` library logs every frame at INFO; hilsim traces frames itself, so DEBUG.

    Redacting, as its frames may set the AuthorizationKey. It lowers INFO in ``log`` itself, not
    only in ``info()``: websockets wraps the logger it is given in an adapter of its own, which
    calls ``log(INFO, ...)`` (its "HTTP response sent", "connection closed" for each request).
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)
