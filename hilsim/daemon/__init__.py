"""hilsim as a headless service: systemd notify and watchdog, journald logging, reloads, and why
it is being stopped. Everything systemd-specific sits here, at the edge; the service only sees a
`Supervision`.
"""

from hilsim.daemon.bindings import SystemdBindings, bindings_for, load_bindings
from hilsim.daemon.logs import configure_logging, configured_log_level, journal_fields
from hilsim.daemon.notify import Notifier
from hilsim.daemon.reload import ReloadPlan, describe, plan_reload
from hilsim.daemon.shutdown import ShutdownProbe
from hilsim.daemon.status import status_line
from hilsim.daemon.supervision import Supervision

__all__ = [
    "Notifier",
    "ReloadPlan",
    "ShutdownProbe",
    "Supervision",
    "SystemdBindings",
    "bindings_for",
    "configure_logging",
    "configured_log_level",
    "describe",
    "journal_fields",
    "load_bindings",
    "plan_reload",
    "status_line",
]
