"""RemoteTrigger: TriggerMessage for each message it may ask for, per connector."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.ocpp.wire import Frame

from conftest import CP_ID, Bench

#: (requestedMessage, connectorId, answer, the CALLs that follow: (action, connectorId or None))
TRIGGERS: list[tuple[str, int | None, str, list[tuple[str, int | None]]]] = [
    ("BootNotification", None, "Accepted", [("BootNotification", None)]),
    ("BootNotification", 1, "Accepted", [("BootNotification", None)]),  # connector ignored
    ("Heartbeat", None, "Accepted", [("Heartbeat", None)]),
    ("StatusNotification", None, "Accepted",
     [("StatusNotification", 0), ("StatusNotification", 1), ("StatusNotification", 2)]),
    ("StatusNotification", 0, "Accepted", [("StatusNotification", 0)]),
    ("StatusNotification", 2, "Accepted", [("StatusNotification", 2)]),
    ("StatusNotification", 3, "Rejected", []),
    ("MeterValues", None, "Accepted", [("MeterValues", 1), ("MeterValues", 2)]),
    ("MeterValues", 1, "Accepted", [("MeterValues", 1)]),
    ("MeterValues", 0, "Rejected", []),
    ("MeterValues", 5, "Rejected", []),
    ("DiagnosticsStatusNotification", None, "Accepted",
     [("DiagnosticsStatusNotification", None)]),
    ("FirmwareStatusNotification", None, "Accepted", [("FirmwareStatusNotification", None)]),
    ("Heartbeat", 9, "Rejected", []),
]


def frames_of(csms: CentralSystem) -> list[Frame]:
    seen: list[Frame] = []
    csms.on_frame = lambda charge_point_id, frame: seen.append(frame)
    return seen


def calls_after_answer(frames: list[Frame], unique_id: str) -> list[tuple[str, Any]]:
    """The CALLs the charge point sent after its answer to ``unique_id``, in order."""
    parsed = [frame.parsed() for frame in frames if not frame.sent]
    answer = next(i for i, msg in enumerate(parsed) if msg and msg[0] == 3 and msg[1] == unique_id)
    return [(msg[2], msg[3]) for msg in parsed[answer + 1 :] if msg and msg[0] == 2]


@pytest.mark.parametrize(("requested", "connector", "answer", "follows"), TRIGGERS)
async def test_trigger_message(
    bench: Bench,
    requested: str,
    connector: int | None,
    answer: str,
    follows: list[tuple[str, int | None]],
) -> None:
    session = bench.session
    frames = frames_of(bench.csms)
    payload: dict[str, Any] = {"requestedMessage": requested}
    if connector is not None:
        payload["connectorId"] = connector
    reply = await session.call_raw(json.dumps([2, "trig-1", "TriggerMessage", payload]))
    assert reply == [3, "trig-1", {"status": answer}]
    for action, cid in follows:
        await session.wait_for(
            action, lambda p, cid=cid: cid is None or p.get("connectorId") == cid
        )
    # Nothing else comes: a Heartbeat triggered afterwards is the next CALL after those.
    assert await session.trigger_message("Heartbeat") == "Accepted"
    await session.wait_for("Heartbeat")
    sent = calls_after_answer(frames, "trig-1")
    assert [(a, p.get("connectorId")) for a, p in sent[:-1]] == follows
    assert sent[-1][0] == "Heartbeat"


async def test_triggered_messages_say_what_is_true_now(bench: Bench) -> None:
    session = bench.session
    assert await session.change_configuration("MeterValuesSampledData",
                                              "Energy.Active.Import.Register,SoC") == "Accepted"
    tx = await bench.start_local(1)
    assert await session.change_availability(2, "Inoperative") == "Accepted"
    await bench.status(2, "Unavailable")
    assert await session.trigger_message("MeterValues", 1) == "Accepted"
    values = await session.wait_for("MeterValues", lambda p: p["meterValue"][0]["sampledValue"][0]
                                    ["context"] == "Trigger")
    assert values["transactionId"] == tx
    sampled = values["meterValue"][0]["sampledValue"]
    assert [s["measurand"] for s in sampled] == ["Energy.Active.Import.Register", "SoC"]
    assert {s["context"] for s in sampled} == {"Trigger"}
    assert await session.trigger_message("StatusNotification") == "Accepted"
    for cid, status in [(0, "Available"), (1, "Charging"), (2, "Unavailable")]:
        await bench.status(cid, status)
    assert await session.trigger_message("MeterValues", 2) == "Accepted"
    idle = await session.wait_for("MeterValues", lambda p: p["connectorId"] == 2)
    assert "transactionId" not in idle
    assert await session.trigger_message("FirmwareStatusNotification") == "Accepted"
    assert (await session.wait_for("FirmwareStatusNotification"))["status"] == "Idle"
    assert await session.trigger_message("DiagnosticsStatusNotification") == "Accepted"
    assert (await session.wait_for("DiagnosticsStatusNotification"))["status"] == "Idle"


async def test_a_triggered_boot_notification_reboots_nothing(bench: Bench) -> None:
    tx = await bench.start_local(1)
    assert await bench.session.trigger_message("BootNotification") == "Accepted"
    await bench.session.wait_for("BootNotification")
    assert await bench.session.trigger_message("StatusNotification", 1) == "Accepted"
    await bench.status(1, "Charging")
    status = await bench.ctl("status")
    assert status["result"]["connectors"][0]["transaction_id"] == tx


async def test_a_pending_charge_point_answers_triggers(bench_factory: Any) -> None:
    """While its BootNotification is Pending, a CSMS may still trigger messages (4.2.1)."""
    bench: Bench = await bench_factory()
    session: ChargePointSession = bench.session
    await bench.status(2, "Available")
    bench.csms.boot_status = "Pending"
    assert await session.reset("Soft") == "Accepted"
    pending = await bench.csms.wait_for_charge_point(CP_ID, timeout=10)
    await pending.wait_for("BootNotification")
    assert bench.csms.registration_status(CP_ID) == "Pending"
    assert await pending.trigger_message("StatusNotification", 1) == "Accepted"
    await pending.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    assert await pending.trigger_message("Heartbeat") == "Accepted"
    await pending.wait_for("Heartbeat")
    assert pending.violations == []
    bench.csms.boot_status = "Accepted"
