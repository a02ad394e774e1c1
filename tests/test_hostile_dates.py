"""A CSMS that sends dates no charge point can live with: year 9999, year 1, far-off offsets.

Python's datetime ends at 9999-12-31 and starts at 0001-01-01, so ``9999-12-31T23:59:59-05:00``
(in UTC already year 10000) parses but cannot be converted to UTC, printed as a stamp or moved by
any timedelta; ``0001-01-01T00:00:00+05:00`` likewise at the other end. Each such date is played
by the built-in CSMS over a real websocket, in every field the CSMS sets, against the real
service: the charge point must answer, keep charging (a later plug and tag still give a
StartTransaction and a StopTransaction, none lost or doubled) and, where the date reaches SQLite,
start again on the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_hostile_csms import LogWatch, assert_ledger_whole, charge_once, watch  # noqa: F401

from hilsim.clock import DATE_RANGE, utc_iso
from hilsim.csms import CentralSystem
from hilsim.ocpp.validation import Schemas
from hilsim.service import Service

from conftest import CP_ID, TAG, Bench, make_settings, start_service, stop_service

#: In UTC this is already in year 10000: it parses, and nothing else can be done with it.
BEYOND = "9999-12-31T23:59:59-05:00"
#: The same at the other end: in UTC it is before year 1.
BEFORE = "0001-01-01T00:00:00+05:00"
#: The "never expires" many CSMSs really send.
NEVER = "9999-12-31T23:59:59.999Z"

EARLIEST, LATEST = (utc_iso(bound) for bound in DATE_RANGE)


class Restartable:
    """One charge point on one database, stopped and started again as often as a test wants."""

    def __init__(self, csms: CentralSystem, directory: Path) -> None:
        self.csms = csms
        self.settings = make_settings(directory, csms.url)
        self.running: tuple[Service, asyncio.Task[None]] | None = None

    async def start(self) -> Bench:
        service, task = await start_service(self.settings)
        self.running = (service, task)
        session = await self.csms.wait_for_charge_point(CP_ID, timeout=5)
        bench = Bench(self.settings, service, self.csms, session, task)
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
        return bench

    async def restart(self) -> Bench:
        await self.stop()
        return await self.start()

    async def stop(self) -> None:
        if self.running is not None:
            service, task = self.running
            self.running = None
            await stop_service(service, task)
            assert task.done() and not task.cancelled() and task.exception() is None

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.settings.storage.database)) as db:
            return db.execute(query).fetchall()


@pytest.fixture
async def point(csms: CentralSystem, short_dir: Path) -> AsyncIterator[Restartable]:
    point = Restartable(csms, short_dir)
    try:
        yield point
    finally:
        await point.stop()


async def call(bench: Bench, action: str, payload: dict[str, Any]) -> list[Any]:
    return await bench.session.call_raw(json.dumps([2, action, action, payload]))


async def status_works(bench: Bench) -> dict[str, Any]:
    reply = await bench.ctl("status")
    assert reply["ok"], reply
    return dict(reply["result"])


# -- ReserveNow ---------------------------------------------------------------------------------


@pytest.mark.parametrize("expiry", [BEYOND, NEVER])
async def test_a_reservation_until_year_9999_holds_until_cancelled(
    point: Restartable, expiry: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "hilsim.ocpp.validation")
    bench = await point.start()
    reserve = {"connectorId": 1, "expiryDate": expiry, "idTag": TAG, "reservationId": 7}
    assert await call(bench, "ReserveNow", reserve) == [3, "ReserveNow", {"status": "Accepted"}]
    await bench.status(1, "Reserved")
    taken = f"ReserveNow expiryDate {expiry} is after 9000: taken as {LATEST} (never reached)"
    assert taken in caplog.messages
    [shown] = (await status_works(bench))["reservations"]
    assert shown["expiry_date"] == LATEST
    assert point.rows("SELECT expiry_date FROM reservation") == [(LATEST,)]
    bench = await point.restart()
    await bench.status(1, "Reserved")
    assert [r["reservation_id"] for r in (await status_works(bench))["reservations"]] == [7]
    cancel = await call(bench, "CancelReservation", {"reservationId": 7})
    assert cancel[2] == {"status": "Accepted"}
    await bench.status(1, "Available")
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


async def test_a_reservation_that_expired_in_year_1_is_rejected(point: Restartable) -> None:
    bench = await point.start()
    reserve = {"connectorId": 1, "expiryDate": BEFORE, "idTag": TAG, "reservationId": 8}
    assert await call(bench, "ReserveNow", reserve) == [3, "ReserveNow", {"status": "Rejected"}]
    assert point.rows("SELECT * FROM reservation") == []
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


# -- idTagInfo.expiryDate: the authorization cache and the local list --------------------------


def authorizations(bench: Bench) -> int:
    return len([m for m in bench.session.received if m.action == "Authorize"])


@pytest.mark.parametrize(("expiry", "cached"), [(BEYOND, LATEST), (NEVER, LATEST)])
async def test_an_id_tag_valid_until_year_9999_is_cached_as_never_expiring(
    point: Restartable, expiry: str, cached: str
) -> None:
    """Authorize, StartTransaction and StopTransaction all answer with that expiryDate."""
    point.csms.id_tag_details[TAG] = {"expiryDate": expiry}
    bench = await point.start()
    await charge_once(bench.session, bench.ctl, 1)
    assert point.rows("SELECT id_tag, expiry_date FROM authorization_cache") == [(TAG, cached)]
    bench = await point.restart()
    await status_works(bench)
    # Valid in the cache: with LocalPreAuthorize it starts without asking the CSMS.
    assert await bench.session.change_configuration("LocalPreAuthorize", "true") == "Accepted"
    await charge_once(bench.session, bench.ctl, 2)
    assert authorizations(bench) == 0
    assert_ledger_whole(bench.csms, 2)


async def test_an_id_tag_that_expired_in_year_1_is_cached_as_expired(point: Restartable) -> None:
    point.csms.id_tag_details[TAG] = {"expiryDate": BEFORE}
    bench = await point.start()
    await charge_once(bench.session, bench.ctl, 1)  # the CSMS says Accepted, so it starts
    assert point.rows("SELECT id_tag, expiry_date FROM authorization_cache") == [(TAG, EARLIEST)]
    bench = await point.restart()
    # Expired in the cache: even with LocalPreAuthorize the CSMS is asked.
    assert await bench.session.change_configuration("LocalPreAuthorize", "true") == "Accepted"
    await charge_once(bench.session, bench.ctl, 2)
    assert authorizations(bench) == 1
    assert_ledger_whole(bench.csms, 2)


async def test_a_local_list_with_dates_beyond_datetime_is_taken_and_survives_a_restart(
    point: Restartable,
) -> None:
    bench = await point.start()
    assert await bench.session.change_configuration("LocalAuthListEnabled", "true") == "Accepted"
    entries = [
        {"idTag": "BEYOND", "idTagInfo": {"status": "Accepted", "expiryDate": BEYOND}},
        {"idTag": "NEVER", "idTagInfo": {"status": "Accepted", "expiryDate": NEVER}},
        {"idTag": "BEFORE", "idTagInfo": {"status": "Accepted", "expiryDate": BEFORE}},
    ]
    update = {"listVersion": 3, "updateType": "Full", "localAuthorizationList": entries}
    assert (await call(bench, "SendLocalList", update))[2] == {"status": "Accepted"}
    stored = dict(point.rows("SELECT id_tag, expiry_date FROM local_auth_list"))
    assert stored == {"BEYOND": LATEST, "NEVER": LATEST, "BEFORE": EARLIEST}
    bench = await point.restart()
    assert (await call(bench, "GetLocalListVersion", {}))[2] == {"listVersion": 3}
    await status_works(bench)
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


# -- SetChargingProfile -------------------------------------------------------------------------


def profile(
    start_schedule: str | None = "2026-01-01T00:00:00Z",
    valid_from: str | None = None,
    valid_to: str | None = None,
    profile_id: int = 5,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
    }
    if start_schedule is not None:
        schedule["startSchedule"] = start_schedule
    data: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
    }
    if valid_from is not None:
        data["validFrom"] = valid_from
    if valid_to is not None:
        data["validTo"] = valid_to
    return {"connectorId": 1, "csChargingProfiles": data}


async def test_a_profile_valid_from_year_1_to_year_9999_is_valid_always(
    point: Restartable,
) -> None:
    bench = await point.start()
    reply = await call(bench, "SetChargingProfile", profile(valid_from=BEFORE, valid_to=BEYOND))
    assert reply[2] == {"status": "Accepted"}
    composite = await call(
        bench, "GetCompositeSchedule", {"connectorId": 1, "duration": 3600, "chargingRateUnit": "A"}
    )
    assert composite[2]["status"] == "Accepted"
    assert composite[2]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 16.0
    bench = await point.restart()
    await status_works(bench)
    composite = await call(bench, "GetCompositeSchedule", {"connectorId": 1, "duration": 60})
    assert composite[2]["status"] == "Accepted"
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


@pytest.mark.parametrize("start", [BEYOND, NEVER, BEFORE])
async def test_a_schedule_starting_beyond_the_dates_a_charger_lives_is_refused(
    point: Restartable, watch: LogWatch, start: str  # noqa: F811
) -> None:
    bench = await point.start()
    reply = await call(bench, "SetChargingProfile", profile(start_schedule=start))
    assert reply[2] == "PropertyConstraintViolation"
    assert "csChargingProfiles/chargingSchedule/startSchedule" in reply[3]
    line = await watch.wait("invalid SetChargingProfile")
    assert start in line
    assert point.rows("SELECT * FROM charging_profile") == []
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


async def test_a_remote_start_whose_profile_starts_in_year_10000_is_refused(
    point: Restartable,
) -> None:
    bench = await point.start()
    charging_profile = profile(start_schedule=BEYOND)["csChargingProfiles"]
    charging_profile["chargingProfilePurpose"] = "TxProfile"
    request = {"connectorId": 1, "idTag": TAG, "chargingProfile": charging_profile}
    reply = await call(bench, "RemoteStartTransaction", request)
    assert reply[2] == "PropertyConstraintViolation"
    assert "chargingProfile/chargingSchedule/startSchedule" in reply[3]
    assert [m for m in bench.session.received if m.action == "StartTransaction"] == []
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


# -- GetDiagnostics and UpdateFirmware ----------------------------------------------------------

NOWHERE = "http://127.0.0.1:9/"  # the discard port: nothing listens


async def notification(bench: Bench, action: str, status: str) -> None:
    await bench.session.wait_for(action, lambda p: p["status"] == status, timeout=20)


async def test_diagnostics_from_year_1_to_year_9999_are_all_there_is(point: Restartable) -> None:
    bench = await point.start()
    request = {"location": NOWHERE, "retries": 1, "startTime": BEFORE, "stopTime": BEYOND}
    reply = await call(bench, "GetDiagnostics", request)
    assert reply[0] == 3 and reply[2]["fileName"].endswith(".tar.gz")
    await notification(bench, "DiagnosticsStatusNotification", "UploadFailed")
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


async def test_firmware_retrieved_in_year_1_is_retrieved_now(point: Restartable) -> None:
    bench = await point.start()
    request = {"location": f"{NOWHERE}fw.bin", "retries": 1, "retrieveDate": BEFORE}
    assert await call(bench, "UpdateFirmware", request) == [3, "UpdateFirmware", {}]
    await notification(bench, "FirmwareStatusNotification", "DownloadFailed")
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


async def test_firmware_retrieved_in_year_9999_waits(point: Restartable) -> None:
    bench = await point.start()
    request = {"location": f"{NOWHERE}fw.bin", "retries": 1, "retrieveDate": BEYOND}
    assert await call(bench, "UpdateFirmware", request) == [3, "UpdateFirmware", {}]
    await status_works(bench)
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)
    assert [m for m in bench.session.received if m.action == "FirmwareStatusNotification"] == []
    assert not bench.task.done()


# -- a database written before the range was held ----------------------------------------------


async def test_a_reservation_stored_until_year_10000_by_an_older_release_does_not_break_status(
    point: Restartable,
) -> None:
    """Releases before this one stored the expiryDate as sent; the row must not poison status."""
    bench = await point.start()
    await point.stop()
    with contextlib.closing(sqlite3.connect(point.settings.storage.database)) as db, db:
        db.execute(
            "INSERT INTO reservation VALUES (9, 1, ?, NULL, ?, '2026-12-01T00:00:00Z')",
            (TAG, BEYOND),
        )
    bench = await point.start()
    await bench.status(1, "Reserved")
    [shown] = (await status_works(bench))["reservations"]
    assert shown["reservation_id"] == 9 and shown["expiry_date"] == BEYOND
    assert (await call(bench, "CancelReservation", {"reservationId": 9}))[2] == {
        "status": "Accepted"
    }
    await bench.status(1, "Available")
    await charge_once(bench.session, bench.ctl, 1)
    assert_ledger_whole(bench.csms, 1)


# -- the schema walk itself, on the library's schemas -------------------------------------------


@pytest.mark.parametrize(
    ("action", "payload", "where"),
    [
        (
            "GetLog",  # date-times behind a $ref (security extension)
            {
                "logType": "DiagnosticsLog",
                "requestId": 1,
                "log": {"remoteLocation": "ftp://x/", "oldestTimestamp": BEFORE},
            },
            ("log", "oldestTimestamp"),
        ),
        (
            "SignedUpdateFirmware",
            {
                "requestId": 1,
                "firmware": {
                    "location": "ftp://x/fw",
                    "retrieveDateTime": BEYOND,
                    "signingCertificate": "c",
                    "signature": "s",
                },
            },
            ("firmware", "retrieveDateTime"),
        ),
        ("GetDiagnostics", {"location": "ftp://x/", "stopTime": NEVER}, ("stopTime",)),
    ],
)
def test_every_date_time_of_a_schema_is_found_and_held(
    action: str, payload: dict[str, Any], where: tuple[str, ...]
) -> None:
    schemas = Schemas()
    schemas.check_call(action, payload)
    schemas.hold_dates_of_call(action, payload)
    value: Any = payload
    for name in where:
        value = value[name]
    assert value in (EARLIEST, LATEST)


def test_dates_in_range_and_unreadable_ones_are_left_as_sent() -> None:
    entries = [
        {"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": "2030-01-01T05:00+05:00"}},
        {"idTag": "B", "idTagInfo": {"status": "Accepted", "expiryDate": "tomorrow"}},
    ]
    payload = {"listVersion": 1, "updateType": "Full", "localAuthorizationList": entries}
    expected = json.loads(json.dumps(payload))
    Schemas().hold_dates_of_call("SendLocalList", payload)
    assert payload == expected


def test_the_clock_judges_current_time_itself() -> None:
    payload = {"status": "Accepted", "interval": 60, "currentTime": BEYOND}
    Schemas().hold_dates_of_result("BootNotification", payload)
    assert payload["currentTime"] == BEYOND
