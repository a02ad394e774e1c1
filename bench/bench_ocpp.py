"""CPU per OCPP round trip at the charge point: hilsim against bare `websockets` + `json`.

Three round trips, each counted in the charge point's process only (``time.process_time()``,
user + system, every thread): Heartbeat and MeterValues (four measurands) sent by the charge
point, and GetConfiguration (every key) sent by the CSMS and answered. hilsim goes through
its real path: the CSMS link's send queue, the OCPP client, validation of every payload the
CSMS sends, the traced websocket. The CSMS (`bench.peer`) runs in a third process.

hilsim and the baseline are connected at the same time and measured in alternation, so a
change of CPU clock during the run hits both alike; each figure is the median of the
repetitions.

In the same run a second hosted charge point speaks OCPP 2.0.1 (issue 18: within 1.5x of 1.6
per call and in memory): its Heartbeat and MeterValues (the same four measurands, 2.0.1-shaped),
and GetVariables of four variables for the incoming call, each beside the 1.6 charge point's
figure, and both charge points' peak RSS at the end. A 2.0.1 charge point without a device model
answers GetVariables with a CALLERROR; the row then says so (the figure is still a round trip).

The hosted charge point: ``python -m bench.bench_ocpp --child ws://127.0.0.1:PORT [--ocpp
2.0.1]``.
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
    peak_rss_mb,
    peer,
    peer_url,
    python_command,
    running,
    scratch_dir,
)

GOAL = 1.5
CP_ID_201 = "BENCH-CP-201"
HILSIM_16 = "hilsim, OCPP 1.6 (same run)"


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
            argv_201 = python_command("-m", "bench.bench_ocpp", "--child", url, "--ocpp", "2.0.1")
            hilsim_201 = Child("hilsim-201", argv_201, logs)
            bare_argv = python_command("-m", "bench.bare", "rt", "--url", f"{url}/{BARE_ID}")
            bare = Child("bare", bare_argv, logs)
            async with running(hilsim, hilsim_201, bare):
                for child in (hilsim, hilsim_201, bare):
                    await child.expect("ready", timeout=30)
                csms.send(cmd="call", cp=CP_ID, action="GetConfiguration", payload={}, id="answer")
                answer = (await csms.expect("result"))["frame"][2]
                await _command(bare, "answer", payload=answer)
                sides = (
                    (hilsim, CP_ID, "hilsim", "getconf"),
                    (hilsim_201, CP_ID_201, "hilsim-201", "getvars"),
                    (bare, BARE_ID, "bare", "getconf"),
                )
                errors: list[int] = []
                # Warm up: caches, the allocator, the schema validators.
                for child, cp, _, incoming in sides:
                    await _outgoing(child, "heartbeat", n // 4)
                    await _outgoing(child, "metervalues", n // 4)
                    await _incoming(child, csms, cp, n // 4, incoming, errors)
                figures: dict[str, dict[str, list[float]]] = {
                    what: {side: [] for _, _, side, _ in sides}
                    for what in ("heartbeat", "metervalues", "getconf")
                }
                for _ in range(repetitions):
                    for child, cp, side, incoming in sides:
                        figures["heartbeat"][side].append(await _outgoing(child, "heartbeat", n))
                        figures["metervalues"][side].append(
                            await _outgoing(child, "metervalues", n)
                        )
                        figures["getconf"][side].append(
                            await _incoming(child, csms, cp, n, incoming, errors)
                        )
                rss = {"hilsim": peak_rss_mb(hilsim.pid), "hilsim-201": peak_rss_mb(hilsim_201.pid)}
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
    refused = " (answered CALLERROR: no device model)" if any(errors) else ""
    names_201 = {
        "heartbeat": "CPU per Heartbeat round trip, OCPP 2.0.1",
        "metervalues": "CPU per MeterValues round trip, 4 measurands, OCPP 2.0.1",
        "getconf": f"CPU per incoming GetVariables (4 variables), OCPP 2.0.1{refused}",
    }
    for what, sides_figures in figures.items():
        value = median(sides_figures["hilsim-201"]) * 1e6
        baseline = median(sides_figures["hilsim"]) * 1e6
        rows.append(_versus_16(names_201[what], value, baseline, "µs"))
    rows.append(
        _versus_16("Peak RSS, hosted charge point, OCPP 2.0.1", rss["hilsim-201"],
                   rss["hilsim"], "MB")
    )  # fmt: skip
    return rows


def _versus_16(figure: str, value: float, baseline: float, unit: str) -> Row:
    """A 2.0.1 figure beside the same figure of the 1.6 charge point measured in the same run."""
    return Row(
        figure, round(value, 1), unit, round(baseline, 1), HILSIM_16, f"≤ {GOAL:g}x",
        value <= GOAL * baseline,
    )  # fmt: skip


async def _command(child: Child, cmd: str, **args: Any) -> float:
    child.send(cmd=cmd, **args)
    done = await child.expect("done", lambda e: e["cmd"] == cmd, timeout=120)
    return float(done["cpu"])


async def _outgoing(child: Child, what: str, n: int) -> float:
    """CPU seconds per round trip of ``n`` CALLs sent by the charge point."""
    before = await _command(child, "cpu")
    after = await _command(child, what, n=n)
    return (after - before) / n


async def _incoming(
    child: Child,
    csms: Child,
    cp: str,
    n: int,
    cmd: str = "getconf",
    errors: list[int] | None = None,
) -> float:
    """CPU seconds per GetConfiguration (``getvars``: GetVariables) the CSMS sends and the
    charge point answers; the number answered with a CALLERROR goes to ``errors``."""
    before = await _command(child, "serve")
    csms.send(cmd=cmd, cp=cp, n=n, id=cp)
    done = await csms.expect("getconf-done", lambda e: e["id"] == cp, timeout=120)
    if errors is not None and cmd == "getvars":
        errors.append(int(done.get("errors", 0)))
    after = await _command(child, "unserve")
    return (after - before) / n


# -- the hosted charge point ----------------------------------------------------------------


async def _child(url: str, ocpp_version: str = "1.6") -> None:
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
        cp_id = CP_ID_201 if ocpp_version == "2.0.1" else CP_ID
        config = write_config(directory, url, ocpp_version=ocpp_version, charge_point_id=cp_id)
        service = Service(load_settings(config))
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
    parser.add_argument("--ocpp", default="1.6", help="the hosted charge point's OCPP version")
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.child, args.ocpp))
    else:
        for row in run():
            print(row)
