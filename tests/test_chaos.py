"""Nothing lost under chaos: a real `hilsim run` killed with SIGKILL and the CSMS restarted at
random points while sessions charge; the CSMS's ledger must then hold every transaction exactly
once, stopped once, with meter values that never go backwards.

The scenario lives in `bench.chaos` (``python -m bench --only chaos`` runs it as a benchmark).
Its random decisions come from a seed that is printed first; a failing run is repeated with
``HILSIM_CHAOS_SEED=<seed> pytest tests/test_chaos.py``. It takes about 10 to 30 s, so it runs
with the rest of the suite (``-m "not slow"`` leaves it out).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_offline import ctl
from test_reconnect import free_port

from hilsim.csms import CentralSystem

from bench.chaos import run_chaos
from conftest import CP_ID, TAG, make_settings, start_service, stop_service

SESSIONS = 12


@pytest.mark.slow
@pytest.mark.timeout(240)  # CSMS outages add up; one run is typically 10 to 30 s
async def test_no_transaction_is_lost_or_duplicated_under_kills_and_csms_restarts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        with capsys.disabled():  # the seed and the figures belong on the terminal
            print(line)

    report = await run_chaos(SESSIONS, say=say)
    assert report.problems == [], "\n".join(lines)
    assert report.losses == 0
    assert report.sessions >= SESSIONS
    # The chaos did happen: the run that proves nothing is lost must have tried to lose things.
    assert sum(report.kills.values()) + report.csms_restarts > 0, "\n".join(lines)
    assert report.power_loss_stops <= report.sessions


# -- the worst moment for a CSMS restart, on purpose -----------------------------------------


async def test_a_message_in_flight_when_the_csms_restarts_is_sent_again(short_dir: Path) -> None:
    """The CSMS goes down after reading a StartTransaction, before answering it.

    The chaos run found this: the link dropped the CALL that was waiting for its answer without
    telling the outbox, which then waited forever, and nothing of any transaction reached the CSMS
    again until the process was restarted.
    """
    port = free_port()
    settings = make_settings(short_dir, f"ws://127.0.0.1:{port}")
    first = CentralSystem("127.0.0.1", port)
    await first.start()
    service, task = await start_service(settings)
    try:
        session = await first.wait_for_charge_point(CP_ID, timeout=5)
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
        read = asyncio.Event()
        original = session.route_message

        async def never_answer_a_start(raw: str) -> None:
            if json.loads(raw)[2] == "StartTransaction":
                read.set()  # read, never answered: the CSMS dies first
                return
            await original(raw)

        session.route_message = never_answer_a_start  # type: ignore[method-assign]
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        await asyncio.wait_for(read.wait(), 5)
        await first.stop()
        async with CentralSystem("127.0.0.1", port) as second:
            second.ledger = first.ledger
            again = await second.wait_for_charge_point(CP_ID, timeout=10)
            start = await again.wait_for("StartTransaction", timeout=10)
            assert start["idTag"] == TAG
            await ctl(settings, "unplug", 1)
            stop = await again.wait_for("StopTransaction", timeout=10)
            (record,) = second.ledger.values()
            assert stop["transactionId"] == record.transaction_id
            assert record.reason == "EVDisconnected"
            assert again.violations == []
    finally:
        await stop_service(service, task)
