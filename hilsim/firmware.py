"""FirmwareManagement, simulated honestly: real downloads, real uploads, a real restart.

UpdateFirmware fetches the file named by its location (http://, https:// or ftp://, the CSMS's
retries and retryInterval honoured) into the state directory, and sends the whole
FirmwareStatusNotification sequence: Downloading, Downloaded, Installing, then, once the program
has started afresh with the new version, Installed (or DownloadFailed / InstallationFailed). The
"installation" records the new version (the file's name without its extension, as firmware
images are usually named) in SQLite; BootNotification reports it from then on. An empty file
is not an image: InstallationFailed. Installing waits until no transaction runs, as a real
charger does (and as OCPP 2.0.1 later required), then restarts the service the way Reset Hard
does.

GetDiagnostics uploads a tar.gz holding the recent log lines (an in-memory ring, `LogRing`), a
consistent copy of the database (SQLite's online backup) and a summary of the installation, and
sends DiagnosticsStatusNotification Uploading, then Uploaded or UploadFailed. An http(s)://
location gets the archive by PUT (what pre-signed cloud storage URLs and WebDAV take); a server
that answers 405 gets a multipart/form-data POST (field "file") instead; an ftp:// location by
STOR. A location ending in "/" is a directory: the file name is appended. Secrets are in
neither part: the AuthorizationKey is never in SQLite, and log lines never carry it.

OCPP 2.0.1's UpdateFirmware and GetLog (`hilsim.ocpp201.firmware_handlers`) use the same jobs
with the request's requestId: every status notification of the job carries it (persisted with
the status still to report after the restart), and the statuses only 2.0.1 has are added
(DownloadScheduled, InstallScheduled, InstallRebooting). A 1.6 job has no requestId and sends
exactly what it always did.

Network IO runs in worker threads (urllib, ftplib): no new dependency, and the event loop never
waits on a slow server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from hilsim.clock import parse_iso, utc_iso
from hilsim.ocpp.session import LinkState
from hilsim.tasks import TaskSet

if TYPE_CHECKING:
    from hilsim.clock import Clock
    from hilsim.connectors import ConnectorRuntime
    from hilsim.ocpp.client import Identity
    from hilsim.ocpp.session import CsmsLink
    from hilsim.store import Store

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 3
DEFAULT_RETRY_INTERVAL_S = 60
_VERSION_MAX = 50  # BootNotification firmwareVersion is CiString50
#: A retrieve or install time less than this far ahead is "now", not a schedule. An unsynchronised
#: charge point keeps the CSMS's time, learned from a currentTime of whole seconds, so its clock
#: may lag the CSMS's by up to a second: a CSMS asking for "now" must not get DownloadScheduled.
DUE_TOLERANCE_S = 1.0


class LogRing(logging.Handler):
    """The most recent log lines, for a diagnostics archive (bounded: the Pi has little RAM)."""

    def __init__(self, capacity: int = 5000) -> None:
        super().__init__(logging.DEBUG)
        self.records: collections.deque[tuple[float, str]] = collections.deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a broken record must not break logging
            return
        if "authorization" in line.casefold():  # belt and braces: never a secret in an archive
            line = f"{record.name}: (a line about authorization credentials, left out)"
        self.records.append((record.created, line))

    def lines(self, since: float | None = None, until: float | None = None) -> list[str]:
        return [
            line
            for created, line in list(self.records)
            if (since is None or created >= since) and (until is None or created <= until)
        ]


# -- transfers (in worker threads) --------------------------------------------------------------


def transfer() -> ModuleType:
    """`hilsim.transfer`, loaded with the first UpdateFirmware or GetDiagnostics."""
    return importlib.import_module("hilsim.transfer")


def version_of(location: str) -> str:
    """The version an image at ``location`` installs: its file name without the extension."""
    name = Path(unquote(urlsplit(location).path)).name or "firmware"
    for suffix in (".tar.gz", ".tgz", ".bin", ".img", ".zip", ".fw", ".swu", ".tar", ".gz"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return name[:_VERSION_MAX]


# -- the manager ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempts:
    """How often and how far apart a transfer is tried (UpdateFirmware / GetDiagnostics)."""

    tries: int
    interval_s: float

    @classmethod
    def of(cls, retries: int | None, retry_interval: int | None) -> Attempts:
        # "How many times the charge point must try before giving up": at least once.
        tries = DEFAULT_RETRIES if retries is None else max(1, retries)
        interval = DEFAULT_RETRY_INTERVAL_S if retry_interval is None else max(0, retry_interval)
        return cls(tries, float(interval))


async def installed_firmware(
    store: Store, configured_version: str | None
) -> tuple[str, str | None, int | None] | None:
    """What an earlier UpdateFirmware installed (version, status still to report, the 2.0.1
    requestId of that status), if anything: read before the link is built, since
    BootNotification states the version."""
    record = await store.firmware()
    if record is not None and record[0] != configured_version:
        log.info("firmware %s installed by UpdateFirmware (configured: %s)", record[0],
                 configured_version)  # fmt: skip
    return record


class FirmwareHost(Protocol):
    """What firmware jobs need of the charger: whether it is idle, the time, its status."""

    @property
    def connectors(self) -> Mapping[int, ConnectorRuntime]: ...
    @property
    def wall(self) -> Clock: ...
    @property
    def link_listeners(self) -> list[Callable[[LinkState], None]]: ...
    @property
    def status_listeners(self) -> list[Callable[..., None]]: ...
    def snapshot(self) -> dict[str, Any]: ...


class Firmware:
    """The installed firmware version, UpdateFirmware and GetDiagnostics of one charge point."""

    def __init__(
        self,
        charger: FirmwareHost,
        store: Store,
        link: CsmsLink,
        *,
        configured_version: str | None,
        state_dir: Path,
        log_ring: LogRing | None = None,
        ca_file: Path | None = None,
        installation: dict[str, Any] | None = None,
        installed: tuple[str, str | None, int | None] | None = None,
        restart: Callable[[], None] | None = None,
    ) -> None:
        """``installation``: what a diagnostics archive says about the setup (no secrets);
        ``installed``: what an earlier UpdateFirmware installed and still has to report
        (`installed_firmware`); ``restart``: what makes a new version run (Reset Hard's)."""
        self.charger = charger
        self.store = store
        self.link = link
        self.version = configured_version
        self.state_dir = state_dir
        self.log_ring = log_ring
        self.ca_file = ca_file
        self.installation = installation or {}
        self.restart = restart
        #: What a triggered FirmwareStatusNotification / DiagnosticsStatusNotification reports:
        #: the last one sent, "Idle" again once a job ended (or when none ran).
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        #: The 2.0.1 requestId of the update / upload running (None: none, or a 1.6 one).
        self.firmware_request_id: int | None = None
        self.diagnostics_request_id: int | None = None
        self._pending: str | None = None  # status to report once connected after the restart
        self._pending_request_id: int | None = None
        if installed is not None:
            self.version, self._pending, self._pending_request_id = installed
        self._update: asyncio.Future[None] | None = None
        self._upload: asyncio.Future[None] | None = None
        self._idle = asyncio.Event()
        self._tasks = TaskSet("firmware")
        charger.link_listeners.append(self._link_changed)
        charger.status_listeners.append(lambda *_: self._check_idle())

    def identity(self, identity: Identity) -> Identity:
        """What BootNotification says, with the version UpdateFirmware installed."""
        return replace(identity, firmware_version=self.version) if self.version else identity

    # -- status notifications ------------------------------------------------------------------

    def _set_firmware_status(
        self, status: str, request_id: int | None = None
    ) -> asyncio.Future[Any]:
        """``request_id``: the 2.0.1 request the status belongs to (a 1.6 client is never
        handed one: its method has no such parameter)."""
        self.firmware_status = status
        log.info("FirmwareStatusNotification %s%s", status, _of(request_id))
        if request_id is None:
            job = lambda c: c.firmware_status_notification(status)  # noqa: E731
        else:
            job = lambda c: c.firmware_status_notification(status, request_id=request_id)  # noqa: E731
        return self.link.submit(job, f"FirmwareStatusNotification {status}", quiet=True)

    def _set_diagnostics_status(
        self, status: str, request_id: int | None = None
    ) -> asyncio.Future[Any]:
        self.diagnostics_status = status
        log.info("DiagnosticsStatusNotification %s%s", status, _of(request_id))
        if request_id is None:
            job = lambda c: c.diagnostics_status_notification(status)  # noqa: E731
        else:
            job = lambda c: c.diagnostics_status_notification(status, request_id=request_id)  # noqa: E731
        return self.link.submit(job, f"DiagnosticsStatusNotification {status}", quiet=True)

    def _link_changed(self, state: LinkState) -> None:
        if state == LinkState.CONNECTED and self._pending is not None:
            status, self._pending = self._pending, None
            request_id, self._pending_request_id = self._pending_request_id, None
            self._set_firmware_status(status, request_id)
            self._back_to_idle("firmware")
            self._tasks.spawn(self.store.save_firmware(self.version or "", None), "save-firmware")

    def _back_to_idle(self, which: str) -> None:
        """After a final status (already queued), a triggered notification says Idle again,
        without a requestId."""
        if which == "firmware":
            self.firmware_status = "Idle"
            self.firmware_request_id = None
        else:
            self.diagnostics_status = "Idle"
            self.diagnostics_request_id = None

    # -- UpdateFirmware ------------------------------------------------------------------------

    @property
    def updating(self) -> bool:
        """Whether an update is on its way (scheduled, downloading, waiting or installing)."""
        return self._update is not None and not self._update.done()

    @property
    def installing(self) -> bool:
        """Whether the running update is past the point of no return (the image moved into
        place, the restart due): it can no longer be cancelled."""
        return self.updating and self.firmware_status in ("Installing", "InstallRebooting")

    @property
    def uploading(self) -> bool:
        """Whether a diagnostics / log upload is on its way."""
        return self._upload is not None and not self._upload.done()

    def update(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None,
        retry_interval: int | None,
        *,
        request_id: int | None = None,
        install_date: str | None = None,
    ) -> None:
        """Start an update (UpdateFirmware.conf has nothing to say); a running one is replaced.
        ``request_id``: a 2.0.1 UpdateFirmware's, carried by every status and adding 2.0.1's
        own statuses; ``install_date``: 2.0.1's installDateTime, not before which it installs."""
        if self._update is not None and not self._update.done():
            log.warning("UpdateFirmware: a new one replaces the update in progress")
            self._update.cancel()
        try:
            due = parse_iso(retrieve_date).timestamp()
        except ValueError:
            due = time.time()
        install_at = _time_or_none(install_date)
        attempts = Attempts.of(retries, retry_interval)
        self.firmware_request_id = request_id
        self._update = self._tasks.spawn(
            self._run_update(location, due, attempts, request_id, install_at), "update"
        )

    def _wait_until(self, moment: float) -> float:
        """Seconds to wait for a CSMS-given time by the charge point's clock: 0 for one already
        reached or within DUE_TOLERANCE_S, which the CSMS meant as now."""
        wait = moment - self.charger.wall.now().timestamp()
        return wait if wait >= DUE_TOLERANCE_S else 0.0

    async def _run_update(
        self,
        location: str,
        due: float,
        attempts: Attempts,
        request_id: int | None = None,
        install_at: float | None = None,
    ) -> None:
        v201 = request_id is not None  # 2.0.1's statuses too

        def status(name: str) -> asyncio.Future[Any]:
            return self._set_firmware_status(name, request_id)

        def finished(name: str) -> None:
            status(name)
            self._back_to_idle("firmware")

        if wait := self._wait_until(due):
            log.info("UpdateFirmware: downloading %s at %s", location, utc_iso(
                datetime.fromtimestamp(due, UTC)))  # fmt: skip
            if v201:
                status("DownloadScheduled")
            await asyncio.sleep(wait)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        image = self.state_dir / "firmware.download"
        status("Downloading")
        size = await self._try(
            "download " + location,
            attempts,
            lambda: transfer().download(location, image, self.ca_file),
        )
        if size is None:
            image.unlink(missing_ok=True)
            finished("DownloadFailed")
            return
        status("Downloaded")
        log.info("firmware image %s: %d bytes", location, size)
        if v201 and install_at is not None and (wait := self._wait_until(install_at)):
            log.info("UpdateFirmware: installing at %s", utc_iso(
                datetime.fromtimestamp(install_at, UTC)))  # fmt: skip
            status("InstallScheduled")
            await asyncio.sleep(wait)
        await self._until_no_transaction()
        installing = status("Installing")
        version = version_of(location)
        if size == 0:
            log.error("firmware image %s is empty: InstallationFailed", location)
            image.unlink(missing_ok=True)
            finished("InstallationFailed")
            return
        import shutil  # (with tempfile below) a few ms of every start when loaded up front

        shutil.move(image, self.state_dir / "firmware.installed")
        if self.restart is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(installing), self.link.response_timeout)
            # Nothing to restart (hilsim used as a library): the version applies at next start.
            await self.store.save_firmware(version, None)
            self.version = version
            finished("Installed")
            return
        await self.store.save_firmware(version, "Installed", request_id)
        if v201:  # 2.0.1 says so before the reboot that makes the new version run
            installing = status("InstallRebooting")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(installing), self.link.response_timeout)
        log.warning("firmware %s installed; restarting to run it", version)
        self.restart()

    async def _until_no_transaction(self) -> None:
        self._check_idle()
        if not self._idle.is_set():
            log.info("firmware waits for the running transactions to end before installing")
        await self._idle.wait()

    def _check_idle(self) -> None:
        busy = any(
            rt.machine.state.transaction is not None for rt in self.charger.connectors.values()
        )
        if busy:
            self._idle.clear()
        else:
            self._idle.set()

    # -- GetDiagnostics ------------------------------------------------------------------------

    def diagnostics(
        self,
        location: str,
        retries: int | None,
        retry_interval: int | None,
        start_time: str | None,
        stop_time: str | None,
        *,
        request_id: int | None = None,
    ) -> str:
        """Start an upload; returns the file name GetDiagnostics.conf announces.
        ``request_id``: a 2.0.1 GetLog's, carried by every LogStatusNotification."""
        stamp = self.charger.wall.now().strftime("%Y%m%dT%H%M%SZ")
        cp = self.link.charge_point_id.replace("/", "_")
        name = f"diagnostics-{cp}-{stamp}.tar.gz"
        since = _time_or_none(start_time)
        until = _time_or_none(stop_time)
        if self._upload is not None and not self._upload.done():
            log.warning("GetDiagnostics: a new one replaces the upload in progress")
            self._upload.cancel()
        self.diagnostics_request_id = request_id
        attempts = Attempts.of(retries, retry_interval)
        self._upload = self._tasks.spawn(
            self._run_upload(location, name, attempts, since, until, request_id),
            "diagnostics-upload",
        )
        return name

    async def _run_upload(
        self,
        location: str,
        name: str,
        attempts: Attempts,
        since: float | None,
        until: float | None,
        request_id: int | None = None,
    ) -> None:
        self._set_diagnostics_status("Uploading", request_id)
        try:
            archive = await self.archive(since, until)
        except Exception as exc:
            log.error("GetDiagnostics: cannot make the archive: %s", exc)
            self._set_diagnostics_status("UploadFailed", request_id)
            self._back_to_idle("diagnostics")
            return
        how = await self._try(
            f"upload {name} to {location}",
            attempts,
            lambda: transfer().upload(location, name, archive, self.ca_file),
        )
        if how is None:
            self._set_diagnostics_status("UploadFailed", request_id)
        else:
            log.info("diagnostics %s (%d bytes) uploaded by %s", name, len(archive), how)
            self._set_diagnostics_status("Uploaded", request_id)
        self._back_to_idle("diagnostics")

    async def archive(self, since: float | None = None, until: float | None = None) -> bytes:
        """tar.gz: log.txt (the recent log lines), hilsim.db (a consistent copy), info.json."""
        lines = self.log_ring.lines(since, until) if self.log_ring else []
        info = {
            "charge_point": self.link.charge_point_id,
            "firmware_version": self.version,
            "made_at": self.charger.wall.iso(),
            "status": self.charger.snapshot(),
            **self.installation,
        }
        import tempfile

        from hilsim.diagnostics_archive import pack

        with tempfile.TemporaryDirectory(prefix="hilsim-diag-") as tmp:
            copy = Path(tmp) / "hilsim.db"
            await self.store.backup_to(copy)
            return await asyncio.to_thread(pack, copy, "\n".join(lines) + "\n", info)

    async def _try(self, what: str, attempts: Attempts, job: Callable[[], Any]) -> Any:
        for attempt in range(1, attempts.tries + 1):
            try:
                return await asyncio.to_thread(job)
            except (transfer().TransferError, OSError) as exc:
                log.warning("%s: attempt %d of %d failed: %s", what, attempt, attempts.tries, exc)
            if attempt < attempts.tries:
                await asyncio.sleep(attempts.interval_s)
        log.error("%s: gave up after %d attempts", what, attempts.tries)
        return None

    # -- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        await self._tasks.cancel_all()  # the update and the upload too

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "status": self.firmware_status,
            "diagnostics_status": self.diagnostics_status,
        }


def _of(request_id: int | None) -> str:
    return "" if request_id is None else f" (requestId {request_id})"


def _time_or_none(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return parse_iso(text).timestamp()
    except ValueError:
        log.warning("unreadable time %r ignored", text)
        return None
