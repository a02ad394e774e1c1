"""OCPP 2.0.1 firmware and logs (L01/L02 UpdateFirmware, N01 GetLog) through the real wire.

A `hilsim run`-style service with ``ocpp_version = "2.0.1"`` against the scripted 2.0.1 CSMS
(every frame both ways checked against the official schemas, strictly), real downloads from and
uploads to a real HTTP server (tests/fileserver.py), and the restart a firmware install makes,
taken in-process the way tests/test_firmware.py takes 1.6's: the service ends asking for a
restart, and starting it again with the boot reason `hilsim run` would pass across the exec is
what the re-exec does.
"""

from __future__ import annotations

import asyncio
import io
import logging
import tarfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fileserver import FileServer
from scripted_csms201 import CALLRESULT, ScriptedCsms201, now

from hilsim.clock import utc_iso
from hilsim.restart import BOOT_REASON_VARIABLE
from hilsim.service import Service

from conftest import make_settings, start_service, stop_service

VERSION = 'ocpp_version = "2.0.1"'
IMAGE = b"\x7fELF" + bytes(range(256)) * 16


def ahead(**delta: float) -> str:
    moment = datetime.now(UTC) + timedelta(**delta)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@pytest.fixture
async def csms() -> AsyncIterator[ScriptedCsms201]:  # type: ignore[override]
    async with ScriptedCsms201() as central:
        yield central
        assert central.violations() == []


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


class ChargePoint:
    """The service under test; `restarted()` waits for the restart an install asks for."""

    def __init__(self, csms: ScriptedCsms201, directory: Path) -> None:
        self.csms = csms
        self.settings = make_settings(directory, csms.url, extra_charge_point=VERSION)
        self.service: Service | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Started and connected: its last EVSE announced (after frame ``mark``)."""
        mark = self.csms.mark()
        self.service, self.task = await start_service(self.settings)
        await self.csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2, since=mark)

    async def restarted(self) -> str:
        """The service ended by itself to restart; the boot reason the re-exec carries."""
        assert self.service is not None and self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), 10)
        assert self.service.restart_requested
        return self.service.boot_reason_after_restart

    async def update(self, request_id: int, location: str, **extra: Any) -> dict[str, Any]:
        firmware = {"location": location, "retrieveDateTime": extra.pop("retrieve", now())}
        firmware.update(extra.pop("firmware", {}))
        payload = {"requestId": request_id, "firmware": firmware, **extra}
        return await self.csms.result("UpdateFirmware", payload)

    def firmware_statuses(self, since: int = 0) -> list[tuple[str, int | None]]:
        return [
            (p["status"], p.get("requestId"))
            for p in self.csms.calls("FirmwareStatusNotification", since)
        ]

    def log_statuses(self, since: int = 0) -> list[tuple[str, int | None]]:
        return [
            (p["status"], p.get("requestId"))
            for p in self.csms.calls("LogStatusNotification", since)
        ]


@pytest.fixture
async def cp(csms: ScriptedCsms201, short_dir: Path) -> AsyncIterator[ChargePoint]:
    running = ChargePoint(csms, short_dir)
    await running.start()
    yield running
    if running.task is not None and not running.task.done():
        assert running.service is not None
        await stop_service(running.service, running.task)


async def firmware_status(cp: ChargePoint, status: str, since: int = 0) -> dict[str, Any]:
    [found] = await cp.csms.wait_for(
        "FirmwareStatusNotification", lambda p: p["status"] == status, since=since, timeout=10
    )
    return found


async def log_status(cp: ChargePoint, status: str, since: int = 0) -> dict[str, Any]:
    [found] = await cp.csms.wait_for(
        "LogStatusNotification", lambda p: p["status"] == status, since=since, timeout=10
    )
    return found


async def trigger(cp: ChargePoint, message: str) -> dict[str, Any]:
    mark = cp.csms.mark()
    answer = await cp.csms.result("TriggerMessage", {"requestedMessage": message})
    assert answer == {"status": "Accepted"}
    [sent] = await cp.csms.wait_for(message, since=mark)
    return sent


# -- UpdateFirmware -------------------------------------------------------------------------


async def test_update_firmware_reports_every_status_with_its_request_id_across_the_restart(
    cp: ChargePoint,
    files: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "hilsim.ocpp201.firmware_handlers")
    files.files["/fw/hilsim-3.1.bin"] = IMAGE
    signed = {"signature": "c2lnbmF0dXJl", "signingCertificate": "-----BEGIN CERTIFICATE-----"}
    answer = await cp.update(
        41, f"{files.url}/fw/hilsim-3.1.bin", retries=2, retryInterval=0, firmware=signed
    )
    assert answer == {"status": "Accepted"}
    await firmware_status(cp, "InstallRebooting")
    assert cp.firmware_statuses() == [
        ("Downloading", 41),
        ("Downloaded", 41),
        ("Installing", 41),
        ("InstallRebooting", 41),
    ]  # and never SignatureVerified: the signature is not checked, and the log says so
    assert "signature NOT verified" in caplog.text
    assert await cp.restarted() == "FirmwareUpdate"
    image = cp.settings.storage.database.parent / "firmware.installed"
    assert image.read_bytes() == IMAGE

    # What the re-exec does: the same configuration, the reason passed in the environment.
    monkeypatch.setenv(BOOT_REASON_VARIABLE, "FirmwareUpdate")
    mark = cp.csms.mark()
    await cp.start()
    [boot] = cp.csms.calls("BootNotification", mark)
    assert boot["reason"] == "FirmwareUpdate"
    assert boot["chargingStation"]["firmwareVersion"] == "hilsim-3.1"
    installed = await firmware_status(cp, "Installed", since=mark)
    assert installed == {"status": "Installed", "requestId": 41}
    # Running the new image is a critical security event, after the new run's startup.
    [updated] = await cp.csms.wait_for(
        "SecurityEventNotification", lambda p: p["type"] == "FirmwareUpdated", since=mark
    )
    assert updated["techInfo"] == "hilsim-3.1 installed (UpdateFirmware 41)"
    kinds = [p["type"] for p in cp.csms.calls("SecurityEventNotification", mark)]
    assert kinds.index("StartupOfTheDevice") < kinds.index("FirmwareUpdated")
    # The update is over: a triggered notification says Idle, with no requestId.
    assert await trigger(cp, "FirmwareStatusNotification") == {"status": "Idle"}
    assert files.requests == [("GET", "/fw/hilsim-3.1.bin")]


@pytest.mark.parametrize("broken", ["404", "unreachable"])
async def test_a_download_that_fails_is_retried_then_download_failed(
    cp: ChargePoint, files: FileServer, broken: str, refused_port: int
) -> None:
    if broken == "404":
        location = f"{files.url}/fw/missing.bin"
    else:
        location = f"http://127.0.0.1:{refused_port}/fw/gone.bin"
    assert await cp.update(5, location, retries=3, retryInterval=0) == {"status": "Accepted"}
    await firmware_status(cp, "DownloadFailed")
    assert cp.firmware_statuses() == [("Downloading", 5), ("DownloadFailed", 5)]
    if broken == "404":
        assert files.requests == [("GET", "/fw/missing.bin")] * 3
    assert cp.task is not None and not cp.task.done()  # no restart for a failed update
    assert await trigger(cp, "FirmwareStatusNotification") == {"status": "Idle"}


async def test_a_retrieve_time_a_moment_ahead_of_the_charge_points_clock_is_now(
    cp: ChargePoint, files: FileServer
) -> None:
    # An unsynchronised charge point keeps the CSMS's time from a whole-second currentTime, so a
    # CSMS asking for "now" can be up to a second ahead of it: that is now, not a schedule.
    files.files["/fw/empty.bin"] = b""
    assert cp.service is not None and cp.service.charger is not None
    moment = cp.service.charger.wall.now() + timedelta(milliseconds=600)
    answer = await cp.update(7, f"{files.url}/fw/empty.bin", retrieve=utc_iso(moment), retries=1)
    assert answer == {"status": "Accepted"}
    await firmware_status(cp, "InstallationFailed")
    assert [status for status, _ in cp.firmware_statuses()] == [
        "Downloading",
        "Downloaded",
        "Installing",
        "InstallationFailed",
    ]


async def test_an_empty_image_fails_to_install(cp: ChargePoint, files: FileServer) -> None:
    files.files["/fw/empty.bin"] = b""
    assert await cp.update(6, f"{files.url}/fw/empty.bin", retries=1) == {"status": "Accepted"}
    await firmware_status(cp, "InstallationFailed")
    assert cp.firmware_statuses() == [
        ("Downloading", 6),
        ("Downloaded", 6),
        ("Installing", 6),
        ("InstallationFailed", 6),
    ]
    assert cp.task is not None and not cp.task.done()


async def test_a_scheduled_update_is_replaced_accepted_canceled(
    cp: ChargePoint, files: FileServer
) -> None:
    files.files["/fw/later.bin"] = IMAGE
    later = f"{files.url}/fw/later.bin"
    assert await cp.update(1, later, retrieve=ahead(hours=1)) == {"status": "Accepted"}
    assert await firmware_status(cp, "DownloadScheduled") == {
        "status": "DownloadScheduled",
        "requestId": 1,
    }
    # Triggered, the status of the update in progress, with its requestId.
    assert await trigger(cp, "FirmwareStatusNotification") == {
        "status": "DownloadScheduled",
        "requestId": 1,
    }
    assert files.requests == []  # nothing fetched before its time

    # Downloaded now, installed only at installDateTime: InstallScheduled.
    install = {"installDateTime": ahead(hours=2)}
    answer = await cp.update(2, later, retries=1, firmware=install)
    assert answer == {"status": "AcceptedCanceled"}
    await firmware_status(cp, "InstallScheduled")

    mark = cp.csms.mark()
    answer = await cp.update(3, f"{files.url}/fw/missing.bin", retries=1)
    assert answer == {"status": "AcceptedCanceled"}
    await firmware_status(cp, "DownloadFailed", since=mark)
    assert cp.firmware_statuses() == [
        ("DownloadScheduled", 1),
        ("DownloadScheduled", 1),  # the triggered one
        ("Downloading", 2),
        ("Downloaded", 2),
        ("InstallScheduled", 2),
        ("Downloading", 3),
        ("DownloadFailed", 3),
    ]
    assert files.requests == [("GET", "/fw/later.bin"), ("GET", "/fw/missing.bin")]
    assert cp.task is not None and not cp.task.done()


@pytest.mark.parametrize(
    ("request_id", "location", "extra", "reason"),
    [
        (1, "sftp://127.0.0.1/fw/x.bin", {}, "InvalidURL"),
        (2, "file:///etc/passwd", {}, "InvalidURL"),
        (3, "http:///fw/x.bin", {}, "InvalidURL"),
        (4, "http://127.0.0.1:99999/fw/x.bin", {}, "InvalidURL"),
        (5, "http://127.0.0.1/fw/x.bin", {"retries": 1000}, "InvalidValue"),
        (6, "http://127.0.0.1/fw/x.bin", {"retryInterval": -1}, "InvalidValue"),
        (7, "http://127.0.0.1/fw/x.bin", {"retrieve": "2999-01-01T00:00:00Z"}, "InvalidValue"),
        (2**31, "http://127.0.0.1/fw/x.bin", {}, "InvalidValue"),
    ],
)
async def test_an_update_that_cannot_succeed_is_rejected_with_a_reason(
    cp: ChargePoint, request_id: int, location: str, extra: dict[str, Any], reason: str
) -> None:
    answer = await cp.update(request_id, location, **extra)
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == reason
    assert answer["statusInfo"]["additionalInfo"]
    # Nothing was started: triggered, the firmware is Idle, and no other status was sent.
    assert await trigger(cp, "FirmwareStatusNotification") == {"status": "Idle"}
    assert cp.firmware_statuses() == [("Idle", None)]


# -- GetLog ---------------------------------------------------------------------------------


def unpack(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


async def test_get_log_uploads_the_diagnostics_archive_with_its_request_id(
    cp: ChargePoint, files: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the ring holds what the log holds, at its level
    payload = {
        "logType": "DiagnosticsLog",
        "requestId": 17,
        "retries": 1,
        "retryInterval": 0,
        "log": {"remoteLocation": f"{files.url}/upload/", "oldestTimestamp": ahead(hours=-1)},
    }
    answer = await cp.csms.result("GetLog", payload)
    assert answer["status"] == "Accepted"
    name = answer["filename"]
    assert name.startswith("diagnostics-") and name.endswith(".tar.gz")
    await log_status(cp, "Uploaded")
    assert cp.log_statuses() == [("Uploading", 17), ("Uploaded", 17)]
    [upload] = files.uploads
    assert (upload.method, upload.path) == ("PUT", f"/upload/{name}")
    members = unpack(upload.body)
    assert set(members) == {"hilsim.db", "log.txt", "info.json"}
    assert b"GetLog 17" in members["log.txt"]
    assert await trigger(cp, "LogStatusNotification") == {"status": "Idle"}


async def test_a_failed_upload_is_upload_failure_with_its_request_id(
    cp: ChargePoint, files: FileServer
) -> None:
    files.fail["/upload/diag.tar.gz"] = 500
    payload = {
        "logType": "DiagnosticsLog",
        "requestId": 18,
        "retries": 2,
        "retryInterval": 0,
        "log": {"remoteLocation": f"{files.url}/upload/diag.tar.gz"},
    }
    assert (await cp.csms.result("GetLog", payload))["status"] == "Accepted"
    await log_status(cp, "UploadFailure")
    assert cp.log_statuses() == [("Uploading", 18), ("UploadFailure", 18)]
    assert files.requests == [("PUT", "/upload/diag.tar.gz")] * 2
    assert files.uploads == []


@pytest.mark.parametrize(
    ("log_type", "location", "reason"),
    [
        ("SecurityLog", "http://127.0.0.1/upload/", "UnsupportedLogType"),
        ("DiagnosticsLog", "scp://127.0.0.1/upload/", "InvalidURL"),
        ("DiagnosticsLog", "upload/", "InvalidURL"),
    ],
)
async def test_a_log_that_cannot_be_uploaded_is_rejected(
    cp: ChargePoint, log_type: str, location: str, reason: str
) -> None:
    payload = {"logType": log_type, "requestId": 9, "log": {"remoteLocation": location}}
    answer = await cp.csms.call("GetLog", payload)
    assert answer[0] == CALLRESULT
    assert answer[2]["status"] == "Rejected"
    assert answer[2]["statusInfo"]["reasonCode"] == reason
    assert await trigger(cp, "LogStatusNotification") == {"status": "Idle"}
    assert cp.log_statuses() == [("Idle", None)]
