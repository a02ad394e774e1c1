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


def command_line() -> list[str]:
    """The interpreter and the arguments this process was started with (options included)."""
    return [sys.executable, *sys.orig_argv[1:]]


def restart_process() -> NoReturn:
    argv = command_line()
    log.warning("Reset Hard: starting afresh: %s", " ".join(argv))
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
