"""Panel latency: a mock pin edge to the StatusNotification arriving at the built-in CSMS.

The charge point (`hilsim.service.Service`, the real one, with its panel on gpiozero mock pins)
and the built-in CSMS run in this process, because a mock pin can only be driven from the process
that owns it. Each press is an edge driven from a worker thread, as a real edge arrives on a
gpiozero thread; the clock starts just before the edge and stops when the CSMS's websocket hands
over the StatusNotification frame the press caused. Measured in the same run, on the same loop:

- the same event through `hilsim ctl`'s control socket (what `hilsim ctl plug 1` sends),
- the same event through the `hilsim ctl plug 1` command itself (a new Python process each time),
- a bare websocket round trip of a StatusNotification-sized frame (`websockets` only): the floor.

Debounce is 0 here: gpiozero's debounce (and the mock pins') reports the first edge at once and
only drops the bounce after it, so it adds nothing to a press's latency, but it would hold back a
second press within the window, which a benchmark pressing back to back would trip over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from hilsim.config import load_settings
from hilsim.control import request
from hilsim.csms import CentralSystem
from hilsim.ocpp.transport import Backoff
from hilsim.ocpp.wire import Frame
from hilsim.panel import mock_factory
from hilsim.service import Service

from bench.common import Row

CP_ID = "BENCH-PANEL"
PLUG_PIN = 17
TIMEOUT = 10.0
P99_GOAL_MS = 5.0  # bench_flood: a button's StatusNotification, p99

CONFIG = """
[charge_point]
id = "{cp_id}"
csms_url = "{url}"
[[connector]]
id = 1
[connector.gpio]
plug = {pin}
rgb_led = {{ red = 5, green = 6, blue = 13 }}
relay = 26
[storage]
database = "{directory}/hilsim.db"
[control]
socket = "{directory}/ctl.sock"
[gpio]
backend = "mock"
debounce_ms = 0
connected_led = 19
"""

STATUS_FRAME = json.dumps(
    [
        2,
        "b7c3e1a0-6f4d-4c55-9d1e-2f6a8b9c0d1e",
        "StatusNotification",
        {
            "connectorId": 1,
            "errorCode": "NoError",
            "status": "Preparing",
            "timestamp": "2026-01-01T00:00:00.000Z",
        },
    ],
    separators=(",", ":"),
)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: a latency that was actually observed."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


class Arrivals:
    """Stamps each connector-1 StatusNotification as the CSMS's websocket hands it over."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[float] | None = None

    def on_frame(self, charge_point_id: str, frame: Frame) -> None:
        if frame.sent or '"StatusNotification"' not in frame.text:
            return
        at = time.perf_counter()
        msg = frame.parsed()
        if msg and msg[3].get("connectorId") == 1 and self.waiter and not self.waiter.done():
            self.waiter.set_result(at)

    def expect(self) -> asyncio.Future[float]:
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter


async def _latencies(
    count: int, arrivals: Arrivals, cause: Callable[[int], Awaitable[float]]
) -> list[float]:
    """`cause(n)` makes the n-th event happen and returns when it started (perf_counter)."""
    samples = []
    for n in range(count):
        arrived = arrivals.expect()
        started = await cause(n)
        samples.append((await asyncio.wait_for(arrived, TIMEOUT) - started) * 1000)
    return samples


async def _bare_round_trips(count: int) -> list[float]:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    samples = []
    async with (
        serve(echo, "127.0.0.1", 0, compression=None) as server,
        connect(
            f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}",
            compression=None,
            ping_interval=None,
        ) as ws,
    ):
        for _ in range(count):
            started = time.perf_counter()
            await ws.send(STATUS_FRAME)
            await ws.recv()
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def _measure(presses: int, commands: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="hs-bench-", dir="/tmp") as tmp:
        arrivals = Arrivals()
        async with CentralSystem("127.0.0.1", 0, on_frame=arrivals.on_frame) as csms:
            config = Path(tmp) / "hilsim.toml"
            config.write_text(CONFIG.format(cp_id=CP_ID, url=csms.url, pin=PLUG_PIN, directory=tmp))
            settings = load_settings(config)
            factory = mock_factory()
            service = Service(settings, backoff=Backoff(0.05, 2.0, 0.2), pin_factory=factory)
            runner = asyncio.create_task(service.run())
            try:
                session = await csms.wait_for_charge_point(CP_ID, timeout=TIMEOUT)
                await session.wait_for(
                    "StatusNotification", lambda p: p["connectorId"] == 1, timeout=TIMEOUT
                )
                pin = factory.pin(PLUG_PIN)
                loop = asyncio.get_running_loop()

                def press() -> float:
                    started = time.perf_counter()
                    pin.drive_low()  # pressed (pull-up, active low): PlugIn / Unplug in turn
                    pin.drive_high()  # released: no event for a toggle
                    return started

                async def by_pin(n: int) -> float:
                    return await loop.run_in_executor(None, press)

                async def by_socket(n: int) -> float:
                    started = time.perf_counter()
                    cmd = "plug" if n % 2 == 0 else "unplug"
                    answer = await request(settings.control.socket, {"cmd": cmd, "connector": 1})
                    assert answer["ok"], answer
                    return started

                async def by_command(n: int) -> float:
                    started = time.perf_counter()
                    cmd = "plug" if n % 2 == 0 else "unplug"
                    process = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "hilsim",
                        "ctl",
                        "--config",
                        str(config),
                        cmd,
                        "1",
                        stdout=asyncio.subprocess.DEVNULL,
                    )
                    assert await process.wait() == 0
                    return started

                pin_ms = await _latencies(presses, arrivals, by_pin)
                socket_ms = await _latencies(presses, arrivals, by_socket)
                command_ms = await _latencies(commands, arrivals, by_command)
            finally:
                service.stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(runner, TIMEOUT)
        bare_ms = await _bare_round_trips(presses)
    return {"pin": pin_ms, "socket": socket_ms, "command": command_ms, "bare": bare_ms}


def run(quick: bool = False) -> list[Row]:
    presses = 100 if quick else 1000
    commands = 3 if quick else 30
    ms = asyncio.run(_measure(presses, commands))
    rows: list[Row] = []
    bare = "bare websocket round trip"
    for p in (50, 99):
        pin, sock = percentile(ms["pin"], p), percentile(ms["socket"], p)
        # The typical press is no slower than `hilsim ctl`; the two p99s are near-equal tails
        # of near-equal paths, so their order is chance: the tail has bench_flood's bound.
        goal, met = (
            ("<= hilsim ctl (control socket)", pin <= sock)
            if p == 50
            else (f"< {P99_GOAL_MS:g} ms", pin < P99_GOAL_MS)
        )
        rows.append(
            Row(
                f"mock pin edge -> StatusNotification at the CSMS, p{p} ({presses} presses)",
                round(pin, 3),
                "ms",
                round(percentile(ms["bare"], p), 3),
                bare,
                goal=goal,
                met=met,
            )
        )
    for p in (50, 99):
        rows.append(
            Row(
                f"hilsim ctl over the control socket -> StatusNotification, p{p}",
                round(percentile(ms["socket"], p), 3),
                "ms",
                round(percentile(ms["bare"], p), 3),
                bare,
            )
        )
    for p in (50, 99):
        rows.append(
            Row(
                f"`hilsim ctl plug 1` (a new process) -> StatusNotification, p{p} "
                f"({commands} runs)",
                round(percentile(ms["command"], p), 3),
                "ms",
                round(percentile(ms["socket"], p), 3),
                "hilsim ctl (control socket)",
            )
        )
    for p in (50, 99):
        rows.append(Row(f"{bare}, p{p}", round(percentile(ms["bare"], p), 3), "ms"))
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        ratio = f" ({row.ratio:.1f}x {row.baseline_name})" if row.ratio is not None else ""
        print(f"{row.figure}: {row.value:g} {row.unit}{ratio}")
