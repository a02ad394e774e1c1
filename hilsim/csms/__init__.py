"""The built-in OCPP 1.6J and 2.0.1 central system (CSMS): for ``hilsim demo``, tests and field
demos.

>>> async with CentralSystem(port=9000) as csms:          # doctest: +SKIP
...     session = await csms.wait_for_charge_point("CP1")
...     await session.wait_for("StatusNotification", lambda p: p["status"] == "Available")
...     await session.remote_start("04A2B3C4", connector_id=1)

A charge point connecting with the subprotocol ``ocpp2.0.1`` gets a
:class:`~hilsim.csms.session201.ChargePointSession201` instead (``session.ocpp_version``), with
the same ``wait_for``/``call_action`` and the 2.0.1 calls (``request_start``, ``get_variables``,
``get_base_report``...); its transactions are in ``csms.ledger201``.

The names load on first use (PEP 562): `hilsim csms send` imports :mod:`hilsim.csms.console`
without paying for websockets and the ``ocpp`` library, which only the server needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hilsim.csms.errors import CallTimeout, ChargePointCallError, ChargePointDisconnected
    from hilsim.csms.ledger import TransactionLedger, TransactionRecord
    from hilsim.csms.ledger201 import TransactionLedger201, TransactionRecord201
    from hilsim.csms.server import CentralSystem, serve
    from hilsim.csms.session import ChargePointSession, Message
    from hilsim.csms.session201 import ChargePointSession201

_HOMES = {
    "CallTimeout": "errors",
    "ChargePointCallError": "errors",
    "ChargePointDisconnected": "errors",
    "TransactionLedger": "ledger",
    "TransactionRecord": "ledger",
    "TransactionLedger201": "ledger201",
    "TransactionRecord201": "ledger201",
    "CentralSystem": "server",
    "serve": "server",
    "ChargePointSession": "session",
    "Message": "session",
    "ChargePointSession201": "session201",
}

__all__ = [
    "CallTimeout",
    "CentralSystem",
    "ChargePointCallError",
    "ChargePointDisconnected",
    "ChargePointSession",
    "ChargePointSession201",
    "Message",
    "TransactionLedger",
    "TransactionLedger201",
    "TransactionRecord",
    "TransactionRecord201",
    "serve",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
