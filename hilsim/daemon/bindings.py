"""systemd-python, imported only when asked for.

It is an optional extra (`hilsim[systemd]`, or Debian's `python3-systemd`) because it compiles
against libsystemd; a laptop without it must still run every command. So nothing imports it at
module level: the CLI asks once, and passes what it got to whoever needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Shown when systemd-python is missing, so the person knows both the effect and the remedy.
INSTALL_HINT = (
    "install it with `pip install 'hilsim[systemd]'` (needs libsystemd-dev and pkg-config) "
    "or `apt install python3-systemd`"
)


@dataclass(frozen=True, slots=True)
class SystemdBindings:
    """systemd-python's `daemon` and `journal` modules, or the reason they could not be loaded."""

    daemon: Any | None = None
    journal: Any | None = None
    missing: str | None = None

    @property
    def available(self) -> bool:
        return self.daemon is not None and self.journal is not None

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
