"""The benchmarks' CSMS: a lean OCPP-J 1.6 and 2.0.1 central system in its own process.

It answers every CALL of the charge point with a minimal valid CALLRESULT, reports the arrival
time of the actions it is told to watch, and on command sends CALLs of its own: a serial burst of
GetConfiguration, or an open-loop flood at a fixed rate whose answer latencies it measures from
the moment each call was due (so a charge point that falls behind cannot hide it by slowing the
sender down). It is deliberately not the built-in `hilsim.csms`: that one checks every frame
against the official schemas, which is right for tests but would make the load generator, not
the charge point, the bottleneck of a flood.

Protocol: JSON lines. Commands on stdin, events on stdout::

    {"event": "listening", "port": 41234}
    {"event": "connected", "cp": "BENCH-CP"}
    {"event": "call", "cp": "BENCH-CP", "action": "StatusNotification", "t": <ns>, "payload": {...}}
    {"cmd": "getconf", "cp": "BENCH-CP", "n": 1000, "id": 1}   -> {"event": "getconf-done", ...}
    {"cmd": "getvars", ...}: the same with 2.0.1 GetVariables   -> {"event": "getconf-done", ...}
    {"cmd": "call", "cp": ..., "action": ..., "payload": {...}, "id": 2}   -> {"event": "result"}
    {"cmd": "flood", "cp": ..., "rate": 200, "seconds": 5, "id": 3}   -> {"event": "flood-done"}
    {"cmd": "stop-flood", "id": 3}

Run: ``python -m bench.peer [--port 0] [--report BootNotification,StatusNotification]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench.harness import leave_the_charge_points_core, percentile

OCPP16 = Subprotocol("ocpp1.6")
OCPP201 = Subprotocol("ocpp2.0.1")
GETCONF = '[2,"{}","GetConfiguration",{{}}]'
#: GetVariables of four variables a bench asks a 2.0.1 charge point for, as GetConfiguration is
#: to a 1.6 one (a CSMS reading the configuration it cares about)
GETVARS = (
    '[2,"{}","GetVariables",{{"getVariableData":['
    + ",".join(
        f'{{{{"component":{{{{"name":"{component}"}}}},"variable":{{{{"name":"{variable}"}}}}}}}}'
        for component, variable in (
            ("OCPPCommCtrlr", "HeartbeatInterval"),
            ("AuthCtrlr", "Enabled"),
            ("SampledDataCtrlr", "TxUpdatedInterval"),
            ("TxCtrlr", "EVConnectionTimeOut"),
        )
    )
    + "]}}]"
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


Waiter = Callable[[int, str], None]


@dataclass
class Link:
    """One connected charge point."""

    cp: str
    ws: ServerConnection
    version: str = "1.6"  # the subprotocol's OCPP version
    pending: dict[str, Waiter] = field(default_factory=dict)
    counter: int = 0

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


class Peer:
    def __init__(self, report: set[str]) -> None:
        self.report = report
        self.links: dict[str, Link] = {}
        self.connected = asyncio.Condition()
        self.transaction_id = 0
        self.floods: dict[Any, asyncio.Event] = {}  # id -> set to stop sending
        self.tasks: set[asyncio.Task[None]] = set()

    # -- answering the charge point ------------------------------------------------------------

    def answer(self, action: str, payload: dict[str, Any], version: str) -> dict[str, Any]:
        if version == "2.0.1":
            if action == "Authorize":
                return {"idTokenInfo": {"status": "Accepted"}}
            if action == "TransactionEvent" and "idToken" in payload:
                return {"idTokenInfo": {"status": "Accepted"}}
            if action == "DataTransfer":
                return {"status": "Accepted"}
            if action not in ("BootNotification", "Heartbeat"):
                return {}
        if action == "BootNotification":
            # A long interval: no Heartbeat falls into a measurement window.
            return {"status": "Accepted", "currentTime": _now(), "interval": 3600}
        if action == "Heartbeat":
            return {"currentTime": _now()}
        if action == "Authorize":
            return {"idTagInfo": {"status": "Accepted"}}
        if action == "StartTransaction":
            self.transaction_id += 1
            return {"transactionId": self.transaction_id, "idTagInfo": {"status": "Accepted"}}
        if action == "StopTransaction":
            return {"idTagInfo": {"status": "Accepted"}} if "idTag" in payload else {}
        if action == "DataTransfer":
            return {"status": "Accepted"}
        return {}  # StatusNotification, MeterValues, the *StatusNotifications

    async def serve_link(self, ws: ServerConnection) -> None:
        cp = ws.request.path.rstrip("/").rsplit("/", 1)[-1] if ws.request else "?"
        link = Link(cp, ws, "2.0.1" if ws.subprotocol == OCPP201 else "1.6")
        async with self.connected:
            self.links[cp] = link
            self.connected.notify_all()
        emit({"event": "connected", "cp": cp, "t": time.monotonic_ns()})
        try:
            async for text in ws:
                t = time.monotonic_ns()
                if not isinstance(text, str):
                    continue
                if text.startswith("[3,") or text.startswith("[4,"):
                    end = text.find('"', 4)
                    waiter = link.pending.pop(text[4:end], None)
                    if waiter is not None:
                        waiter(t, text)
                    continue
                msg = json.loads(text)
                if msg[0] != 2:
                    continue
                action, payload = msg[2], msg[3]
                if action in self.report:
                    emit({"event": "call", "cp": cp, "action": action, "t": t, "payload": payload})
                answer = self.answer(action, payload, link.version)
                reply = json.dumps([3, msg[1], answer], separators=(",", ":"))
                await ws.send(reply)
        except ConnectionClosed:
            pass
        finally:
            if self.links.get(cp) is link:
                del self.links[cp]
            emit({"event": "disconnected", "cp": cp})

    # -- calling the charge point --------------------------------------------------------------

    async def link(self, cp: str) -> Link:
        async with asyncio.timeout(30), self.connected:
            while cp not in self.links:
                await self.connected.wait()
        return self.links[cp]

    async def call(self, link: Link, frame: str, uid: str) -> tuple[int, str]:
        done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        def arrived(t: int, text: str) -> None:
            if not done.done():
                done.set_result((t, text))

        link.pending[uid] = arrived
        await link.ws.send(frame)
        return await asyncio.wait_for(done, 30)

    async def getconf(self, command: dict[str, Any]) -> None:
        """``n`` GetConfiguration (``getvars``: GetVariables) one after the other."""
        link = await self.link(command["cp"])
        template = GETVARS if command.get("cmd") == "getvars" else GETCONF
        errors = 0
        started = time.monotonic_ns()
        for _ in range(int(command["n"])):
            uid = link.next_id("g")
            _, text = await self.call(link, template.format(uid), uid)
            errors += text.startswith("[4,")
        elapsed = (time.monotonic_ns() - started) / 1e9
        done = {"event": "getconf-done", "id": command.get("id"), "seconds": elapsed}
        emit({**done, "errors": errors})

    async def call_command(self, command: dict[str, Any]) -> None:
        link = await self.link(command["cp"])
        uid = link.next_id("c")
        frame = json.dumps([2, uid, command["action"], command.get("payload", {})])
        _, text = await self.call(link, frame, uid)
        emit({"event": "result", "id": command.get("id"), "frame": json.loads(text)})

    async def flood(self, command: dict[str, Any]) -> None:
        """Open-loop GetConfiguration at ``rate`` per second for ``seconds``, then drain."""
        link = await self.link(command["cp"])
        rate, seconds = float(command["rate"]), float(command["seconds"])
        drain = float(command.get("drain", 2.0))
        step = 1e9 / rate
        latencies: list[float] = []
        outstanding: set[str] = set()
        errors = 0
        lags: list[float] = []  # how far this sender itself fell behind its schedule, in ms
        sent = 0
        all_answered = asyncio.Event()
        stop = self.floods.setdefault(command.get("id"), asyncio.Event())

        def waiter(uid: str, due: float) -> Waiter:
            def arrived(t: int, text: str) -> None:
                nonlocal errors
                outstanding.discard(uid)
                if text.startswith("[4,"):
                    errors += 1
                latencies.append((t - due) / 1e6)
                if not outstanding:
                    all_answered.set()

            return arrived

        started = time.monotonic_ns()
        end = started + seconds * 1e9
        try:
            while True:
                now = time.monotonic_ns()
                if now >= end or stop.is_set():
                    break
                due = started + sent * step
                while due <= now and due < end:
                    uid = link.next_id("f")
                    outstanding.add(uid)
                    all_answered.clear()
                    link.pending[uid] = waiter(uid, due)
                    await link.ws.send(GETCONF.format(uid))
                    lags.append((time.monotonic_ns() - due) / 1e6)
                    sent += 1
                    due = started + sent * step
                await asyncio.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
            if outstanding:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(all_answered.wait(), drain)
        except (asyncio.CancelledError, ConnectionClosed):
            pass
        finally:
            self.floods.pop(command.get("id"), None)
            for uid in outstanding:
                link.pending.pop(uid, None)
            took = (time.monotonic_ns() - started) / 1e9
            emit(
                {
                    "event": "flood-done",
                    "id": command.get("id"),
                    "rate": rate,
                    "sent": sent,
                    "answered": len(latencies),
                    "errors": errors,
                    "seconds": took,
                    "p50_ms": percentile(latencies, 50),
                    "p99_ms": percentile(latencies, 99),
                    "max_ms": max(latencies, default=float("nan")),
                    "sender_lag_p99_ms": percentile(lags, 99),
                }
            )

    # -- commands --------------------------------------------------------------------------

    def command(self, command: dict[str, Any]) -> None:
        cmd = command.get("cmd")
        loop = asyncio.get_running_loop()
        if cmd in ("getconf", "getvars"):
            task = loop.create_task(self.getconf(command))
        elif cmd == "call":
            task = loop.create_task(self.call_command(command))
        elif cmd == "flood":
            self.floods[command.get("id")] = asyncio.Event()
            task = loop.create_task(self.flood(command))
        elif cmd == "stop-flood":
            stop = self.floods.get(command.get("id"))
            if stop is not None:
                stop.set()  # stops sending; what was sent is still waited for
            return
        else:
            emit({"event": "error", "text": f"unknown command {cmd!r}"})
            return
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def main(port: int, report: set[str]) -> None:
    leave_the_charge_points_core()
    peer = Peer(report)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def commands() -> None:
        while line := await reader.readline():
            peer.command(json.loads(line))
        stop.set()

    async with serve(
        peer.serve_link,
        "127.0.0.1",
        port,
        subprotocols=[OCPP16, OCPP201],
        compression=None,
        ping_interval=None,
        max_size=2**20,
        max_queue=None,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        emit({"event": "listening", "port": bound})
        task = loop.create_task(commands())
        await stop.wait()
        task.cancel()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.peer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--report", default="BootNotification,StatusNotification")
    args = parser.parse_args()
    asyncio.run(main(args.port, {a for a in args.report.split(",") if a}))
