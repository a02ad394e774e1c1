"""The one line `systemctl status hilsim` shows: the CSMS link and every connector at a glance.

Someone at a headless bench reads it over SSH before anything else, so it says in words what a
front panel would show: "connected to ws://csms:9000/PI-01 · C1 Charging 7.2 kW · C2 Available".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SEPARATOR = " · "

_LINK_TEXT = {
    "connected": "connected to {url}",
    "connecting": "connecting to {url}",
    "booting": "sending BootNotification to {url}",
    "pending": "BootNotification pending at {url}",
    "disconnected": "disconnected from {url}, retrying",
}

#: Statuses in which power may flow: the line shows the power there.
_POWER_STATUSES = ("Charging", "SuspendedEV", "SuspendedEVSE")


def status_line(snapshot: Mapping[str, Any]) -> str:
    """Build the line from `Charger.snapshot()` (the same data `hilsim ctl status` prints)."""
    csms = snapshot.get("csms") or {}
    state = str(csms.get("state") or "disconnected")
    url = csms.get("url") or "the CSMS"
    parts = [_LINK_TEXT.get(state, state + " {url}").format(url=url)]
    parts.extend(_connector_text(c) for c in snapshot.get("connectors") or ())
    return SEPARATOR.join(parts)


def _connector_text(connector: Mapping[str, Any]) -> str:
    status = str(connector.get("status"))
    text = f"C{connector.get('id')} {status}"
    if status in _POWER_STATUSES:
        text += f" {float(connector.get('power_W') or 0.0) / 1000:.1f} kW"
    error = connector.get("error_code")
    if error and error != "NoError":
        text += f" ({error})"
    return text
