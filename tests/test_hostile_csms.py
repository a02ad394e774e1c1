"""A CSMS that answers what no sane one would: the charge point refuses it and keeps working.

Each fault is played by the built-in CSMS over a real websocket (``answer_next`` sends a crafted
CALLRESULT exactly as given, ``call_raw`` a crafted CALL) against the real service. After each
one a later plug and tag must still give a StartTransaction and a StopTransaction, and the CSMS's
ledger must hold every transaction once, stopped: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import hilsim.clock
from hilsim.clock import parse_iso, utc_iso
from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.ocpp.transport import Backoff
from hilsim.service import Service

from conftest import CP_ID, TAG, Bench, make_settings, start_service, stop_service


class LogWatch(logging.Handler):
    """WARNING and worse lines of hilsim, and a way to wait for one without sleeping."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self._changed.set()

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def wait(self, text: str, count: int = 1, timeout: float = 10) -> str:
        """The ``count``-th line containing ``text``, once it has been logged."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.matching(text)) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"no log line {text!r} within {timeout:g} s: {self.lines}") from None
        return self.matching(text)[count - 1]


@pytest.fixture
def watch() -> Iterator[LogWatch]:
    handler = LogWatch()
    logger = logging.getLogger("hilsim")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def unsynchronised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pi without NTP: timestamps follow the CSMS's currentTime (as on most benches)."""
    monkeypatch.setattr(hilsim.clock, "kernel_clock_synchronized", lambda: False)


def boot_answer(current_time: str, status: str = "Accepted", interval: Any = 120) -> dict[str, Any]:
    return {"status": status, "interval": interval, "currentTime": current_time}


async def charge_once(
    session: ChargePointSession, ctl: Callable[..., Any], connector: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plug, tag, unplug: the StartTransaction and StopTransaction it gave."""
    assert (await ctl("plug", connector))["ok"]
    await session.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == connector and p["status"] == "Preparing"
    )
    assert (await ctl("tag", connector, id_tag=TAG))["ok"]
    start = await session.wait_for("StartTransaction", lambda p: p["connectorId"] == connector)
    await session.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == connector and p["status"] == "Charging"
    )
    assert (await ctl("unplug", connector))["ok"]
    stop = await session.wait_for("StopTransaction")
    return start, stop


def assert_ledger_whole(csms: CentralSystem, transactions: int) -> None:
    """Every transaction the CSMS heard of is there once, and stopped."""
    records = list(csms.ledger.values())
    assert len(records) == transactions, records
    assert [r for r in records if r.active] == []
    assert csms.ledger.repeated_starts == 0
    starts = [(r.connector_id, r.start_timestamp) for r in records]
    assert len(set(starts)) == len(starts)


# -- integers beyond 64 bits --------------------------------------------------------------------

HUGE = 10**30
BAD_START = {"transactionId": HUGE, "idTagInfo": {"status": "Accepted"}}


async def test_a_transaction_id_beyond_64_bits_is_an_invalid_answer_and_retried(
    bench: Bench, watch: LogWatch
) -> None:
    await bench.session.change_configuration("TransactionMessageRetryInterval", "1")
    bench.csms.answer_next["StartTransaction"] = [dict(BAD_START)]
    assert (await bench.ctl("plug", 1))["ok"]
    await bench.status(1, "Preparing")
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
    first = await bench.session.wait_for("StartTransaction")
    line = await watch.wait("invalid CALLRESULT")
    assert "StartTransaction" in line and "PropertyConstraintViolation" in line
    assert f"transactionId: {HUGE}" in line
    # The message stayed queued; its retry is answered sanely and the charge goes on under it.
    again = await bench.session.wait_for("StartTransaction")
    assert again == first
    await bench.status(1, "Charging")
    assert (await bench.ctl("unplug", 1))["ok"]
    stop = await bench.session.wait_for("StopTransaction")
    assert bench.csms.ledger[stop["transactionId"]].start_timestamp == first["timestamp"]
    await charge_once(bench.session, bench.ctl, 2)
    assert_ledger_whole(bench.csms, 2)
    assert not bench.task.done()


async def test_after_a_transaction_id_beyond_64_bits_a_restart_delivers_the_start(
    csms: CentralSystem, short_dir: Path, watch: LogWatch
) -> None:
    """The bad answer used to crash the service, and the queued message every restart after."""
    settings = make_settings(short_dir, csms.url)
    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        await session.change_configuration("TransactionMessageRetryInterval", "3600")
        csms.answer_next["StartTransaction"] = [dict(BAD_START)]
        bench = Bench(settings, service, csms, session, task)
        assert (await bench.ctl("plug", 1))["ok"]
        await bench.status(1, "Preparing")
        assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
        first = await session.wait_for("StartTransaction")
        await watch.wait("invalid CALLRESULT")
        assert not task.done()
    finally:
        # Abruptly, as a crash or a power cut would end it: the StartTransaction stays queued.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert csms.ledger == {}  # the CSMS never heard of it: the answer was not sane

    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        start = await session.wait_for("StartTransaction")
        assert start == first  # the queued one, delivered now that the CSMS answers sanely
        stop = await session.wait_for("StopTransaction")  # ended by the restart
        assert stop["reason"] == "PowerLoss"
        assert csms.ledger[stop["transactionId"]].start_timestamp == first["timestamp"]
        bench = Bench(settings, service, csms, session, task)
        await bench.status(1, "Available", timeout=10)
        await charge_once(session, bench.ctl, 1)
        assert_ledger_whole(csms, 2)
        assert session.violations == []
    finally:
        await stop_service(service, task)


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("RemoteStopTransaction", {"transactionId": HUGE}),
        ("CancelReservation", {"reservationId": HUGE}),
        (
            "ReserveNow",
            {
                "connectorId": 1,
                "expiryDate": "2030-01-01T00:00:00Z",
                "idTag": TAG,
                "reservationId": 2**63,
            },
        ),
        (
            "SetChargingProfile",
            {
                "connectorId": 1,
                "csChargingProfiles": {
                    "chargingProfileId": HUGE,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                    },
                },
            },
        ),
        ("ClearChargingProfile", {"id": -(2**63) - 1}),
        ("SendLocalList", {"listVersion": HUGE, "updateType": "Full"}),
    ],
)
async def test_an_integer_beyond_64_bits_in_a_request_is_a_property_constraint_violation(
    bench: Bench, action: str, payload: dict[str, Any]
) -> None:
    reply = await bench.session.call_raw(json.dumps([2, "huge", action, payload]))
    assert reply[:3] == [4, "huge", "PropertyConstraintViolation"]
    assert "maximum" in reply[3] or "minimum" in reply[3]
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


# -- the CSMS's clock ---------------------------------------------------------------------------

YEAR_9999 = "9999-12-31T23:59:59.000Z"


def close_to_now(stamp: str, within: timedelta = timedelta(minutes=1)) -> bool:
    return abs(parse_iso(stamp) - datetime.now(UTC)) < within


async def test_a_csms_time_in_year_9999_is_ignored(
    unsynchronised: None, csms: CentralSystem, bench_factory: Any, watch: LogWatch
) -> None:
    csms.answer_next["BootNotification"] = [boot_answer(YEAR_9999)]
    bench: Bench = await bench_factory()
    line = await watch.wait(YEAR_9999)
    assert "outside 2026..2099" in line and "ignored" in line
    for connector in (0, 1, 2):
        assert close_to_now((await bench.status(connector, "Available"))["timestamp"])
    # The same from a Heartbeat (asked for, so that nothing waits for its interval).
    csms.answer_next["Heartbeat"] = [{"currentTime": YEAR_9999}]
    assert await bench.session.trigger_message("Heartbeat") == "Accepted"
    await watch.wait(YEAR_9999, count=2)
    for connector in (1, 2):
        start, stop = await charge_once(bench.session, bench.ctl, connector)
        assert close_to_now(start["timestamp"]) and close_to_now(stop["timestamp"])
    assert_ledger_whole(csms, 2)


async def test_a_boot_time_a_day_ahead_is_corrected_by_the_next_heartbeat(
    unsynchronised: None, csms: CentralSystem, bench_factory: Any, watch: LogWatch
) -> None:
    ahead = datetime.now(UTC) + timedelta(days=1)
    csms.answer_next["BootNotification"] = [boot_answer(utc_iso(ahead))]
    bench: Bench = await bench_factory()
    available = await bench.status(1, "Available")
    assert parse_iso(available["timestamp"]) > datetime.now(UTC) + timedelta(hours=23)
    # The CSMS's next answer has the true time (the built-in one states its own clock).
    assert await bench.session.trigger_message("Heartbeat") == "Accepted"
    line = await watch.wait("step back")
    assert "behind the last timestamp sent" in line
    start, stop = await charge_once(bench.session, bench.ctl, 1)
    assert close_to_now(start["timestamp"]) and close_to_now(stop["timestamp"])
    assert parse_iso(stop["timestamp"]) >= parse_iso(start["timestamp"])
    assert_ledger_whole(csms, 1)


# -- a boot answer off the schema ---------------------------------------------------------------


async def test_a_garbled_boot_answer_is_backed_off_from(
    csms: CentralSystem, short_dir: Path, watch: LogWatch
) -> None:
    """Each garbled answer waits longer before the next connection, as a refused socket does."""
    garbled = boot_answer(utc_iso(datetime.now(UTC)), interval="soon")
    csms.answer_next["BootNotification"] = [dict(garbled) for _ in range(5)]
    settings = make_settings(short_dir, csms.url)
    # Delays drawn from [0.025, 0.05], [0.05, 0.1], ..., the fifth from [0.4, 0.8] s.
    service = Service(
        settings, backoff=Backoff(initial_s=0.05, factor=2.0, cap_s=10.0), response_timeout=5
    )
    task = asyncio.create_task(service.run())
    try:
        sessions = [await csms.wait_for_charge_point(CP_ID, timeout=10) for _ in range(6)]
        gaps = [b.connected_at - a.connected_at for a, b in itertools.pairwise(sessions)]
        assert gaps[-1] >= 0.4, gaps  # reset at every connection, each would be under 0.05 s
        line = await watch.wait("invalid CALLRESULT", count=5)
        assert "BootNotification" in line and "TypeConstraintViolation" in line
        session = sessions[-1]
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
        bench = Bench(settings, service, csms, session, task)
        await charge_once(session, bench.ctl, 1)
        assert_ledger_whole(csms, 1)
        assert service.link is not None and service.link.connections == 6
    finally:
        await stop_service(service, task)


# -- RemoteStartTransaction that may not start anything -----------------------------------------


async def test_remote_start_with_an_empty_id_tag_is_rejected(bench: Bench) -> None:
    assert (await bench.ctl("plug", 1))["ok"]
    await bench.status(1, "Preparing")
    assert await bench.session.remote_start("", connector_id=1) == "Rejected"
    assert await bench.session.remote_start("  ", connector_id=1) == "Rejected"
    assert (await bench.ctl("unplug", 1))["ok"]
    await bench.status(1, "Available")
    await charge_once(bench.session, bench.ctl, 1)
    assert all(
        m.payload["idTag"] == TAG for m in bench.session.received if m.action == "StartTransaction"
    )
    assert_ledger_whole(bench.csms, 1)


async def test_remote_start_while_the_boot_is_pending_is_rejected(
    csms: CentralSystem, short_dir: Path
) -> None:
    csms.boot_status = "Pending"
    csms.heartbeat_interval = 1  # the charge point boots again a second later
    settings = make_settings(short_dir, csms.url)
    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        await session.wait_for("BootNotification")
        frame = [2, "pending", "RemoteStartTransaction", {"connectorId": 1, "idTag": TAG}]
        reply = await session.call_raw(json.dumps(frame))
        assert reply == [3, "pending", {"status": "Rejected"}]
        csms.boot_status = "Accepted"
        await session.wait_for("BootNotification")
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
        assert [m for m in session.received if m.action == "StartTransaction"] == []
        bench = Bench(settings, service, csms, session, task)
        await charge_once(session, bench.ctl, 1)
        assert_ledger_whole(csms, 1)
        assert session.violations == []
    finally:
        await stop_service(service, task)


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("Reset", {"type": "Warm"}),
        ("ChangeAvailability", {"connectorId": 1, "type": "Sleepy"}),
        ("TriggerMessage", {"requestedMessage": "Everything"}),
        (
            "RemoteStartTransaction",
            {
                "idTag": TAG,
                "connectorId": 1,
                "chargingProfile": {
                    "chargingProfileId": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "Bogus",
                    "chargingProfileKind": "Relative",
                    "chargingSchedule": {
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                    },
                },
            },
        ),
    ],
)
async def test_a_value_outside_an_enumeration_is_a_property_constraint_violation(
    bench: Bench, action: str, payload: dict[str, Any]
) -> None:
    """OCPP-J 1.6: 'syntactically correct but at least one field contains an invalid value'."""
    reply = await bench.session.call_raw(json.dumps([2, "enum", action, payload]))
    assert reply[:3] == [4, "enum", "PropertyConstraintViolation"]
    assert "is not one of" in reply[3]
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)
