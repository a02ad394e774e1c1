"""hilsim as a headless service: systemd notify and watchdog, journald logging, reloads, and why
it is being stopped. Everything systemd-specific sits here, at the edge; the service only sees a
`Supervision`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562): `hilsim run` needs the bindings, logs and supervision at start,
# the reload plan only at a SIGHUP and the status line only under systemd.
_EXPORTS = {
    "SystemdBindings": "hilsim.daemon.bindings",
    "bindings_for": "hilsim.daemon.bindings",
    "load_bindings": "hilsim.daemon.bindings",
    "configure_logging": "hilsim.daemon.logs",
    "configured_log_level": "hilsim.daemon.logs",
    "journal_fields": "hilsim.daemon.logs",
    "Notifier": "hilsim.daemon.notify",
    "ReloadPlan": "hilsim.daemon.reload",
    "describe": "hilsim.daemon.reload",
    "plan_reload": "hilsim.daemon.reload",
    "ShutdownProbe": "hilsim.daemon.shutdown",
    "status_line": "hilsim.daemon.status",
    "Supervision": "hilsim.daemon.supervision",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hilsim.daemon' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
