"""Five demo pages open: does the charge point keep the timings it keeps with none?

The real ``hilsim run`` process with ``[web]`` on, three connectors: two charging with
MeterValues every second (as in bench_charging), the third plugged and unplugged over and over
through the control socket (what ``hilsim ctl plug 3`` sends). The pages are real WebSocket
clients in a process of their own (``python -m bench.bench_web --pages URL``) that read
everything the page is pushed. Measured with no page open, then with five, in the same run:

- button to StatusNotification: from the control-socket request to the frame's arrival at the
  CSMS (`bench.peer`, its own process; both stamps on CLOCK_MONOTONIC), p50 and p99, presses
  50 to 100 ms apart (a quick finger; each press is pushed to the pages 20 ms after it, and the
  once-a-second push falls at random moments); the goal is bench_flood's, p99 under 5 ms;
- the share of one core `hilsim run` takes over the window (from /proc); the goal is
  bench_charging's, under 1 %.

Run alone: ``python -m bench --only web``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import sys
import time
from typing import Any

from bench.common import Row
from bench.harness import (
    CP_ID,
    TAG,
    Child,
    cpu_seconds,
    hilsim_run,
    is_status,
    peer,
    peer_url,
    percentile,
    python_command,
    running,
    scratch_dir,
    write_config,
)

PAGES = 5
P99_GOAL_MS = 5.0  # bench_flood: a button's StatusNotification
CPU_GOAL_PERCENT = 1.0  # bench_charging: two connectors charging
NONE = "no page open"


def run(quick: bool = False) -> list[Row]:
    return asyncio.run(_run(quick))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _run(quick: bool) -> list[Row]:
    from hilsim.config import load_settings
    from hilsim.control import request

    window = 5.0 if quick else 30.0
    presses = 30 if quick else 300
    with scratch_dir() as directory:
        csms = peer(directory, report=("StatusNotification",))
        async with running(csms):
            url = await peer_url(csms)
            config = write_config(directory, url, connectors=3)
            port = _free_port()
            config.write_text(
                config.read_text() + f'\n[web]\nlisten = "127.0.0.1:{port}"\npassword = "bench"\n'
            )
            control = load_settings(config).control.socket
            hilsim = hilsim_run(config, directory)
            pages = Child(
                "pages",
                python_command("-m", "bench.bench_web", "--pages", f"ws://127.0.0.1:{port}/ws"),
                directory,
            )
            async with running(hilsim, pages):
                await csms.expect("call", lambda e: is_status(e, CP_ID, 3, "Available"))

                async def ctl(command: dict[str, Any]) -> None:
                    answer = await request(control, command)
                    if not answer.get("ok"):
                        raise RuntimeError(f"ctl {command}: {answer}")

                csms.send(
                    cmd="call",
                    cp=CP_ID,
                    action="ChangeConfiguration",
                    payload={"key": "MeterValueSampleInterval", "value": "1"},
                    id="interval",
                )
                await csms.expect("result", lambda e: e["id"] == "interval")
                for connector in (1, 2):
                    await ctl({"cmd": "plug", "connector": connector})
                    await ctl({"cmd": "tag", "connector": connector, "id_tag": TAG})
                for connector in (1, 2):
                    await csms.expect(
                        "call", lambda e, c=connector: is_status(e, CP_ID, c, "Charging")
                    )

                async def measure() -> tuple[list[float], float, float]:
                    await asyncio.sleep(1.0)  # past the change: into the steady state
                    pages.send(cmd="count")
                    first = (await pages.expect("count"))["messages"]
                    before, started = cpu_seconds(hilsim.pid), time.monotonic()
                    await asyncio.sleep(window)
                    took = time.monotonic() - started
                    share = 100 * (cpu_seconds(hilsim.pid) - before) / took
                    pages.send(cmd="count")
                    pushed = ((await pages.expect("count"))["messages"] - first) / took
                    latencies = []
                    for n in range(presses):
                        # A quick finger, not a machine gun: 10 to 20 presses a second, at
                        # random moments relative to the once-a-second push.
                        await asyncio.sleep(random.uniform(0.05, 0.1))
                        status = "Preparing" if n % 2 == 0 else "Available"
                        pressed = time.monotonic_ns()
                        await ctl({"cmd": "plug" if n % 2 == 0 else "unplug", "connector": 3})
                        arrived = await csms.expect(
                            "call",
                            lambda e, s=status, t=pressed: e["t"] > t and is_status(e, CP_ID, 3, s),
                        )
                        latencies.append((int(arrived["t"]) - pressed) / 1e6)
                    return latencies, share, pushed

                alone_ms, alone_cpu, _ = await measure()
                pages.send(cmd="open", count=PAGES)
                await pages.expect("opened", timeout=15)
                watched_ms, watched_cpu, pushed = await measure()
                pages.send(cmd="close")
                await pages.expect("closed", timeout=15)
    per_page = pushed / PAGES
    rows = []
    for p in (50, 99):
        value = percentile(watched_ms, p)
        rows.append(
            Row(
                f"button (ctl) -> StatusNotification at the CSMS, p{p}, {PAGES} pages open "
                f"({presses} presses)",
                round(value, 3),
                "ms",
                round(percentile(alone_ms, p), 3),
                NONE,
                f"< {P99_GOAL_MS:g} ms" if p == 99 else "",
                value < P99_GOAL_MS if p == 99 else None,
            )
        )
    rows.append(
        Row(
            f"CPU share, 2 connectors charging, MeterValues every 1 s, {PAGES} pages open "
            f"({window:g} s)",
            round(watched_cpu, 3),
            "% of a core",
            round(alone_cpu, 3),
            NONE,
            f"< {CPU_GOAL_PERCENT:g}%",
            watched_cpu < CPU_GOAL_PERCENT,
        )
    )
    rows.append(
        Row(
            "messages pushed to each open page while charging (no button pressed)",
            round(per_page, 2),
            "per second",
        )
    )
    return rows


# -- the pages' process ---------------------------------------------------------------------------


async def _pages(url: str) -> None:
    """Open and close pages on command (stdin JSON lines); read everything they are sent."""
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    origin = Origin(url.replace("ws://", "http://").removesuffix("/ws"))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    open_pages: list[Any] = []
    readers: list[asyncio.Task[None]] = []
    counted = [0]

    async def read(ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                counted[0] += 1

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "open":
            for _ in range(int(command["count"])):
                ws = await connect(url, origin=origin, compression=None, max_size=None)
                json.loads(await ws.recv())  # the hello: the whole state
                open_pages.append(ws)
                readers.append(loop.create_task(read(ws)))
            emit({"event": "opened", "pages": len(open_pages)})
        elif command["cmd"] == "count":
            emit({"event": "count", "messages": counted[0]})
        elif command["cmd"] == "close":
            for ws in open_pages:
                await ws.close()
            await asyncio.gather(*readers, return_exceptions=True)
            emit({"event": "closed", "messages": counted[0]})
            open_pages.clear()
            readers.clear()
    for ws in open_pages:
        await ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", metavar="URL", help="be the pages' process for this URL")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.pages:
        asyncio.run(_pages(args.pages))
        return
    for row in run(quick=args.quick):
        ratio = f" ({row.ratio:.2f}x {row.baseline_name})" if row.ratio is not None else ""
        print(f"{row.figure}: {row.value:g} {row.unit}{ratio} {row.goal} {row.met}")


if __name__ == "__main__":
    main()
