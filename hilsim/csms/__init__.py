"""The built-in OCPP 1.6J central system (CSMS): for ``hilsim demo``, tests and field demos.

>>> async with CentralSystem(port=9000) as csms:          # doctest: +SKIP
...     session = await csms.wait_for_charge_point("CP1")
...     await session.wait_for("StatusNotification", lambda p: p["status"] == "Available")
...     await session.remote_start("04A2B3C4", connector_id=1)
"""

from hilsim.csms.errors import CallTimeout, ChargePointCallError, ChargePointDisconnected
from hilsim.csms.ledger import TransactionLedger, TransactionRecord
from hilsim.csms.server import CentralSystem, serve
from hilsim.csms.session import ChargePointSession, Message

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
