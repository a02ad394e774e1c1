"""The built-in OCPP 1.6J central system (CSMS): for ``hilsim demo``, tests and field demos.

>>> async with CentralSystem(port=9000) as csms:          # doctest: +SKIP
...     session = await csms.wait_for_charge_point("CP1")
...     await session.wait_for("StatusNotification", lambda p: p["status"] == "Available")
...     await session.remote_start("04A2B3C4", connector_id=1)

The names load on first use (PEP 562): `hilsim csms send` imports :mod:`hilsim.csms.console`
without paying for websockets and the ``ocpp`` library, which only the server needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hilsim.csms.errors import CallTimeout, ChargePointCallError, ChargePointDisconnected
    from hilsim.csms.ledger import TransactionLedger, TransactionRecord
    from hilsim.csms.server import CentralSystem, serve
    from hilsim.csms.session import ChargePointSession, Message

_HOMES = {
    "CallTimeout": "errors",
    "ChargePointCallError": "errors",
    "ChargePointDisconnected": "errors",
    "TransactionLedger": "ledger",
    "TransactionRecord": "ledger",
    "CentralSystem": "server",
    "serve": "server",
    "ChargePointSession": "session",
    "Message": "session",
}

__all__ = [
    "CallTimeout",
    "CentralSystem",
    "ChargePointCallError",
    "ChargePointDisconnected",
    "ChargePointSession",
    "Message",
    "TransactionLedger",
    "TransactionRecord",
    "serve",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
