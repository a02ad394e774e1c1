"""Why are we being stopped: `systemctl stop hilsim`, or is the whole system going down?

OCPP distinguishes the two in StopTransaction's reason: "Local" (stopped at the charge point) and
"Reboot" (the charge point is rebooting). Both arrive here as the same SIGTERM, so the rule is:

* the system is shutting down when `systemctl is-system-running` prints "stopping" (systemd
  reports that from the moment shutdown.target is queued, for reboot, poweroff, halt and kexec
  alike), or when /run/systemd/shutdown/scheduled (written by `shutdown +N`) holds a time that
  has already come;
* then the reason is Reboot; otherwise (a plain `systemctl stop`, `kill`, Ctrl-C) it is Local.

Asking takes at most `timeout_s`; a systemctl that is missing, slow or refuses means Local.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from hilsim.evse import StopReason

log = logging.getLogger(__name__)

SCHEDULED_SHUTDOWN = Path("/run/systemd/shutdown/scheduled")


class ShutdownProbe:
    """Decides the StopTransaction reason when the service is told to stop."""

    def __init__(
        self,
        systemctl: str = "systemctl",
        scheduled: Path = SCHEDULED_SHUTDOWN,
        timeout_s: float = 3.0,
    ) -> None:
        self.systemctl = systemctl
        self.scheduled = scheduled
        self.timeout_s = timeout_s

    async def stop_reason(self) -> StopReason:
        if await self.system_is_stopping() or self.scheduled_shutdown_due():
            log.info("the system is shutting down: transactions end with reason Reboot")
            return StopReason.REBOOT
        return StopReason.LOCAL

    async def system_is_stopping(self) -> bool:
        try:
            process = await asyncio.create_subprocess_exec(
                self.systemctl,
                "is-system-running",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            log.debug("cannot ask systemctl whether the system is stopping: %s", exc)
            return False
        try:
            out, _ = await asyncio.wait_for(process.communicate(), self.timeout_s)
        except TimeoutError:
            log.warning("systemctl is-system-running gave no answer within %g s", self.timeout_s)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return False
        state = out.decode(errors="replace").strip()
        log.debug("systemctl is-system-running: %s", state)
        return state == "stopping"

    def scheduled_shutdown_due(self, now: float | None = None) -> bool:
        """True when `shutdown +N` scheduled a shutdown whose time has come."""
        try:
            text = self.scheduled.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        try:
            due = int(fields["USEC"]) / 1_000_000
        except (KeyError, ValueError):
            return False
        return due <= (time.time() if now is None else now)
