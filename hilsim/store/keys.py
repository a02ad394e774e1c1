"""The configuration_key table: the OCPP configuration keys' values as text, and who set them.

Parsing and defaults belong to the keys' specs (hilsim.keys, via hilsim.stored_keys); this table
only knows names, text, and whether a value still follows the default ('default') or was set by
the CSMS or an operator ('changed').
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from hilsim.store.database import Database, now

logger = logging.getLogger(__name__)


class KeyRepository:
    """Reads and writes configuration keys, through the database's one writer lock."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.connection

    async def load_keys(self) -> dict[str, str]:
        """Canonical name -> stored text; parsing is left to KeySpec so it happens in one place."""
        rows = await self._database.guard(
            "read configuration keys",
            lambda: self._db.execute_fetchall(
                "SELECT name, value FROM configuration_key ORDER BY name"
            ),
        )
        return {name: value for name, value in rows}

    async def seed_keys(self, defaults: Mapping[str, str]) -> None:
        """Record default values without touching keys the CSMS changed.

        Missing keys are inserted with origin 'default'. Rows that are still 'default' are
        refreshed too, so a new release's default or an edited TOML seed (e.g. voltage_V) takes
        effect on restart instead of the first start's value sticking forever.
        """
        stamp = now()
        rows = [(name, text, stamp) for name, text in defaults.items()]

        async def run() -> None:
            async with self._database.transaction():
                await self._db.executemany(
                    """
                    INSERT INTO configuration_key (name, value, origin, updated_at)
                    VALUES (?, ?, 'default', ?)
                    ON CONFLICT (name) DO UPDATE
                        SET value = excluded.value, updated_at = excluded.updated_at
                        WHERE origin = 'default' AND value <> excluded.value
                    """,
                    rows,
                )

        await self._database.guard("seed configuration keys", run)

    async def save_key(self, name: str, text: str) -> None:
        """Persist a key the CSMS changed, so it survives a reboot; committed before returning."""

        async def run() -> None:
            async with self._database.transaction():
                await self._db.execute(
                    """
                    INSERT INTO configuration_key (name, value, origin, updated_at)
                    VALUES (?, ?, 'changed', ?)
                    ON CONFLICT (name) DO UPDATE
                        SET value = excluded.value, origin = 'changed',
                            updated_at = excluded.updated_at
                    """,
                    (name, text, now()),
                )

        await self._database.guard(f"save configuration key {name}", run)

    async def changed_keys(self) -> set[str]:
        """Names the CSMS has changed, i.e. those that no longer follow the defaults."""
        rows = await self._database.guard(
            "read configuration keys",
            lambda: self._db.execute_fetchall(
                "SELECT name FROM configuration_key WHERE origin = 'changed'"
            ),
        )
        return {name for (name,) in rows}
