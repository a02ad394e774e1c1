"""What `hilsim ctl status` (and DataTransfer Status, and a diagnostics archive) says about a
connector and the CSMS link: plain dicts of JSON values, built from the services' state."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from hilsim.clock import utc_iso
from hilsim.connectors import ConnectorRuntime
from hilsim.meter import MeterReading, MeterSource
from hilsim.ocpp.session import CsmsLink

log = logging.getLogger(__name__)


def connector_snapshot(
    rt: ConnectorRuntime, now: float, transaction_id: int | str | None
) -> dict[str, Any]:
    """One connector: its status, transaction, meter reading and limits. ``transaction_id``:
    the id the CSMS knows the transaction by (1.6 an integer, 2.0.1 a UUID)."""
    state = rt.machine.state
    reading = rt.meter.read(now)
    tx = state.transaction
    return {
        "id": rt.id,
        "status": str(state.status),
        "error_code": str(rt.ocpp_status[1]),
        "plugged": state.plugged,
        "transaction_id": transaction_id,
        "local_transaction_id": state.local_id,
        "id_tag": tx.id_tag if tx else None,
        "energy_Wh": round(reading.energy_Wh, 1),
        "power_W": _round(reading.power_W, 1),
        "current_A": _round(reading.current_A, 2),
        "voltage_V": _round(reading.voltage_V, 1),
        "soc": round(rt.vehicle.soc(reading.energy_Wh), 1) if tx else None,
        "limit_W": rt.limit_W,
        "max_power_W": rt.settings.max_power_W,
        "phases": rt.phases,
        "meter": _meter_status(rt.meter, reading, now),
    }


def link_snapshot(link: CsmsLink) -> dict[str, Any]:
    """The CSMS link: where, in what state, since when, with what security."""
    return {
        "url": link.endpoint,
        # "1.6" or "2.0.1": what the link speaks (its subprotocol without "ocpp")
        "ocpp_version": link.subprotocol.removeprefix("ocpp"),
        "state": str(link.state),
        "connected_since": _iso_or_none(link.connected_since),
        "last_message_at": _iso_or_none(link.last_message_at),
        "security": link.security.snapshot() if link.security else None,
    }


def _iso_or_none(wall: float | None) -> str | None:
    if wall is None:
        return None
    return utc_iso(datetime.fromtimestamp(wall, UTC))


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _meter_status(meter: MeterSource, reading: MeterReading, now: float) -> dict[str, Any]:
    """The meter part of `ctl status`: where it is, whether it answers, and per-phase values."""
    health = meter.health
    return {
        "source": meter.description,
        "health": str(health.state),
        "problem": str(health.problem) if health.problem else None,
        "detail": health.detail or None,
        "for_s": round(now - health.since, 1) if health.problem else None,
        "reading_age_s": None if reading.taken_at is None else round(now - reading.taken_at, 1),
        "frequency_Hz": _round(reading.frequency_Hz, 2),
        "phases": [
            {
                "phase": p.phase,
                "energy_Wh": _round(p.energy_Wh, 1),
                "power_W": _round(p.power_W, 1),
                "current_A": _round(p.current_A, 2),
                "voltage_V": _round(p.voltage_V, 1),
            }
            for p in reading.phases
        ],
    }
