"""CPU per OCPP round trip at the charge point: hilsim against bare `websockets` + `json`.

Three round trips, each counted in the charge point's process only (``time.process_time()``,
user + system, every thread): Heartbeat and MeterValues (four measurands) sent by the charge
point, and GetConfiguration (every key) sent by the CSMS and answered. hilsim goes through
its real path: the CSMS link's send queue, the OCPP client, validation of every payload the
CSMS sends, the traced websocket. The CSMS (`bench.peer`) runs in a third process.

hilsim and the baseline are connected at the same time and measured in alternation, so a
change of CPU clock during the run hits both alike; each figure is the median of the
repetitions.

The hosted charge point: ``python -m bench.bench_ocpp --child ws://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import time
from typing import Any

from bench.common import Row
from bench.harness import (
    BARE,
    BARE_ID,
    CP_ID,
    Child,
    median,
    peer,
    peer_url,
    python_command,
    running,
    scratch_dir,
)

GOAL = 1.5


def run(quick: bool = False) -> list[Row]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    n = 300 if quick else 2000
    repetitions = 3 if quick else 5
    with scratch_dir() as logs:
        csms = peer(logs, report=())
        async with running(csms):
            url = await peer_url(csms)
            hilsim = Child("hilsim", python_command("-m", "bench.bench_ocpp", "--child", url), logs)
            bare_argv = python_command("-m", "bench.bare", "rt", "--url", f"{url}/{BARE_ID}")
            bare = Child("bare", bare_argv, logs)
            async with running(hilsim, bare):
                await hilsim.expect("ready", timeout=30)
                await bare.expect("ready", timeout=30)
                csms.send(cmd="call", cp=CP_ID, action="GetConfiguration", payload={}, id="answer")
                answer = (await csms.expect("result"))["frame"][2]
                await _command(bare, "answer", payload=answer)
                # Warm up: caches, the allocator, the schema validators.
                for child, cp in ((hilsim, CP_ID), (bare, BARE_ID)):
                    await _outgoing(child, "heartbeat", n // 4)
                    await _outgoing(child, "metervalues", n // 4)
                    await _incoming(child, csms, cp, n // 4)
                figures: dict[str, dict[str, list[float]]] = {
                    what: {"hilsim": [], "bare": []}
                    for what in ("heartbeat", "metervalues", "getconf")
                }
                for _ in range(repetitions):
                    for child, cp, side in ((hilsim, CP_ID, "hilsim"), (bare, BARE_ID, "bare")):
                        figures["heartbeat"][side].append(await _outgoing(child, "heartbeat", n))
                        figures["metervalues"][side].append(
                            await _outgoing(child, "metervalues", n)
                        )
                        figures["getconf"][side].append(await _incoming(child, csms, cp, n))
    names = {
        "heartbeat": "CPU per Heartbeat round trip (charge point)",
        "metervalues": "CPU per MeterValues round trip, 4 measurands",
        "getconf": "CPU per incoming GetConfiguration (all keys)",
    }
    rows = []
    for what, sides in figures.items():
        value = median(sides["hilsim"]) * 1e6
        baseline = median(sides["bare"]) * 1e6
        rows.append(
            Row(
                names[what],
                round(value, 1),
                "µs",
                round(baseline, 1),
                BARE,
                f"≤ {GOAL:g}x",
                value <= GOAL * baseline,
            )
        )
    return rows


async def _command(child: Child, cmd: str, **args: Any) -> float:
    child.send(cmd=cmd, **args)
    done = await child.expect("done", lambda e: e["cmd"] == cmd, timeout=120)
    return float(done["cpu"])


async def _outgoing(child: Child, what: str, n: int) -> float:
    """CPU seconds per round trip of ``n`` CALLs sent by the charge point."""
    before = await _command(child, "cpu")
    after = await _command(child, what, n=n)
    return (after - before) / n


async def _incoming(child: Child, csms: Child, cp: str, n: int) -> float:
    """CPU seconds per GetConfiguration the CSMS sends and the charge point answers."""
    before = await _command(child, "serve")
    csms.send(cmd="getconf", cp=cp, n=n, id=cp)
    await csms.expect("getconf-done", lambda e: e["id"] == cp, timeout=120)
    after = await _command(child, "unserve")
    return (after - before) / n


# -- the hosted charge point ----------------------------------------------------------------


async def _child(url: str) -> None:
    """hilsim's service in this process, driven by the same commands as the bare baseline."""
    import json

    from hilsim.clock import utc_iso
    from hilsim.config import load_settings
    from hilsim.ocpp.session import LinkState
    from hilsim.service import Service

    from bench.bare import emit, stdin_lines
    from bench.frames import meter_value
    from bench.harness import write_config

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with scratch_dir() as directory:
        service = Service(load_settings(write_config(directory, url)))
        task = asyncio.get_running_loop().create_task(service.run())
        await service.ready.wait()
        # As `hilsim run` does once the service is ready (hilsim.cli): what start-up loaded
        # leaves the cyclic GC's sight, so a full collection walks only what the calls make.
        gc.freeze()
        charger, link = service.charger, service.link
        assert charger is not None and link is not None
        connected = asyncio.Event()
        charger.link_listeners.append(
            lambda state: connected.set() if state == LinkState.CONNECTED else None
        )
        if link.state == LinkState.CONNECTED:
            connected.set()
        await asyncio.wait_for(connected.wait(), 30)

        def heartbeat(c: Any) -> Any:
            return c.heartbeat()

        emit({"event": "ready"})
        reader = await stdin_lines()
        while line := await reader.readline():
            command = json.loads(line)
            cmd = command["cmd"]
            if cmd == "heartbeat":
                for _ in range(int(command["n"])):
                    await link.submit(heartbeat, "Heartbeat")
            elif cmd == "metervalues":
                for i in range(int(command["n"])):
                    sample = meter_value(utc_iso(), 1000.0 + i, 11000.0, 47.8, 42.5)
                    await link.submit(lambda c, s=sample: c.meter_values(1, 1, s), "MeterValues C1")
            emit({"event": "done", "cmd": cmd, "cpu": time.process_time()})
        service.stop()
        await task


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ocpp")
    parser.add_argument("--child", metavar="URL", help="host a hilsim charge point for the run")
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.child))
    else:
        for row in run():
            print(row)
