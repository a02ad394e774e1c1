"""`python -m hilsim.daemon.checks FILE`: would `hilsim run` accept this config?

The installer runs it before restarting the service, so an upgrade never swaps a running charge
point for one that exits at once with a config error. It runs every validation `hilsim run`
does before touching hardware or the network (core settings, the control socket's path, `[log]`,
the panel's pins, the meters, the demo page), and nothing else: no database, no GPIO, no serial
port.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hilsim.config import Settings, load_settings
from hilsim.control import check_socket_path
from hilsim.daemon.logs import configured_log_level
from hilsim.errors import HilsimError


def check_config(path: str | Path) -> Settings:
    """Load and validate `path` as `hilsim run` would; raises the same ConfigError it would."""
    from hilsim.meter.config import meter_settings
    from hilsim.panel import load_panel_settings
    from hilsim.web.config import load_web_settings

    settings = load_settings(path)
    # A stat, nothing created.
    check_socket_path(settings.control.socket, settings.source, database=settings.storage.database)
    configured_log_level(settings)
    load_panel_settings(settings)
    meter_settings(settings)
    load_web_settings(settings)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m hilsim.daemon.checks CONFIG_FILE", file=sys.stderr)
        return 2
    try:
        check_config(args[0])
    except HilsimError as exc:
        print(f"hilsim: {exc}", file=sys.stderr)
        return exc.exit_status
    print(f"{args[0]}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
