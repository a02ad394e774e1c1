"""What the running service needs from whoever supervises it: systemd, or a person at a terminal.

`Service` receives one `Supervision` and calls it unconditionally; off systemd its notifier is
inactive, so the same code path runs in tests, on a laptop and on the Pi.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hilsim.config import Settings
from hilsim.daemon.bindings import SystemdBindings, load_bindings
from hilsim.daemon.logs import configured_log_level, say_systemd_missing
from hilsim.daemon.notify import Notifier
from hilsim.daemon.shutdown import ShutdownProbe

log = logging.getLogger(__name__)

DEFAULT_LEVEL = "INFO"


@dataclass(slots=True)
class Supervision:
    """The notifier, the shutdown probe and the log level policy, handed to `Service`."""

    notifier: Notifier = field(default_factory=Notifier.off)
    shutdown: ShutdownProbe = field(default_factory=ShutdownProbe)
    #: `--log-level` on the command line: wins over `[log] level`, also across reloads.
    log_level_override: str | None = None
    #: How often STATUS= is refreshed besides on every status or link change (power changes).
    status_interval_s: float = 5.0
    logger: logging.Logger | None = None

    @classmethod
    def from_environment(
        cls,
        bindings: SystemdBindings | None = None,
        *,
        log_level_override: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Supervision:
        """For `hilsim run`: sd_notify whenever NOTIFY_SOCKET is set, with systemd-python or not.

        Says once (here, the only place it is built) when systemd-python is missing.
        """
        bindings = load_bindings() if bindings is None else bindings
        say_systemd_missing(log, bindings, environ)
        return cls(
            notifier=Notifier(bindings.daemon, environ),
            log_level_override=log_level_override,
        )

    def apply_log_level(self, settings: Settings) -> str:
        """Set the root logger's level from the command line or `[log] level`; returns it."""
        level = self.log_level_override or configured_log_level(settings) or DEFAULT_LEVEL
        (self.logger or logging.getLogger()).setLevel(level)
        return level

    async def run(self, status: Callable[[], str]) -> None:
        """Watchdog pings and periodic STATUS= from this loop, until cancelled."""
        if not self.notifier.active:
            return
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.notifier.keep_alive(), name="watchdog")
            tasks.create_task(self._refresh_status(status), name="status")

    async def _refresh_status(self, status: Callable[[], str]) -> None:
        while True:
            await asyncio.sleep(self.status_interval_s)
            self.notifier.status(status())
