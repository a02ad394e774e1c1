"""sd_notify: tell systemd we are ready, alive, what we are doing, and that we are stopping.

`Type=notify` makes `systemctl start` wait for READY=1, so dependent units and the installer
only go on once the database is open and the config valid. The watchdog pings come from a task
in the asyncio loop itself: a loop that hangs (a blocking call, a deadlock) stops pinging, and
systemd kills and restarts the service, which a ping from a separate thread would never notice.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises).

    None when no watchdog is asked for, when the value is not a positive integer, or when
    WATCHDOG_PID names another process (the variable was inherited, not meant for us).
    """
    text = environ.get("WATCHDOG_USEC")
    if not text:
        return None
    try:
        usec = int(text)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", text)
        return None
    if usec <= 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            return None
    return usec / 1_000_000 / 2


class Notifier:
    """Sends sd_notify assignments through systemd-python's `daemon.notify`.

    Inactive (every method a no-op) when systemd-python is missing or NOTIFY_SOCKET is unset, so
    the service code calls it unconditionally. libsystemd reads NOTIFY_SOCKET from the process
    environment itself; `environ` only decides whether to try and whether a watchdog is wanted.
    """

    def __init__(
        self, daemon: Any | None, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> None:
        environ = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        self._daemon = daemon
        self.socket = environ.get("NOTIFY_SOCKET") or None
        self.active = daemon is not None and self.socket is not None
        self.watchdog_interval_s = watchdog_interval(environ, pid) if self.active else None
        self._last_status: str | None = None
        self._failed = False
        self._stopping = False

    @classmethod
    def off(cls) -> Notifier:
        return cls(None, {})

    def notify(self, *assignments: str) -> bool:
        """Send one datagram with these VAR=value lines; True when systemd got it."""
        if not self.active:
            return False
        try:
            sent = bool(self._daemon.notify("\n".join(assignments)))  # type: ignore[union-attr]
        except OSError as exc:
            if not self._failed:
                log.warning("sd_notify to %s failed: %s", self.socket, exc)
            self._failed = True
            return False
        self._failed = False
        return sent

    def ready(self, status: str | None = None) -> bool:
        return self._with_status("READY=1", status)

    def reloading(self, status: str | None = None) -> bool:
        return self._with_status("RELOADING=1", status)

    def stopping(self, status: str | None = None) -> bool:
        # From here on the stopping line stays: the link dropping on the way out is no news.
        self._stopping = True
        return self._with_status("STOPPING=1", status)

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str, *, force: bool = False) -> bool:
        """STATUS= for `systemctl status`; an unchanged line is not sent again unless forced."""
        if not self.active or self._stopping or (text == self._last_status and not force):
            return False
        self._last_status = text
        return self.notify(f"STATUS={_one_line(text)}")

    def _with_status(self, assignment: str, status: str | None) -> bool:
        if status is None:
            return self.notify(assignment)
        self._last_status = status
        return self.notify(assignment, f"STATUS={_one_line(status)}")

    async def keep_alive(self) -> None:
        """Ping the watchdog from this event loop until cancelled (returns at once without one)."""
        interval = self.watchdog_interval_s
        if interval is None:
            return
        log.debug("watchdog: pinging every %.3g s", interval)
        while True:
            self.watchdog()
            await asyncio.sleep(interval)


def _one_line(text: str) -> str:
    # A newline would start a new assignment in the datagram.
    return " ".join(text.splitlines())
