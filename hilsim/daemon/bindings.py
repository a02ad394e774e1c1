"""systemd-python, imported only when asked for.

It is an optional extra (`hilsim[systemd]`, or Debian's `python3-systemd`) because it compiles
against libsystemd; a laptop without it must still run every command, and a service without it
still notifies systemd (`hilsim.daemon.notify.DatagramNotify`) and logs to the journal as plain
lines; only the journal's structured fields need it. So nothing imports it at
module level: the CLI asks once, and passes what it got to whoever needs it. Outside systemd it
is only looked for, not imported: loading it pulls in uuid and platform, ~5 ms of a cold start
that a run at a terminal (no notify socket, no journal) would never use.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Shown when systemd-python is missing, so the person knows both the effect and the remedy.
INSTALL_HINT = (
    "install it with `pip install 'hilsim[systemd]'` (needs libsystemd-dev and pkg-config) "
    "or `apt install python3-systemd`"
)


#: What systemd sets for the processes it starts (systemd.exec(5)); with none of them there is no
#: notify socket to talk to and no journal to log to.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM", "WATCHDOG_USEC")


@dataclass(frozen=True, slots=True)
class SystemdBindings:
    """systemd-python's `daemon` and `journal` modules, or the reason they could not be loaded.

    Both None with no reason: installed, but not loaded because nothing here needs it.
    """

    daemon: Any | None = None
    journal: Any | None = None
    missing: str | None = None

    @property
    def available(self) -> bool:
        """Installed (whether or not loaded): nothing to warn about."""
        return self.missing is None

    @classmethod
    def absent(cls, reason: str = "not loaded") -> SystemdBindings:
        return cls(None, None, reason)


def load_bindings() -> SystemdBindings:
    """Import systemd-python now; never raises (Python caches the modules in sys.modules)."""
    try:
        from systemd import daemon, journal
    except ImportError as exc:
        # A checkout has a `systemd/` folder (the unit file); without the real package Python
        # sees it as an empty namespace package, hence "cannot import name" rather than
        # "no module named". Both mean the same here.
        return SystemdBindings.absent(f"systemd-python is not installed ({exc})")
    return SystemdBindings(daemon=daemon, journal=journal)


def bindings_for(environ: Mapping[str, str]) -> SystemdBindings:
    """What a command started with ``environ`` needs: the modules under systemd, else a look.

    Looking (find_spec) tells an installed systemd-python from a missing one without importing
    it, so the note that sd_notify and the journal are off is still given when it is missing.
    """
    if any(environ.get(name) for name in SYSTEMD_VARIABLES):
        return load_bindings()
    try:
        found = all(
            importlib.util.find_spec(f"systemd.{name}") is not None
            for name in ("daemon", "journal")
        )
    except (ImportError, ValueError) as exc:  # no `systemd` at all, or a broken one
        return SystemdBindings.absent(f"systemd-python is not installed ({exc})")
    if not found:  # e.g. a checkout's systemd/ folder (the unit file) seen as a namespace
        return SystemdBindings.absent("systemd-python is not installed (no systemd.journal)")
    return SystemdBindings()
