"""The baseline: a charge point that is nothing but `websockets` and `json`.

It sends and answers exactly the frames hilsim does (the GetConfiguration answer is hilsim's own,
handed over by the benchmark), with no validation, no queue, no state machine and no storage,
so the difference to hilsim is what hilsim itself costs. It deliberately imports nothing of
hilsim: its start-up time and memory are part of the baseline.

Modes:

``rt``       round trips on command (JSON lines on stdin, events on stdout, as `bench.peer`):
             ``heartbeat``/``metervalues`` N round trips from one coroutine, ``serve`` answers
             incoming CALLs until ``unserve``, ``cpu`` reports ``time.process_time()``.
``service``  a long-running charge point: answers CALLs, meters connectors 1 and 2 every
             ``--meter-interval`` seconds, and on each ``press`` command (stdin) does what a
             button does at its simplest: an edge on a worker thread, handed to the loop,
             sends a StatusNotification (Preparing and Available in turn). Ends at end of
             input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.frames import meter_value

DUMPS = json.JSONEncoder(separators=(",", ":")).encode


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def utc_iso() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def open_ws(url: str) -> ClientConnection:
    return await connect(
        url,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        ping_interval=None,
        ping_timeout=None,
        max_size=2**20,
        compression=None,
    )


async def boot(ws: ClientConnection) -> None:
    uid = str(uuid.uuid4())
    payload = {"chargePointVendor": "hilsim", "chargePointModel": "bench"}
    await ws.send(DUMPS([2, uid, "BootNotification", payload]))
    reply = json.loads(await ws.recv())
    assert reply[1] == uid and reply[2]["status"] == "Accepted", reply


async def stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


# -- rt -------------------------------------------------------------------------------------


async def round_trips(url: str) -> None:
    ws = await open_ws(url)
    await boot(ws)
    answer: dict[str, Any] = {}
    serving: asyncio.Task[None] | None = None

    async def serve() -> None:
        while True:
            msg = json.loads(await ws.recv())
            if msg[0] == 2:
                await ws.send(DUMPS([3, msg[1], answer if msg[2] == "GetConfiguration" else {}]))

    emit({"event": "ready"})
    reader = await stdin_lines()
    while line := await reader.readline():
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "heartbeat":
            for _ in range(int(command["n"])):
                uid = str(uuid.uuid4())
                await ws.send(DUMPS([2, uid, "Heartbeat", {}]))
                reply = json.loads(await ws.recv())
                assert reply[1] == uid
        elif cmd == "metervalues":
            for i in range(int(command["n"])):
                uid = str(uuid.uuid4())
                payload = {
                    "connectorId": 1,
                    "transactionId": 1,
                    "meterValue": meter_value(utc_iso(), 1000.0 + i, 11000.0, 47.8, 42.5),
                }
                await ws.send(DUMPS([2, uid, "MeterValues", payload]))
                reply = json.loads(await ws.recv())
                assert reply[1] == uid
        elif cmd == "answer":
            answer = command["payload"]
        elif cmd == "serve":
            serving = asyncio.get_running_loop().create_task(serve())
        elif cmd == "unserve" and serving is not None:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        elif cmd == "cpu":
            pass
        emit({"event": "done", "cmd": cmd, "cpu": time.process_time()})
    await ws.close()


# -- service ----------------------------------------------------------------------------------


async def service(url: str, meter_interval: float, answer: dict[str, Any]) -> None:
    ws = await open_ws(url)
    await boot(ws)
    loop = asyncio.get_running_loop()
    energy = {1: 0.0, 2: 0.0}
    plugged = False

    async def read() -> None:
        async for text in ws:
            msg = json.loads(text)
            if msg[0] == 2:
                await ws.send(DUMPS([3, msg[1], answer if msg[2] == "GetConfiguration" else {}]))

    async def status(connector: int, state: str) -> None:
        payload = {
            "connectorId": connector,
            "errorCode": "NoError",
            "status": state,
            "timestamp": utc_iso(),
        }
        await ws.send(DUMPS([2, str(uuid.uuid4()), "StatusNotification", payload]))

    def edge() -> None:
        """On the loop, as a button edge arrives from a GPIO thread: tell the CSMS."""
        nonlocal plugged
        plugged = not plugged
        task = loop.create_task(status(1, "Preparing" if plugged else "Available"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def press() -> int:
        """On a worker thread, like a GPIO edge: the time of the edge, then hand it to the loop."""
        started = time.monotonic_ns()
        loop.call_soon_threadsafe(edge)
        return started

    async def meter() -> None:
        due = time.monotonic()
        while True:
            due += meter_interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            for connector in (1, 2):
                energy[connector] += 11000.0 * meter_interval / 3600
                payload = {
                    "connectorId": connector,
                    "transactionId": connector,
                    "meterValue": meter_value(utc_iso(), energy[connector], 11000.0, 47.8, 42.5),
                }
                await ws.send(DUMPS([2, str(uuid.uuid4()), "MeterValues", payload]))

    tasks: set[asyncio.Task[None]] = {loop.create_task(read())}
    if meter_interval > 0:
        tasks.add(loop.create_task(meter()))
    emit({"event": "ready"})
    reader = await stdin_lines()
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "press":
            emit({"event": "pressed", "t": await asyncio.to_thread(press)})
    for task in list(tasks):
        task.cancel()
    await ws.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("mode", choices=["rt", "service"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--meter-interval", type=float, default=0.0)
    parser.add_argument("--answer", default="", help="file with the GetConfiguration answer")
    args = parser.parse_args()
    if args.mode == "rt":
        asyncio.run(round_trips(args.url))
    else:
        answer = json.loads(Path(args.answer).read_text()) if args.answer else {}
        asyncio.run(service(args.url, args.meter_interval, answer))
