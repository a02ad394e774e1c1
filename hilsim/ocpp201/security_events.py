"""Which SecurityEventNotifications a 2.0.1 charge point owes its CSMS, and when.

OCPP 2.0.1 (A04, and the security event list of appendix 1) requires a charge point to tell its
CSMS of security-relevant events: that it started (StartupOfTheDevice), is reset
(ResetOrReboot), had its clock set (SettingSystemTime), had its security parameters changed
(ReconfigurationOfSecurityParameters). The client of the current connection sends them
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

log = logging.getLogger(__name__)

STARTUP = "StartupOfTheDevice"
RESET = "ResetOrReboot"
SETTING_TIME = "SettingSystemTime"
SECURITY_PARAMETERS = "ReconfigurationOfSecurityParameters"

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

    def attach(self, keys: Keys, wall: Wall) -> None:
        """Watch the charge point's keys and clock, once per process (the first client)."""
        if self._wall is not None:
            return
        self._wall = wall
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
            self.pending.append(event)

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


async def _done() -> None:
    return None
