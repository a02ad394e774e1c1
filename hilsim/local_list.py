"""The local authorization list: idTags the CSMS sent with SendLocalList, kept across reboots.

OCPP 1.6 (3.5.3, 5.15) lets a CSMS give a charge point a versioned whitelist so that idTags are
recognised without asking it, online (LocalPreAuthorize) and offline (LocalAuthorizeOffline). The
list is applied all or nothing: every SendLocalList is checked completely first and then written
to SQLite in one commit, so a power cut or a bad entry never leaves half an update behind with a
version number that claims the whole of it.

Choices where the specification leaves one, as a real charger makes them:

* While LocalAuthListEnabled is false, SendLocalList is answered NotSupported (the list is not
  touched) and GetLocalListVersion answers -1: the charge point does not support a list *now*.
  The stored list and its version come back when the key is set to true again.
* An empty list has version 0, whatever version the update that emptied it carried (5.10: "0
  SHALL be used to indicate that the local authorization list is empty").
* A Differential update must carry a version greater than the current one, else VersionMismatch
  (the CSMS then sends a Full update); a Full update may carry any version, since it replaces
  everything. A version below 0, or 0 for a list that is not empty, is Failed.
* Failed: more entries than SendLocalListMaxLength, a result longer than LocalAuthListMaxLength,
  an idTag twice in one update, a Full entry without idTagInfo, an unreadable expiryDate, or the
  database refusing the write.
* idTags are CiString20: compared case-insensitively, kept as the CSMS spelt them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from hilsim.clock import parse_iso
from hilsim.errors import StoreError
from hilsim.keys import ConfigurationKeys
from hilsim.store import ListedIdTag, Store

log = logging.getLogger(__name__)


class UpdateStatus(StrEnum):
    """SendLocalList.conf status, as on the wire."""

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_SUPPORTED = "NotSupported"
    VERSION_MISMATCH = "VersionMismatch"


class UpdateType(StrEnum):
    FULL = "Full"
    DIFFERENTIAL = "Differential"


class _Refused(Exception):
    """An update that cannot be applied; the message says why, for the log."""

    def __init__(self, status: UpdateStatus, why: str) -> None:
        super().__init__(why)
        self.status = status


class LocalAuthList:
    """The list in memory (lookups happen per card swipe) and in SQLite (written through)."""

    def __init__(self, store: Store, keys: ConfigurationKeys) -> None:
        self.store = store
        self.keys = keys
        self._entries: dict[str, ListedIdTag] = {}  # casefolded idTag -> entry
        self._version = 0

    async def load(self) -> None:
        """Read the stored list; called once before the charge point connects."""
        version, entries = await self.store.local_list()
        self._version = version
        self._entries = {entry.id_tag.casefold(): entry for entry in entries}
        if entries:
            log.info("local authorization list version %d, %d idTag(s)", version, len(entries))

    # -- reading --------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self.keys.get("LocalAuthListEnabled"))

    @property
    def version(self) -> int:
        """The version of the list held, 0 when it is empty (whether enabled or not)."""
        return self._version if self._entries else 0

    def reported_version(self) -> int:
        """What GetLocalListVersion answers: -1 while the list is switched off."""
        return self.version if self.enabled else -1

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, id_tag: str) -> ListedIdTag | None:
        """The list's entry for an idTag, or None; whether the list is in use is the caller's."""
        return self._entries.get(id_tag.casefold())

    def entries(self) -> list[ListedIdTag]:
        return sorted(self._entries.values(), key=lambda entry: entry.id_tag.casefold())

    # -- SendLocalList --------------------------------------------------------------------------

    async def update(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: Sequence[Mapping[str, Any]] | None = None,
    ) -> UpdateStatus:
        """Apply a SendLocalList; ``local_authorization_list`` in snake_case, as handlers get it."""
        items = list(local_authorization_list or [])
        try:
            entries = self._apply(list_version, UpdateType(update_type), items)
        except _Refused as refusal:
            log.warning(
                "SendLocalList %s version %d with %d entr%s: %s (%s)",
                update_type,
                list_version,
                len(items),
                "y" if len(items) == 1 else "ies",
                refusal.status,
                refusal,
            )
            return refusal.status
        try:
            await self.store.update_local_list(list_version, list(entries.values()), full=True)
        except StoreError as exc:
            log.error("SendLocalList %s version %d: Failed (%s)", update_type, list_version, exc)
            return UpdateStatus.FAILED
        self._entries = entries
        self._version = list_version
        log.info(
            "local authorization list: %s update to version %d, now %d idTag(s)",
            update_type,
            self.version,
            len(entries),
        )
        return UpdateStatus.ACCEPTED

    def _apply(
        self, list_version: int, update_type: UpdateType, items: Sequence[Mapping[str, Any]]
    ) -> dict[str, ListedIdTag]:
        """The list as it would be after the update; raises _Refused instead of half-applying."""
        if not self.enabled:
            raise _Refused(UpdateStatus.NOT_SUPPORTED, "LocalAuthListEnabled is false")
        send_max = int(self.keys.get("SendLocalListMaxLength"))
        if len(items) > send_max:
            raise _Refused(UpdateStatus.FAILED, f"more than SendLocalListMaxLength ({send_max})")
        if list_version < 0:
            raise _Refused(UpdateStatus.FAILED, "a list version cannot be negative")
        if update_type == UpdateType.DIFFERENTIAL and list_version <= self.version:
            raise _Refused(
                UpdateStatus.VERSION_MISMATCH,
                f"a Differential update needs a version above the current {self.version}",
            )
        seen: set[str] = set()
        for item in items:
            folded = str(item["id_tag"]).casefold()
            if folded in seen:
                raise _Refused(UpdateStatus.FAILED, f"idTag {item['id_tag']} is in it twice")
            seen.add(folded)
        result = {} if update_type == UpdateType.FULL else dict(self._entries)
        for item in items:
            id_tag = str(item["id_tag"])
            info = item.get("id_tag_info")
            if info is None:
                if update_type == UpdateType.FULL:
                    raise _Refused(UpdateStatus.FAILED, f"idTag {id_tag} has no idTagInfo")
                result.pop(id_tag.casefold(), None)  # Differential without idTagInfo: remove
                continue
            result[id_tag.casefold()] = _entry(id_tag, info)
        list_max = int(self.keys.get("LocalAuthListMaxLength"))
        if len(result) > list_max:
            raise _Refused(
                UpdateStatus.FAILED,
                f"the list would hold {len(result)} idTags, more than LocalAuthListMaxLength "
                f"({list_max})",
            )
        if list_version == 0 and result:
            raise _Refused(UpdateStatus.FAILED, "version 0 means an empty list")
        return result


def _entry(id_tag: str, info: Mapping[str, Any]) -> ListedIdTag:
    expiry = info.get("expiry_date")
    if expiry is not None:
        try:
            parse_iso(str(expiry))
        except ValueError:
            raise _Refused(
                UpdateStatus.FAILED, f"idTag {id_tag} has an unreadable expiryDate {expiry!r}"
            ) from None
    parent = info.get("parent_id_tag")
    return ListedIdTag(
        id_tag,
        str(info["status"]),
        None if expiry is None else str(expiry),
        None if parent is None else str(parent),
    )
