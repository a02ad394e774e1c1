"""What the page is told: picked field by field from the charger's snapshot, never passed whole.

Whatever is added to `Charger.snapshot()` later does not reach a browser on a shared network by
accident; a secret has to be put here on purpose to leak. The connector's colour and rhythm come
from the panel's LED language (`hilsim.panel.lights`), so the page and the LEDs cannot disagree.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hilsim.evse import Status
from hilsim.ocpp.client import Identity
from hilsim.panel.lights import connector_indication

_CONNECTOR_FIELDS = (
    "id",
    "status",
    "error_code",
    "plugged",
    "transaction_id",
    "id_tag",
    "energy_Wh",
    "power_W",
    "current_A",
    "soc",
    "limit_W",
    "max_power_W",
)


def connector_view(snapshot: dict[str, Any], *, online: bool) -> dict[str, Any]:
    view = {name: snapshot.get(name) for name in _CONNECTOR_FIELDS}
    try:
        light = connector_indication(Status(snapshot["status"]), rgb=True, online=online)
    except (KeyError, ValueError):
        view["led"] = {"colour": "none", "pattern": "off"}
    else:
        view["led"] = {"colour": light.colour, "pattern": str(light.pattern)}
    meter = snapshot.get("meter") or {}
    view["meter"] = {
        "source": meter.get("source"),
        "health": meter.get("health"),
        "problem": meter.get("problem"),
    }
    return view


def csms_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    csms = snapshot.get("csms") or {}
    return {
        "url": public_url(csms.get("url")),
        "state": csms.get("state"),
        "connected_since": csms.get("connected_since"),
        "last_message_at": csms.get("last_message_at"),
    }


def identity_view(charge_point_id: str | None, identity: Identity | None) -> dict[str, Any]:
    """What BootNotification tells the CSMS: the same things, readable on the page."""
    fields: dict[str, Any] = {"id": charge_point_id}
    if identity is not None:
        for name in (
            "vendor",
            "model",
            "firmware_version",
            "serial_number",
            "charge_box_serial_number",
            "meter_serial_number",
            "meter_type",
        ):
            fields[name] = getattr(identity, name, None)
    return fields


def public_url(url: object) -> str | None:
    """The CSMS URL without user, password or query: any of them may be a credential."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparseable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
