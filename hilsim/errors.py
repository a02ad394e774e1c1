"""One exception tree for hilsim.

Adapters translate foreign exceptions (sqlite3, websockets, OSError, tomllib) into these at the
boundary, so the CLI can turn any of them into one clear line and an exit status instead of a
traceback. Each also derives from the closest builtin so generic handlers keep working.
"""

from __future__ import annotations


class HilsimError(Exception):
    """Root of every error hilsim raises on purpose."""

    #: Process exit status the CLI uses when this error ends a command.
    exit_status = 1


class ConfigError(HilsimError, ValueError):
    """The configuration file is missing, unreadable or wrong.

    The message always names the file, the key and what was expected, because the person reading
    it is usually standing at a bench with a Pi and no debugger.
    """

    exit_status = 2

    def __init__(self, file: str, key: str | None, expected: str) -> None:
        self.file = file
        self.key = key
        self.expected = expected
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {expected}")


class StoreError(HilsimError, OSError):
    """The SQLite database cannot be opened, migrated or written."""


class StoreSetupError(StoreError):
    """The database cannot be used at all, and starting again will not change that.

    Its directory cannot be created, a file is not readable or writable by the service's user,
    the path is not a regular file: the operator has to fix it. Exit 2 like a config error, so
    systemd (RestartPreventExitStatus=2) does not restart-loop on it.
    """

    exit_status = 2


class DatabaseInUseError(StoreSetupError):
    """Another hilsim holds the database's lock: two services on one database must never run."""


class CsmsError(HilsimError, ConnectionError):
    """The central system cannot be reached or refused the charge point."""


class ControlError(HilsimError, ConnectionError):
    """`hilsim ctl` cannot talk to the running service, or the service refused the command."""


class MeterError(HilsimError, OSError):
    """An energy meter cannot be read."""


class PanelError(HilsimError, RuntimeError):
    """GPIO pins cannot be claimed or driven."""

    exit_status = 2
