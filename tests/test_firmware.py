"""FirmwareManagement end to end: real downloads from and uploads to a real HTTP server."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
import json
import logging
import sqlite3
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fileserver import FileServer, FtpServer, closed_port

from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.firmware import Attempts, LogRing, version_of

from conftest import CP_ID, TAG, make_settings, start_service, stop_service


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


@pytest.fixture
async def charge_point(csms: CentralSystem, short_dir: Path) -> AsyncIterator[Any]:
    """A running service and its CSMS session; `restarted()` waits for the service's restart."""

    class Running:
        def __init__(self) -> None:
            self.settings = make_settings(short_dir, csms.url)
            self.service: Any = None
            self.task: asyncio.Task[None] | None = None
            self.session: ChargePointSession | None = None

        async def start(self) -> ChargePointSession:
            self.service, self.task = await start_service(self.settings)
            self.session = await csms.wait_for_charge_point(CP_ID)
            await self.session.wait_for("BootNotification")
            return self.session

        async def restarted(self) -> None:
            """The service ended by itself to restart (what `hilsim run` turns into a re-exec)."""
            assert self.task is not None
            await asyncio.wait_for(self.task, 10)
            assert self.service.restart_requested

    running = Running()
    yield running
    if running.task is not None and not running.task.done():
        await stop_service(running.service, running.task)


def statuses(session: ChargePointSession, action: str = "FirmwareStatusNotification") -> list[str]:
    return [m.payload["status"] for m in session.received if m.action == action]


async def wait_status(session: ChargePointSession, status: str, action: str = "Firmware") -> None:
    await session.wait_for(f"{action}StatusNotification", lambda p: p["status"] == status)


# -- pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "version"),
    [
        ("http://h/fw/hilsim-2.0.1.bin", "hilsim-2.0.1"),
        ("ftp://u:p@h/images/bench-7.tar.gz", "bench-7"),
        ("https://h/download?id=3", "download"),
        ("http://h/fw/" + "v" * 80 + ".img", "v" * 50),
    ],
)
def test_the_version_is_the_image_name(location: str, version: str) -> None:
    assert version_of(location) == version


@pytest.mark.parametrize(
    ("retries", "interval", "expected"),
    [(None, None, Attempts(3, 60.0)), (0, 5, Attempts(1, 5.0)), (4, -1, Attempts(4, 0.0))],
)
def test_attempts(retries: int | None, interval: int | None, expected: Attempts) -> None:
    assert Attempts.of(retries, interval) == expected


def test_the_log_ring_is_bounded_and_leaves_credentials_out() -> None:
    ring = LogRing(capacity=3)
    logger = logging.getLogger("hilsim.test.ring")
    logger.addHandler(ring)
    logger.setLevel(logging.INFO)
    try:
        for n in range(5):
            logger.info("line %d", n)
        logger.info("> Authorization: Basic c2VjcmV0")
    finally:
        logger.removeHandler(ring)
    lines = ring.lines()
    assert len(lines) == 3
    assert "line 3" in lines[0] and "line 4" in lines[1]
    assert "c2VjcmV0" not in "".join(lines)


# -- UpdateFirmware -------------------------------------------------------------------------


async def test_update_firmware_downloads_installs_and_restarts(
    charge_point: Any, files: FileServer
) -> None:
    files.files["/fw/hilsim-2.0.1.bin"] = b"\x7fELF" + bytes(range(256)) * 64
    session = await charge_point.start()
    assert session.boot is not None and session.boot["firmwareVersion"] == "9.9.9"
    await session.update_firmware(f"{files.url}/fw/hilsim-2.0.1.bin", retries=2, retry_interval=0)
    await wait_status(session, "Installing")
    assert statuses(session) == ["Downloading", "Downloaded", "Installing"]
    await charge_point.restarted()  # the service ended to run the new version
    image = charge_point.settings.storage.database.parent / "firmware.installed"
    assert image.read_bytes() == files.files["/fw/hilsim-2.0.1.bin"]

    session = await charge_point.start()  # what the re-exec does
    assert session.boot is not None and session.boot["firmwareVersion"] == "hilsim-2.0.1"
    await wait_status(session, "Installed")
    snapshot = charge_point.service.charger.snapshot()
    assert snapshot["firmware"]["version"] == "hilsim-2.0.1"
    assert snapshot["firmware"]["status"] == "Idle"
    # Triggered, the status is Idle again: the update is over.
    assert await session.trigger_message("FirmwareStatusNotification") == "Accepted"
    await wait_status(session, "Idle")
    assert files.requests == [("GET", "/fw/hilsim-2.0.1.bin")]


@pytest.mark.parametrize("broken", ["404", "unreachable"])
async def test_a_download_that_fails_is_retried_then_reported(
    charge_point: Any, files: FileServer, broken: str, refused_port: int
) -> None:
    session = await charge_point.start()
    if broken == "404":
        location = f"{files.url}/fw/missing.bin"
    else:
        location = f"http://127.0.0.1:{refused_port}/fw/gone.bin"
    await session.update_firmware(location, retries=3, retry_interval=0)
    await wait_status(session, "DownloadFailed")
    assert statuses(session) == ["Downloading", "DownloadFailed"]
    if broken == "404":
        assert files.requests == [("GET", "/fw/missing.bin")] * 3
    assert charge_point.service.charger.snapshot()["firmware"]["version"] == "9.9.9"
    assert not charge_point.task.done()  # no restart for a failed update


async def test_an_empty_image_fails_to_install(charge_point: Any, files: FileServer) -> None:
    files.files["/fw/empty.bin"] = b""
    session = await charge_point.start()
    await session.update_firmware(f"{files.url}/fw/empty.bin", retries=1, retry_interval=0)
    await wait_status(session, "InstallationFailed")
    assert statuses(session) == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert charge_point.service.charger.snapshot()["firmware"]["version"] == "9.9.9"
    assert not charge_point.task.done()


async def test_installing_waits_for_the_transaction_to_end(
    charge_point: Any, files: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    files.files["/fw/v3.bin"] = b"image"
    session = await charge_point.start()
    await charge_point.service.command({"cmd": "plug", "connector": 1})
    await charge_point.service.command({"cmd": "tag", "connector": 1, "id_tag": TAG})
    await session.wait_for("StartTransaction")
    await session.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Charging"
    )
    waiting = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waits for the running transactions" in record.getMessage():
                waiting.set()

    handler = Watch()
    logging.getLogger("hilsim.firmware").addHandler(handler)
    try:
        await session.update_firmware(f"{files.url}/fw/v3.bin", retries=1, retry_interval=0)
        await wait_status(session, "Downloaded")
        await asyncio.wait_for(waiting.wait(), 10)
    finally:
        logging.getLogger("hilsim.firmware").removeHandler(handler)
    assert "Installing" not in statuses(session)
    tx = charge_point.service.charger.transaction_id(1)
    assert await session.remote_stop(tx) == "Accepted"
    await wait_status(session, "Installing")
    stop = await session.wait_for("StopTransaction")
    assert stop["reason"] == "Remote"  # ended by the CSMS, not cut short by the install
    await charge_point.restarted()


# -- GetDiagnostics -------------------------------------------------------------------------


def unpack(data: bytes, tmp: Path) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


async def test_get_diagnostics_puts_an_archive_of_the_log_and_the_database(
    charge_point: Any, files: FileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the ring holds what the log holds, at its level
    session = await charge_point.start()
    secret = "c0ffee" * 6
    assert await session.change_configuration("AuthorizationKey", secret) == "Accepted"
    assert await session.change_configuration("HeartbeatInterval", "77") == "Accepted"
    name = await session.get_diagnostics(f"{files.url}/upload/", retries=1, retry_interval=0)
    assert (
        name is not None and name.startswith(f"diagnostics-{CP_ID}-") and name.endswith(".tar.gz")
    )
    await wait_status(session, "Uploaded", "Diagnostics")
    assert statuses(session, "DiagnosticsStatusNotification") == ["Uploading", "Uploaded"]
    [upload] = files.uploads
    assert (upload.method, upload.path) == ("PUT", f"/upload/{name}")
    members = unpack(upload.body, tmp_path)
    assert set(members) == {"hilsim.db", "log.txt", "info.json"}
    log_text = members["log.txt"].decode()
    assert "BootNotification accepted by the CSMS" in log_text
    database = tmp_path / "copy.db"
    database.write_bytes(members["hilsim.db"])
    with sqlite3.connect(database) as db:
        keys = dict(db.execute("SELECT name, value FROM configuration_key"))
    assert keys["HeartbeatInterval"] == "77"
    assert "AuthorizationKey" not in keys
    info = json.loads(members["info.json"])
    assert info["charge_point"] == CP_ID and info["firmware_version"] == "9.9.9"
    for content in members.values():
        assert secret.encode() not in content and secret.upper().encode() not in content
    assert await session.trigger_message("DiagnosticsStatusNotification") == "Accepted"
    await wait_status(session, "Idle", "Diagnostics")


async def test_get_diagnostics_posts_a_form_where_put_is_not_allowed(
    charge_point: Any, files: FileServer, tmp_path: Path
) -> None:
    files.no_put.add("/form")
    session = await charge_point.start()
    name = await session.get_diagnostics(f"{files.url}/form", retries=1, retry_interval=0)
    await wait_status(session, "Uploaded", "Diagnostics")
    assert [(r[0], r[1]) for r in files.requests] == [("PUT", "/form"), ("POST", "/form")]
    [upload] = files.uploads
    assert upload.content_type.startswith("multipart/form-data; boundary=")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {upload.content_type}\r\n\r\n".encode() + upload.body
    )
    [part] = list(message.iter_parts())
    assert part.get_filename() == name and part.get_param("name", header="content-disposition")
    assert set(unpack(part.get_payload(decode=True), tmp_path)) == {
        "hilsim.db",
        "log.txt",
        "info.json",
    }


@pytest.mark.parametrize("broken", ["500", "unreachable"])
async def test_a_failed_upload_is_retried_then_reported(
    charge_point: Any, files: FileServer, broken: str, refused_port: int
) -> None:
    session = await charge_point.start()
    if broken == "500":
        files.fail["/upload/diag.tar.gz"] = 500
        location = f"{files.url}/upload/diag.tar.gz"
    else:
        location = f"http://127.0.0.1:{refused_port}/upload/"
    await session.get_diagnostics(location, retries=2, retry_interval=0)
    await wait_status(session, "UploadFailed", "Diagnostics")
    assert statuses(session, "DiagnosticsStatusNotification") == ["Uploading", "UploadFailed"]
    if broken == "500":
        assert files.requests == [("PUT", "/upload/diag.tar.gz")] * 2
    assert files.uploads == []


# -- FTP ----------------------------------------------------------------------------------------


async def test_firmware_and_diagnostics_over_ftp(charge_point: Any, tmp_path: Path) -> None:
    (tmp_path / "fw").mkdir()
    (tmp_path / "uploads").mkdir()
    (tmp_path / "fw" / "bench-3.img").write_bytes(b"image over ftp")
    with FtpServer(tmp_path) as ftp:
        session = await charge_point.start()
        name = await session.get_diagnostics(f"{ftp.url}/uploads/", retries=1, retry_interval=0)
        await wait_status(session, "Uploaded", "Diagnostics")
        assert name is not None
        uploaded = (tmp_path / "uploads" / name).read_bytes()
        assert set(unpack(uploaded, tmp_path)) == {"hilsim.db", "log.txt", "info.json"}
        await session.update_firmware(f"{ftp.url}/fw/bench-3.img", retries=1, retry_interval=0)
        await wait_status(session, "Installing")
        await charge_point.restarted()
    session = await charge_point.start()
    assert session.boot is not None and session.boot["firmwareVersion"] == "bench-3"
    await wait_status(session, "Installed")


# -- transfers on their own: what each failure says ----------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "ftp"])
def test_an_image_over_the_size_limit_is_refused(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hilsim import transfer

    monkeypatch.setattr(transfer, "MAX_IMAGE_BYTES", 10)
    (tmp_path / "big.img").write_bytes(b"x" * 11)
    (tmp_path / "fits.img").write_bytes(b"x" * 10)
    files = {"/big.img": b"x" * 11, "/fits.img": b"x" * 10}
    with FileServer(files=files) as http, FtpServer(tmp_path) as ftp:
        base = http.url if scheme == "http" else ftp.url
        assert transfer.download(f"{base}/fits.img", tmp_path / "got") == 10
        with pytest.raises(transfer.TransferError, match=r"^larger than 10 bytes$"):
            transfer.download(f"{base}/big.img", tmp_path / "got")


def test_transfer_failures_are_one_line_each(tmp_path: Path) -> None:
    from hilsim.transfer import TransferError, download, upload

    with FileServer() as http, pytest.raises(TransferError, match=r"^HTTP 404 "):
        download(f"{http.url}/missing.img", tmp_path / "got")
    with closed_port() as port, pytest.raises(TransferError, match=r"^FTP: "):
        download(f"ftp://127.0.0.1:{port}/x.img", tmp_path / "got")
    with pytest.raises(TransferError, match=r"^unsupported location scheme 'sftp' \(http"):
        download("sftp://h/x.img", tmp_path / "got")
    with pytest.raises(TransferError, match=r"^unsupported location scheme 'file'"):
        upload("file:///tmp/", "diag.tar.gz", b"data")
