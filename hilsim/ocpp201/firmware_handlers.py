"""The handlers of the 2.0.1 CSMS's firmware and log CALLs (L01/L02 UpdateFirmware, N01 GetLog).

A mixin of `hilsim.ocpp201.client.ChargePointClient201`, on the same firmware service as 1.6's
UpdateFirmware and GetDiagnostics (`hilsim.firmware.Firmware`): the download, the "install"
(the new version recorded, the program restarted), the diagnostics archive and its upload are
the ones 1.6 has. What 2.0.1 adds is said here: the request's requestId, which the service puts
on every status notification of the job (and keeps across the restart for Installed); the
answer's status (Rejected with a statusInfo for a request that cannot succeed, AcceptedCanceled
when it replaces a job in progress); the requestId a triggered FirmwareStatusNotification or
LogStatusNotification carries (`triggered_status`: the running job's, none when Idle), which
the provisioning handlers' TriggerMessage sender adds.

Not done: firmware signatures. A signature or signingCertificate is taken, logged as NOT
verified, and no SignatureVerified (or InvalidSignature) is ever sent; hilsim installs no real
image, so there is nothing a signature would protect. SecurityLog: hilsim keeps no security log
apart from its one log, so a GetLog of it is Rejected; DiagnosticsLog gets the whole archive.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from hilsim.clock import parse_iso
from hilsim.ocpp.routing import Reply, on
from hilsim.ocpp201.smart_charging import status_info

log = logging.getLogger(__name__)

#: The location schemes `hilsim.transfer` can fetch from and upload to.
SCHEMES = ("http", "https", "ftp")
#: OCPP integers are 32 bits; a requestId is also stored in SQLite across the restart.
REQUEST_ID_RANGE = range(-(2**31), 2**31)
#: How often and how far apart a transfer may be asked to be tried: a charger that keeps a
#: task alive for years on a CSMS's say-so is a charger nobody can reason about.
MAX_RETRIES = 100
MAX_RETRY_INTERVAL_S = 24 * 3600
#: How far ahead a retrieveDateTime / installDateTime (or a log's timestamps) may lie.
MAX_AHEAD = timedelta(days=366)


class FirmwarePort201(Protocol):
    """`hilsim.firmware.Firmware`, as the 2.0.1 handlers use it."""

    firmware_status: str
    diagnostics_status: str
    firmware_request_id: int | None
    diagnostics_request_id: int | None

    @property
    def updating(self) -> bool: ...
    @property
    def installing(self) -> bool: ...
    @property
    def uploading(self) -> bool: ...

    def update(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None,
        retry_interval: int | None,
        *,
        request_id: int | None = None,
        install_date: str | None = None,
    ) -> None: ...

    def diagnostics(
        self,
        location: str,
        retries: int | None,
        retry_interval: int | None,
        start_time: str | None,
        stop_time: str | None,
        *,
        request_id: int | None = None,
    ) -> str: ...


class Wall(Protocol):
    def now(self) -> datetime: ...


class FirmwareCharger(Protocol):
    """What the firmware handlers need of the charge point (`hilsim.charger.Charger`)."""

    @property
    def firmware(self) -> FirmwarePort201 | None: ...
    @property
    def wall(self) -> Wall: ...


class Refusal(Exception):
    """A request answered Rejected, with the statusInfo saying why."""

    def __init__(self, reason_code: str, info: str) -> None:
        super().__init__(f"{reason_code}: {info}")
        self.reply = Reply({"status": "Rejected", "statusInfo": status_info(reason_code, info)})


class FirmwareHandlers201:
    """UpdateFirmware and GetLog (their statuses, triggered: `triggered_status`)."""

    # Provided by ChargePointClient201.
    charger: FirmwareCharger

    @property
    def firmware(self) -> FirmwarePort201:
        firmware = self.charger.firmware
        if firmware is None:
            raise RuntimeError("the charger has no firmware manager attached")
        return firmware

    # -- UpdateFirmware ------------------------------------------------------------------------

    @on("UpdateFirmware", raw=True)
    def on_update_firmware(self, payload: dict[str, Any]) -> Reply:
        """Raw: the names as in the specification. Accepted, or AcceptedCanceled when it
        replaces an update still downloading or waiting; Rejected (statusInfo) when it cannot
        succeed or an installation is already under way (that one cannot be taken back)."""
        request_id = int(payload["requestId"])
        firmware: dict[str, Any] = payload["firmware"]
        location = str(firmware["location"])
        try:
            _check_request_id(request_id)
            retries, interval = _attempts(payload)
            _check_location(location)
            retrieve = self._date(firmware["retrieveDateTime"], "retrieveDateTime")
            install = firmware.get("installDateTime")
            if install is not None:
                self._date(install, "installDateTime")
            service = self.firmware
            if service.installing:
                raise Refusal(
                    "InstallInProgress",
                    "a firmware installation is under way and cannot be cancelled",
                )
        except Refusal as refusal:
            log.warning("UpdateFirmware %d of %s: Rejected (%s)", request_id, location, refusal)
            return refusal.reply
        if firmware.get("signature") is not None or firmware.get("signingCertificate") is not None:
            log.warning("UpdateFirmware %d: signature NOT verified (hilsim checks no firmware "
                        "signatures; no SignatureVerified is sent)", request_id)  # fmt: skip
        status = "AcceptedCanceled" if service.updating else "Accepted"
        log.info("UpdateFirmware %d of %s: %s", request_id, location, status)
        service.update(location, retrieve, retries, interval, request_id=request_id,
                       install_date=install)  # fmt: skip
        return Reply({"status": status})

    # -- GetLog --------------------------------------------------------------------------------

    @on("GetLog", raw=True)
    def on_get_log(self, payload: dict[str, Any]) -> Reply:
        """A DiagnosticsLog is the 1.6 diagnostics archive (log lines between the timestamps,
        the database, a summary), uploaded the same way; AcceptedCanceled when it replaces an
        upload in progress. SecurityLog: Rejected (no separate security log is kept)."""
        request_id = int(payload["requestId"])
        log_type = str(payload["logType"])
        wanted: dict[str, Any] = payload["log"]
        location = str(wanted["remoteLocation"])
        try:
            _check_request_id(request_id)
            if log_type != "DiagnosticsLog":
                raise Refusal("UnsupportedLogType",
                              f"{log_type}: hilsim keeps no security log apart from its one log "
                              "(ask for the DiagnosticsLog)")  # fmt: skip
            retries, interval = _attempts(payload)
            _check_location(location)
            oldest = wanted.get("oldestTimestamp")
            latest = wanted.get("latestTimestamp")
            for name, value in (("oldestTimestamp", oldest), ("latestTimestamp", latest)):
                if value is not None:
                    self._date(value, name)
            service = self.firmware
        except Refusal as refusal:
            log.warning("GetLog %d (%s) to %s: Rejected (%s)", request_id, log_type, location,
                        refusal)  # fmt: skip
            return refusal.reply
        status = "AcceptedCanceled" if service.uploading else "Accepted"
        name = service.diagnostics(location, retries, interval, oldest, latest,
                                   request_id=request_id)  # fmt: skip
        log.info("GetLog %d to %s: %s, %s", request_id, location, status, name)
        return Reply({"status": status, "filename": name})

    # -- checks ---------------------------------------------------------------------------------

    def _date(self, text: str, name: str) -> str:
        """``text`` if it is a time no further ahead than MAX_AHEAD (a past one means now)."""
        try:
            when = parse_iso(text)
        except ValueError as exc:
            raise Refusal("InvalidValue", f"{name} {text!r}: {exc}") from None
        if when - self.charger.wall.now() > MAX_AHEAD:
            raise Refusal("InvalidValue", f"{name} {text} is more than a year ahead")
        return text


def _check_request_id(request_id: int) -> None:
    if request_id not in REQUEST_ID_RANGE:
        raise Refusal("InvalidValue", f"requestId {request_id} is not a 32-bit integer")


def _check_location(location: str) -> None:
    """A location hilsim can never fetch from or upload to is refused at once, instead of
    failing after all its retries."""
    try:
        parts = urlsplit(location)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise Refusal("InvalidURL", f"{location}: not a URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise Refusal(
            "InvalidURL", f"{location}: unsupported scheme {parts.scheme!r} (http, https or ftp)"
        )
    if not parts.hostname:
        raise Refusal("InvalidURL", f"{location}: the location names no host")


def triggered_status(firmware: FirmwarePort201 | None, message: str, status: str) -> int | None:
    """The requestId a triggered FirmwareStatusNotification / LogStatusNotification (``message``)
    of ``status`` carries: the running job's, none when Idle (or for a 1.6-started job)."""
    if firmware is None or status == "Idle":
        return None
    if message == "FirmwareStatusNotification":
        return firmware.firmware_request_id
    return firmware.diagnostics_request_id


def _attempts(payload: dict[str, Any]) -> tuple[int | None, int | None]:
    """retries and retryInterval, each absent or within bounds (Rejected otherwise)."""
    retries: int | None = payload.get("retries")
    interval: int | None = payload.get("retryInterval")
    if retries is not None and not 0 <= retries <= MAX_RETRIES:
        raise Refusal("InvalidValue", f"retries {retries} is outside 0..{MAX_RETRIES}")
    if interval is not None and not 0 <= interval <= MAX_RETRY_INTERVAL_S:
        raise Refusal(
            "InvalidValue", f"retryInterval {interval} is outside 0..{MAX_RETRY_INTERVAL_S} s"
        )
    return retries, interval
