"""Clear answers from `hilsim ctl`: the verdict on a tag, the last authorization, fault codes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from conftest import TAG, Bench


async def test_tag_answers_with_the_csms_verdict(bench: Bench) -> None:
    assert (await bench.ctl("plug", 1))["ok"]
    answer = await bench.ctl("tag", 1, id_tag=TAG)
    assert answer["ok"]
    decision = answer["result"]["authorization"]
    assert {k: decision[k] for k in ("connector", "id_tag", "status", "source")} == {
        "connector": 1,
        "id_tag": TAG,
        "status": "Accepted",
        "source": "CSMS",
    }
    assert answer["result"]["status"] in ("Preparing", "Charging")


async def test_a_refused_tag_says_why_and_status_remembers_it(bench: Bench) -> None:
    bench.csms.id_tag_details["B10CKED"] = {"status": "Blocked"}
    answer = await bench.ctl("tag", 2, id_tag="B10CKED")
    assert answer["ok"]
    assert answer["result"]["authorization"]["status"] == "Blocked"
    assert answer["result"]["status"] == "Available"
    unknown = await bench.ctl("tag", 2, id_tag="NOBODY")
    assert unknown["result"]["authorization"]["status"] == "Invalid"
    status = await bench.ctl("status")
    last = status["result"]["last_authorization"]
    assert (last["id_tag"], last["status"], last["source"]) == ("NOBODY", "Invalid", "CSMS")


async def test_offline_the_local_decision_is_the_answer(bench: Bench) -> None:
    await bench.csms.stop()
    answer = await bench.ctl("tag", 1, id_tag="NEVERSEEN")
    decision = answer["result"]["authorization"]
    assert (decision["status"], decision["source"]) == ("Invalid", "offline")


async def test_a_wrong_fault_code_lists_the_valid_ones(bench: Bench) -> None:
    answer = await bench.ctl("fault", 1, error_code="Smoke")
    assert not answer["ok"]
    assert answer["error"].startswith(
        "fault: 'Smoke' is not a ChargePointErrorCode; expected one of: ConnectorLockFailure, "
    )
    assert "WeakSignal" in answer["error"] and "NoError" not in answer["error"]
    # from the command line: one line, exit 1
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hilsim", "ctl", "fault", "1", "Smoke",
        "--config", str(Path(bench.settings.source)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1 and out == b""
    assert err.decode().startswith("hilsim: fault: 'Smoke' is not a ChargePointErrorCode")
