"""Soak: thousands of short sessions on both EVSEs of a real ``hilsim run``, in both versions.

What a bench left running for weeks, or a CSMS test suite hammering the charge point, does to
it, compressed: each round plugs both connectors in, presents a tag, charges for 50 ms and
unplugs, over and over, with sampled and clock-aligned meter values every second. The CSMS is
the built-in one (`hilsim.csms`), whose ledgers say what looked wrong about each transaction:
an event after its Ended, a seqNo missing or repeated (2.0.1), a transaction never stopped
(1.6). The figures are the sessions completed, the problems found (goal: none) and how much
the charge point's resident memory grew after its first 10 % of the run (goal: it levels off;
the 1.6 charge point under the same soak is the baseline for 2.0.1's).

Found by it, and fixed: three ways a 2.0.1 event came after its transaction's Ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from bench.common import Row
from bench.harness import CP_ID, hilsim_run, scratch_dir, write_config

TAG = "04A2B3C4"
SESSION_S = 0.05
#: Growth of resident memory from 10 % into the run to its end that counts as levelled off.
GROWTH_GOAL_MB = 2.0


def run(quick: bool = False) -> list[Row]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    seconds = 4.0 if quick else 120.0
    results = {version: await _soak(version, seconds) for version in ("1.6", "2.0.1")}
    base, new = results["1.6"], results["2.0.1"]
    rows = []
    for version, result in results.items():
        label = f"OCPP {version}, {seconds:g} s of {SESSION_S * 1000:g} ms sessions on 2 EVSEs"
        problems = result["problems"]
        rows.append(Row(f"Soak sessions completed, {label}", result["sessions"], "sessions"))
        rows.append(
            Row(f"Soak transaction problems in the CSMS's ledger, {label}", problems,
                "problems", goal="0", met=problems == 0)
        )  # fmt: skip
    growth = f"< {GROWTH_GOAL_MB:g} MB"
    rows.append(
        Row("Soak RSS growth after the first 10 %, OCPP 2.0.1", round(new["growth_mb"], 2),
            "MB", round(base["growth_mb"], 2), "hilsim, OCPP 1.6 (same soak)", growth,
            new["growth_mb"] < GROWTH_GOAL_MB)
    )  # fmt: skip
    rows.append(
        Row("Soak RSS growth after the first 10 %, OCPP 1.6", round(base["growth_mb"], 2),
            "MB", goal=growth, met=base["growth_mb"] < GROWTH_GOAL_MB)
    )  # fmt: skip
    return rows


async def _soak(version: str, seconds: float) -> dict[str, Any]:
    from hilsim.control import request
    from hilsim.csms import CentralSystem

    with scratch_dir() as directory:
        async with CentralSystem("127.0.0.1", 0) as central:
            config = write_config(directory, central.url, ocpp_version=version)
            child = hilsim_run(config, directory)
            await child.start()
            try:
                session = await central.wait_for_charge_point(CP_ID, timeout=30)
                key = "connectorId" if version == "1.6" else "evseId"
                await session.wait_for("StatusNotification", lambda p: p[key] == 2, timeout=30)
                await _every_second(session, version)
                socket = directory / "ctl.sock"
                assert child.process is not None
                pid = child.process.pid
                sessions, warm_rss = 0, None
                started = time.monotonic()
                while (elapsed := time.monotonic() - started) < seconds:
                    for connector in (1, 2):
                        await _ctl(request, socket, "plug", connector)
                        await _ctl(request, socket, "tag", connector, id_tag=TAG)
                    await asyncio.sleep(SESSION_S)  # charging: the load, not a synchronisation
                    for connector in (1, 2):
                        await _ctl(request, socket, "unplug", connector)
                    sessions += 2
                    if warm_rss is None and elapsed > seconds / 10:
                        warm_rss = _rss_mb(pid)
                await _settled(central, version, sessions)
                end_rss = _rss_mb(pid)
            finally:
                await child.stop()
            problems = _problems(central, version) + len(session.violations)
    return {
        "sessions": sessions,
        "problems": problems,
        "growth_mb": end_rss - (warm_rss if warm_rss is not None else end_rss),
    }


async def _every_second(session: Any, version: str) -> None:
    """Sampled and clock-aligned meter values every second: the soak's background traffic."""
    if version == "1.6":
        for key in ("MeterValueSampleInterval", "ClockAlignedDataInterval"):
            await session.call_action("ChangeConfiguration", {"key": key, "value": "1"})
        return
    for component, name in (("SampledDataCtrlr", "TxUpdatedInterval"),
                            ("AlignedDataCtrlr", "Interval")):  # fmt: skip
        item = {"component": {"name": component}, "variable": {"name": name},
                "attributeValue": "1"}  # fmt: skip
        await session.call_action("SetVariables", {"setVariableData": [item]})


async def _ctl(request: Any, socket: Path, cmd: str, connector: int, **extra: Any) -> None:
    answer = await request(socket, {"cmd": cmd, "connector": connector, **extra})
    if not answer.get("ok"):
        raise RuntimeError(f"ctl {cmd} {connector}: {answer.get('error')}")


def _records(central: Any, version: str) -> list[Any]:
    return list((central.ledger if version == "1.6" else central.ledger201).values())


async def _settled(central: Any, version: str, sessions: int, timeout: float = 30.0) -> None:
    """Until the CSMS has every session, ended (what is still open then counts as a problem)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                records = _records(central, version)
                if len(records) >= sessions and not any(r.active for r in records):
                    return
                await asyncio.sleep(0.1)  # polling the ledger, which announces nothing


def _problems(central: Any, version: str) -> int:
    """Transactions never ended, and (2.0.1) what the ledger found wrong with the others."""
    records = _records(central, version)
    found = sum(1 for record in records if record.active)
    if version == "2.0.1":
        found += sum(len(record.problems) for record in records)
    return found


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
