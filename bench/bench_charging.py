"""Two connectors charging: peak memory and the share of one core that `hilsim run` takes.

The real ``hilsim run`` process, two connectors plugged and authorised through the control
socket (as ``hilsim ctl`` does), MeterValueSampleInterval set to 1 s by the CSMS with
ChangeConfiguration. Beside it, for the same window, the bare baseline sends the same two
MeterValues a second. CPU is read from /proc for each process (the CSMS is not counted); peak
RSS is the kernel's high-water mark (VmHWM) at the end of the window.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Row
from bench.harness import (
    BARE,
    BARE_ID,
    CP_ID,
    TAG,
    Child,
    cpu_seconds,
    hilsim_run,
    is_status,
    peak_rss_mb,
    peer,
    peer_url,
    python_command,
    running,
    scratch_dir,
    write_config,
)

RSS_GOAL_MB = 45.0
CPU_GOAL_PERCENT = 1.0


def run(quick: bool = False) -> list[Row]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    from hilsim.config import load_settings
    from hilsim.control import request

    window = 3.0 if quick else 60.0
    with scratch_dir() as directory:
        csms = peer(directory, report=("StatusNotification", "MeterValues"))
        async with running(csms):
            url = await peer_url(csms)
            config = write_config(directory, url)
            socket = load_settings(config).control.socket
            hilsim = hilsim_run(config, directory)
            bare = Child(
                "bare",
                python_command(
                    "-m",
                    "bench.bare",
                    "service",
                    "--url",
                    f"{url}/{BARE_ID}",
                    "--meter-interval",
                    "1",
                ),
                directory,
            )
            async with running(hilsim, bare):
                await bare.expect("ready")
                await csms.expect("call", lambda e: is_status(e, CP_ID, 2, "Available"))
                csms.send(
                    cmd="call",
                    cp=CP_ID,
                    action="ChangeConfiguration",
                    payload={"key": "MeterValueSampleInterval", "value": "1"},
                    id="interval",
                )
                result = await csms.expect("result", lambda e: e["id"] == "interval")
                if result["frame"][2].get("status") != "Accepted":
                    raise RuntimeError(f"MeterValueSampleInterval=1 refused: {result['frame']}")
                for connector in (1, 2):
                    for command in ({"cmd": "plug"}, {"cmd": "tag", "id_tag": TAG}):
                        answer = await request(socket, {**command, "connector": connector})
                        if not answer.get("ok"):
                            raise RuntimeError(f"ctl {command} {connector}: {answer}")
                for connector in (1, 2):
                    await csms.expect(
                        "call", lambda e, c=connector: is_status(e, CP_ID, c, "Charging")
                    )
                await asyncio.sleep(1.0 if quick else 2.0)  # into the steady state
                pids = {"hilsim": hilsim.pid, "bare": bare.pid}
                before = {side: cpu_seconds(pid) for side, pid in pids.items()}
                started = time.monotonic()
                first_event = len(csms.events)
                await asyncio.sleep(window)
                took = time.monotonic() - started
                after = {side: cpu_seconds(pid) for side, pid in pids.items()}
                rss = {side: peak_rss_mb(pid) for side, pid in pids.items()}
                samples = {
                    cp: sum(
                        1
                        for e in csms.events[first_event:]
                        if e.get("action") == "MeterValues" and e.get("cp") == cp
                    )
                    for cp in (CP_ID, BARE_ID)
                }
    for cp, count in samples.items():
        if count < window:  # two connectors, one sample a second each: about 2 x window
            raise RuntimeError(f"{cp} sent only {count} MeterValues in {took:.1f} s")
    share = {side: 100 * (after[side] - before[side]) / took for side in pids}
    return [
        Row(
            "Peak RSS, hilsim run, 2 connectors charging",
            round(rss["hilsim"], 1),
            "MB",
            round(rss["bare"], 1),
            BARE,
            f"< {RSS_GOAL_MB:g} MB",
            rss["hilsim"] < RSS_GOAL_MB,
        ),
        Row(
            f"CPU share, 2 connectors charging, MeterValues every 1 s ({window:g} s)",
            round(share["hilsim"], 3),
            "% of a core",
            round(share["bare"], 3),
            BARE,
            f"< {CPU_GOAL_PERCENT:g}%",
            share["hilsim"] < CPU_GOAL_PERCENT,
        ),
    ]
