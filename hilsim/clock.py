"""Wall-clock time for OCPP timestamps, on a board with no real-time clock.

A Pi boots with whatever time it had when it lost power, or 1970, and at a field demo NTP is often
unreachable. Until the kernel says the system clock is synchronised, the time the CSMS states in
its BootNotification and Heartbeat replies is the better clock, so timestamps follow it. Whatever
the source, stamps never lie before this release was built, and they do not go backwards: a CSMS
that sees a transaction stop before it started, or in 1970, rejects or mangles it. The one
exception is a real correction (below): a charge point that stamps everything a day ahead, because
the CSMS once said so, is no better.

So the CSMS's time is judged before it is taken:

* a time outside `SANE_WINDOW` (before this build, or in 2100 or later) is not a clock, it is a
  broken CSMS: it is ignored with a WARNING. Taking 9999-12-31 would make every later stamp
  overflow and every event that needs one fail;
* a time that puts the clock back by more than `BACKWARD_TOLERANCE` is a correction (the CSMS's
  own clock was wrong, or its first answer was): it is applied at once, as one step back, logged
  at WARNING with its size. Clamping instead would freeze every stamp at the wrong time until the
  true time caught up, a day later for a CSMS that was a day ahead. Smaller steps back (answers
  that took a while on the wire) are absorbed by the never-backwards clamp.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)

#: No message is ever stamped earlier than this (the release date of this build).
BUILD_DATE = datetime(2026, 11, 1, tzinfo=UTC)

#: The CSMS times taken at all: from this build up to (excluding) 2100. Outside it is a broken
#: clock, however confidently stated; the bound also keeps every stamp far from datetime's limits.
SANE_WINDOW = (BUILD_DATE, datetime(2100, 1, 1, tzinfo=UTC))
#: Every other date-time the CSMS sets (expiry dates, validity, schedule starts, log windows,
#: retrieve dates) is held to this range (`hilsim.ocpp.validation`). Python's datetime ends with
#: 9999 and begins with year 1: 9999-12-31T23:59:59-05:00 parses but cannot become UTC, be
#: printed or be moved by any timedelta, and SQLite's date functions stop at 9999 too. The bounds
#: leave a thousand years of room for arithmetic, keep four-digit years (so stamps sort as text)
#: and, for a charge point, mean what the far-off date meant: "long past" and "never reached".
DATE_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))
#: A CSMS time this much behind the current stamp steps the clock back; less is clamped away.
BACKWARD_TOLERANCE = timedelta(seconds=5)

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised (STA_UNSYNC)


def utc_iso(moment: datetime | None = None) -> str:
    """ISO 8601, UTC, millisecond precision, 'Z', as OCPP wants it."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse an OCPP timestamp; naive ones are taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded once.

    dlopen(NULL) is the running interpreter, which links libc on every Linux, glibc or musl: no
    search is needed. ctypes.util.find_library would run `ldconfig -p` in a subprocess, ~4 ms
    of every start on a fast machine and far more on a Pi.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.adjtimex  # noqa: B018 - resolve it now: a libc without it is no libc to ask
    except (OSError, AttributeError):
        return None
    return libc


def kernel_clock_synchronized() -> bool | None:
    """Ask the kernel (adjtimex, read-only) whether NTP has disciplined the clock.

    None when it cannot be asked (not Linux, no libc): the caller then trusts the system clock.
    """
    libc = _libc()
    if libc is None:
        return None
    timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 reads only
    state = libc.adjtimex(timex)
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


class Clock:
    """The charge point's idea of 'now', corrected by the CSMS while the kernel clock is not."""

    def __init__(
        self,
        synchronized: Callable[[], bool | None] | None = None,
        system_now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``synchronized``: whether the system clock is to be trusted (default: ask the kernel)."""
        self._synchronized = synchronized or kernel_clock_synchronized
        self._system_now = system_now
        self._offset: timedelta | None = None  # CSMS time minus system time
        #: told how far (seconds) the clock was set whenever the CSMS's time moves an unsynchronised
        #: clock (the 2.0.1 layer reports SettingSystemTime); not told of a synchronised one
        self.step_listeners: list[Callable[[float], None]] = []
        self._last = BUILD_DATE
        self._source = ""

    def learn(self, current_time: str) -> None:
        """Take note of the CSMS's currentTime (BootNotification.conf, Heartbeat.conf)."""
        try:
            csms = parse_iso(current_time)
        except ValueError:
            log.warning("CSMS sent an unreadable currentTime %r; ignored", current_time)
            return
        earliest, latest = SANE_WINDOW
        if not earliest <= csms < latest:
            log.warning(
                "CSMS sent currentTime %s, outside %d..%d: not a time this charge point takes; "
                "ignored (the CSMS's clock is wrong)",
                current_time,
                earliest.year,
                latest.year - 1,
            )
            return
        before = self._offset
        self._offset = csms - self._system_now()
        if self._synchronized() is not False:
            return  # the system clock stamps: nothing to step
        step = self._offset - (before if before is not None else timedelta(0))
        for listener in self.step_listeners:
            listener(step.total_seconds())
        behind = self._last - csms
        if behind > BACKWARD_TOLERANCE:
            log.warning(
                "CSMS time %s is %.1f s behind the last timestamp sent; timestamps step back "
                "by that much once (the CSMS corrected its clock)",
                utc_iso(csms),
                behind.total_seconds(),
            )
            self._last = csms

    @property
    def source(self) -> str:
        """Which clock stamps messages, for the log and `hilsim ctl status`."""
        synced = self._synchronized()
        if synced is not False:
            return "system clock (synchronised)" if synced else "system clock"
        if self._offset is not None:
            return f"CSMS time (system clock is off by {self._offset.total_seconds():+.1f} s)"
        return "system clock (NOT synchronised, no CSMS time yet)"

    def now(self) -> datetime:
        system = self._system_now()
        synced = self._synchronized()
        moment = system if synced is not False or self._offset is None else system + self._offset
        source = self.source
        if source != self._source:
            log.info("timestamps now come from the %s", source)
            self._source = source
        # Never backwards, never before the build: clamp, do not guess.
        moment = max(moment, self._last)
        self._last = moment
        return moment

    def iso(self) -> str:
        return utc_iso(self.now())
