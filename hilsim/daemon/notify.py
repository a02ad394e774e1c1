"""sd_notify: tell systemd we are ready, alive, what we are doing, and that we are stopping.

`Type=notify` makes `systemctl start` wait for READY=1, so dependent units and the installer
only go on once the database is open and the config valid. The watchdog pings come from a task
in the asyncio loop itself: a loop that hangs (a blocking call, a deadlock) stops pinging, and
systemd kills and restarts the service, which a ping from a separate thread would never notice.

systemd-python's `daemon.notify` sends them where it is installed; without it (a pip install
on a machine without libsystemd's headers) `DatagramNotify` sends the same datagram itself, so a
`Type=notify` unit never times out for want of a compiled extension.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
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


class DatagramNotify:
    """sd_notify(3) without libsystemd: one AF_UNIX datagram of VAR=value lines to NOTIFY_SOCKET.

    The protocol is systemd's documented one: an absolute path, or an abstract socket written
    with a leading '@' (a NUL byte on the wire). The sender's credentials, which systemd checks
    for NotifyAccess=main, are the kernel's to attach. Has systemd-python's `notify` signature,
    so `Notifier` uses either alike.
    """

    #: A datagram blocks only while systemd's queue is full; never hold the loop longer than this.
    SEND_TIMEOUT_S = 1.0

    def __init__(self, address: str) -> None:
        self.address = address

    def notify(self, state: str) -> bool:
        """Send `state`; raises OSError when it cannot be delivered.

        A socket per datagram, as libsystemd does: a few a second at most, and nothing to close.
        """
        if self.address.startswith("@"):
            target = "\0" + self.address[1:]
        elif self.address.startswith("/"):
            target = self.address
        else:  # e.g. systemd 254's vsock: addresses, which only libsystemd speaks
            raise OSError(f"unsupported NOTIFY_SOCKET address {self.address!r}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(self.SEND_TIMEOUT_S)
            sock.sendto(state.encode(), target)
        return True


class Notifier:
    """Sends sd_notify assignments through systemd-python's `daemon.notify`, or by itself.

    Inactive (every method a no-op) when NOTIFY_SOCKET is unset, so the service code calls it
    unconditionally. Given `daemon` (systemd-python's module), libsystemd reads NOTIFY_SOCKET
    from the process environment itself; without it, `DatagramNotify` sends to the socket that
    `environ` names. `environ` also decides whether a watchdog is wanted.
    """

    def __init__(
        self, daemon: Any | None, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> None:
        environ = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        self.socket = environ.get("NOTIFY_SOCKET") or None
        #: Which sends: "systemd-python", "datagram" (DatagramNotify), or None when inactive.
        self.via: str | None = None
        if self.socket is not None:
            self.via = "datagram" if daemon is None else "systemd-python"
            daemon = DatagramNotify(self.socket) if daemon is None else daemon
        self._daemon = daemon
        self.active = self.socket is not None
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
