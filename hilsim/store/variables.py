"""The device_variable table: OCPP 2.0.1 device-model values that have no 1.6 configuration key.

A variable that IS a 1.6 key (HeartbeatInterval, ...) lives in configuration_key only, so it is
never stored twice; this table holds the 2.0.1-only ones (TxStartPoint, OfflineThreshold, ...)
once SetVariables (or an operator) changed them. A row is text, keyed by the full address of one
attribute: component (name, instance, EVSE, connector), variable (name, instance), attribute type.
Absent means "the catalogue's default"; parsing and defaults belong to hilsim.device_model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hilsim.store.database import Database, now

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, order=True)
class VariableAddress:
    """Where one attribute value lives; '' and 0 stand for "no instance" and "no EVSE/connector"
    (the table's primary key cannot hold NULL)."""

    component: str
    component_instance: str = ""
    evse_id: int = 0
    connector_id: int = 0
    variable: str = ""
    variable_instance: str = ""
    attribute: str = "Actual"


class VariableRepository:
    """Reads and writes device variables, through the database's one writer lock."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.connection

    async def load_variables(self) -> dict[VariableAddress, str]:
        """Every stored value, by address."""
        rows = await self._database.guard(
            "read device variables",
            lambda: self._db.execute_fetchall(
                """
                SELECT component, component_instance, evse_id, connector_id, variable,
                    variable_instance, attribute, value
                FROM device_variable
                """
            ),
        )
        return {
            VariableAddress(str(c), str(ci), int(e), int(k), str(v), str(vi), str(a)): str(value)
            for c, ci, e, k, v, vi, a, value in rows
        }

    async def save_variable(self, address: VariableAddress, value: str) -> None:
        """Persist one value, committed and fsynced before returning: a SetVariables answered
        Accepted must survive a power cut."""

        async def run() -> None:
            async with self._database.transaction(durable=True):
                await self._db.execute(
                    """
                    INSERT INTO device_variable (component, component_instance, evse_id,
                        connector_id, variable, variable_instance, attribute, value, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (component, component_instance, evse_id, connector_id, variable,
                        variable_instance, attribute)
                    DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                    """,
                    (
                        address.component,
                        address.component_instance,
                        address.evse_id,
                        address.connector_id,
                        address.variable,
                        address.variable_instance,
                        address.attribute,
                        value,
                        now(),
                    ),
                )

        await self._database.guard(f"save device variable {address.variable}", run)
