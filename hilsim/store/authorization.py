"""Who may charge without asking the CSMS: the authorization cache and the local list.

Both hold IdTagInfo rows; the cache is filled by Authorize/StartTransaction answers, the local
list only by SendLocalList (with its version).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from hilsim.store.database import Database, now

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedIdTag:
    """An idTag and the IdTagInfo it was last given (the cache), or was listed with (the list)."""

    id_tag: str
    status: str
    expiry_date: str | None
    parent_id_tag: str | None


#: An entry of the local authorization list: the same IdTagInfo, but set by SendLocalList.
ListedIdTag = CachedIdTag


class AuthorizationRepository:
    """The authorization cache and local list, written through the database's writer lock."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.connection

    async def cache_id_tag(
        self, id_tag: str, status: str, expiry_date: str | None, parent_id_tag: str | None
    ) -> None:
        async def run() -> None:
            async with self._database.transaction():
                await self._db.execute(
                    """
                    INSERT INTO authorization_cache (id_tag, status, expiry_date, parent_id_tag,
                        updated_at)
                    VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (id_tag) DO UPDATE
                        SET status = excluded.status, expiry_date = excluded.expiry_date,
                            parent_id_tag = excluded.parent_id_tag,
                            updated_at = excluded.updated_at
                    """,
                    (id_tag, status, expiry_date, parent_id_tag, now()),
                )

        await self._database.guard("update the authorization cache", run)

    async def cached_id_tag(self, id_tag: str) -> CachedIdTag | None:
        rows = await self._database.guard(
            "read the authorization cache",
            lambda: self._db.execute_fetchall(
                """
                SELECT id_tag, status, expiry_date, parent_id_tag FROM authorization_cache
                WHERE id_tag = ?
                """,
                (id_tag,),
            ),
        )
        for row in rows:
            return CachedIdTag(row[0], row[1], row[2], row[3])
        return None

    async def clear_authorization_cache(self) -> None:
        async def run() -> None:
            async with self._database.transaction():
                await self._db.execute("DELETE FROM authorization_cache")

        await self._database.guard("clear the authorization cache", run)

    async def local_list(self) -> tuple[int, list[ListedIdTag]]:
        """The stored list version (0 before the first SendLocalList) and its entries."""

        async def run() -> tuple[int, list[ListedIdTag]]:
            versions = list(
                await self._db.execute_fetchall(
                    "SELECT version FROM local_auth_list_version WHERE id = 1"
                )
            )
            rows = await self._db.execute_fetchall(
                "SELECT id_tag, status, expiry_date, parent_id_tag FROM local_auth_list "
                "ORDER BY id_tag"
            )
            entries = [ListedIdTag(row[0], row[1], row[2], row[3]) for row in rows]
            return (int(versions[0][0]) if versions else 0), entries

        return await self._database.guard("read the local authorization list", run)

    async def update_local_list(
        self,
        version: int,
        upserts: Sequence[ListedIdTag],
        removals: Sequence[str] = (),
        *,
        full: bool = False,
    ) -> None:
        """Apply one SendLocalList in one commit: all of it or, on any failure, none of it.

        ``full`` replaces the whole list with ``upserts`` (a Full update).
        """

        async def run() -> None:
            async with self._database.transaction(durable=True):
                if full:
                    await self._db.execute("DELETE FROM local_auth_list")
                await self._db.executemany(
                    "DELETE FROM local_auth_list WHERE id_tag = ?", [(tag,) for tag in removals]
                )
                await self._db.executemany(
                    """
                    INSERT INTO local_auth_list (id_tag, status, expiry_date, parent_id_tag)
                    VALUES (?, ?, ?, ?)
                    ON CONFLICT (id_tag) DO UPDATE
                        SET status = excluded.status, expiry_date = excluded.expiry_date,
                            parent_id_tag = excluded.parent_id_tag
                    """,
                    [(e.id_tag, e.status, e.expiry_date, e.parent_id_tag) for e in upserts],
                )
                await self._db.execute(
                    """
                    INSERT INTO local_auth_list_version (id, version, updated_at) VALUES (1, ?, ?)
                    ON CONFLICT (id) DO UPDATE
                        SET version = excluded.version, updated_at = excluded.updated_at
                    """,
                    (version, now()),
                )

        await self._database.guard("update the local authorization list", run)
