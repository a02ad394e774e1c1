"""Reset Hard: the program starts afresh in the same process, after a clean shutdown.

The service has ended its transactions (reason HardReset), closed the database and the control
socket and put the panel dark; then the process replaces itself with a new run of the same
command line (`os.execv`). Everything is read again from scratch: the configuration file, the
database, the pins, the CSMS connection and its BootNotification.

Why exec and not a non-zero exit for systemd's `Restart=on-failure` to turn into a restart: the
unit waits RestartSec=5 before such a restart and counts it against StartLimitBurst=5 in 5
minutes, so a CSMS test suite that resets the charger six times in a row would leave it stopped
for good; and a `hilsim run` started by hand at a bench would simply end. With exec the PID stays
the same, so systemd (told RELOADING=1, then READY=1 by the new run) keeps supervising it, and
the watchdog keeps its owner.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

log = logging.getLogger(__name__)

#: Carries, across the exec, why the new run starts: OCPP 2.0.1's BootNotification says it.
BOOT_REASON_VARIABLE = "HILSIM_BOOT_REASON"
#: The 2.0.1 BootReasonEnumType values a restart of this process can stand for.
RESTART_BOOT_REASONS = frozenset({"RemoteReset", "FirmwareUpdate", "ScheduledReset", "LocalReset"})


def command_line() -> list[str]:
    """The interpreter and the arguments this process was started with (options included)."""
    return [sys.executable, *sys.orig_argv[1:]]


def restart_process(boot_reason: str = "RemoteReset") -> NoReturn:
    """``boot_reason``: what the new run's 2.0.1 BootNotification gives as its reason."""
    argv = command_line()
    log.warning("Reset Hard: starting afresh: %s", " ".join(argv))
    os.environ[BOOT_REASON_VARIABLE] = boot_reason
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def boot_reason_after_restart() -> str:
    """Why this run started: the reason the run before it exec'd with, once (taken out of the
    environment, so a child process or a later start does not inherit it), else PowerUp. The
    variable comes from outside this run: only a known reason is believed."""
    reason = os.environ.pop(BOOT_REASON_VARIABLE, None)
    if reason is None:
        return "PowerUp"
    if reason not in RESTART_BOOT_REASONS:
        log.warning("%s=%r is not a boot reason hilsim restarts with; booting with PowerUp",
                    BOOT_REASON_VARIABLE, reason)  # fmt: skip
        return "PowerUp"
    return reason
