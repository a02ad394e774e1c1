"""Which SecurityEventNotifications a 2.0.1 charge point owes its CSMS, and when.

OCPP 2.0.1 (A04, and the security event list of appendix 1) requires a charge point to tell its
CSMS of security-relevant events: that it started (StartupOfTheDevice), is reset
(ResetOrReboot), had its clock set (SettingSystemTime), had its security parameters changed
(ReconfigurationOfSecurityParameters), runs the firmware an UpdateFirmware installed
(FirmwareUpdated), and could not connect because the CSMS refused its credentials
(FailedToAuthenticateAtCsms) or TLS failed (InvalidCsmsCertificate, InvalidTLSVersion,
InvalidTLSCipherSuite). The client of the current connection sends them
(`ChargePointClient201.security_event`); this module keeps what must outlive one connection:
that StartupOfTheDevice goes once per process, after the first accepted BootNotification (not
after every reconnection), and the events that happened while no connection was up (a new
SecurityProfile takes effect by connecting again), sent in order after the next accepted boot,
each with the time it happened.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from hilsim.clock import utc_iso
from hilsim.errors import CsmsError
from hilsim.ocpp.transport import HandshakeRefused, TlsFailure

log = logging.getLogger(__name__)

STARTUP = "StartupOfTheDevice"
RESET = "ResetOrReboot"
SETTING_TIME = "SettingSystemTime"
SECURITY_PARAMETERS = "ReconfigurationOfSecurityParameters"
FAILED_TO_AUTHENTICATE = "FailedToAuthenticateAtCsms"
INVALID_CSMS_CERTIFICATE = "InvalidCsmsCertificate"
INVALID_TLS_VERSION = "InvalidTLSVersion"
INVALID_TLS_CIPHER_SUITE = "InvalidTLSCipherSuite"
FIRMWARE_UPDATED = "FirmwareUpdated"
#: `TlsFailure.kind` -> the event it is
_TLS_EVENTS = {
    "certificate": INVALID_CSMS_CERTIFICATE,
    "version": INVALID_TLS_VERSION,
    "cipher": INVALID_TLS_CIPHER_SUITE,
}
#: SecurityEventNotificationRequest.techInfo is a string of at most 255 characters.
TECH_INFO_MAX = 255
#: Events kept for the next connection at most; a charge point that cannot boot for days must
#: not grow this without end (each failure streak adds at most one event of each kind).
PENDING_MAX = 100

#: A clock step smaller than this is drift being corrected, not the time being set.
STEP_REPORTED_S = 2.0

#: (type, techInfo, timestamp) of one event
Event = tuple[str, str | None, str]


class Sender(Protocol):
    """The client of the current connection (`ChargePointClient201`)."""

    async def security_event(
        self, kind: str, tech_info: str | None = None, timestamp: str | None = None
    ) -> None: ...

    def send_security_events(self, events: list[Event]) -> None: ...


class Keys(Protocol):
    def subscribe(self, listener: Callable[[Any, Any], None]) -> Callable[[], None]: ...


class Wall(Protocol):
    step_listeners: list[Callable[[float], None]]

    def iso(self) -> str: ...


class SecurityEvents:
    """The process's security events: which were reported, which wait for a connection."""

    def __init__(self) -> None:
        self.startup_sent = False
        self.pending: list[Event] = []
        self.sender: Sender | None = None
        self._wall: Wall | None = None
        self._keys: Any = None
        #: connection failures reported since the last connection opened: one event each per
        #: streak, not one per retry of the backoff
        self._failures_reported: set[str] = set()

    def attach(self, keys: Keys, wall: Wall) -> None:
        """Watch the charge point's keys and clock, once per process (the first client)."""
        if self._wall is not None:
            return
        self._wall = wall
        self._keys = keys
        keys.subscribe(self._key_changed)
        wall.step_listeners.append(self._clock_stepped)

    def connected(self, sender: Sender) -> list[Event]:
        """A BootNotification was accepted: ``sender`` reports from now on. The events it is to
        send at once: StartupOfTheDevice the first time, then what happened meanwhile."""
        self.sender = sender
        events: list[Event] = []
        if not self.startup_sent:
            self.startup_sent = True
            events.append((STARTUP, "hilsim started", self._now()))
        events += self.pending
        self.pending = []
        return events

    def disconnected(self, sender: Sender) -> None:
        if self.sender is sender:
            self.sender = None

    def report(self, kind: str, tech_info: str | None = None) -> None:
        """Send an event now, or after the next accepted boot when no connection is up."""
        event = (kind, tech_info, self._now())
        if self.sender is not None:
            self.sender.send_security_events([event])
        else:
            if len(self.pending) >= PENDING_MAX:
                dropped = self.pending.pop(0)
                log.warning("too many security events waiting: %s of %s dropped", *dropped[::2])
            self.pending.append(event)

    def requeue(self, events: list[Event]) -> None:
        """Events a connection ended under: first in line for the next accepted boot."""
        log.info("%d security event(s) not delivered: sent after the next boot", len(events))
        self.pending[:0] = events
        del self.pending[: max(0, len(self.pending) - PENDING_MAX)]

    def connect_failed(self, error: CsmsError, owner: Any) -> None:
        """The WebSocket did not open. A refused handshake (HTTP 401/403: our credentials) or a
        TLS failure the charge point can name is a security event (OCPP 2.0.1 A00-A03), queued
        with the time it happened, once per streak of failures; a network error is none."""
        if self._wall is None and hasattr(owner, "keys") and hasattr(owner, "wall"):
            self.attach(owner.keys, owner.wall)  # failing before any client was made
        kind = _event_of(error)
        if kind is None or kind in self._failures_reported:
            return
        self._failures_reported.add(kind)
        profile = self._keys.get("SecurityProfile") if self._keys is not None else None
        tech_info = f"{error} (security profile {profile})"[:TECH_INFO_MAX]
        log.warning("security event %s: %s; reported after the next accepted boot", kind, error)
        self.report(kind, tech_info)

    def link_opened(self) -> None:
        """A connection opened: the next failure starts a new streak, and is reported again."""
        self._failures_reported.clear()

    def report_and_wait(self, kind: str, tech_info: str | None = None) -> Awaitable[None]:
        """The same, to be awaited: before a reset the event must be on the wire first."""
        if self.sender is None:
            self.report(kind, tech_info)
            return _done()
        return self.sender.security_event(kind, tech_info, self._now())

    def _now(self) -> str:
        if self._wall is None:  # not attached (a client made without a charger, in tests)
            return utc_iso(datetime.now(UTC))
        return self._wall.iso()

    def _key_changed(self, spec: Any, value: Any) -> None:
        if getattr(spec, "name", None) == "SecurityProfile":
            log.info("SecurityProfile is now %s: reporting %s", value, SECURITY_PARAMETERS)
            self.report(SECURITY_PARAMETERS, f"SecurityProfile set to {value}")

    def _clock_stepped(self, seconds: float) -> None:
        if abs(seconds) >= STEP_REPORTED_S:
            self.report(SETTING_TIME, f"clock set from the CSMS's time ({seconds:+.1f} s)")


def _event_of(error: CsmsError) -> str | None:
    """The security event a failed connection is, if any."""
    if isinstance(error, HandshakeRefused) and error.credentials_refused:
        return FAILED_TO_AUTHENTICATE
    if isinstance(error, TlsFailure):
        return _TLS_EVENTS.get(error.kind)
    return None


async def _done() -> None:
    return None
