"""Whether an idTag may charge: the CSMS when it answers, the authorization cache when it cannot.

OCPP 1.6 (3.5, and the keys LocalAuthorizeOffline, AllowOfflineTxForUnknownId, LocalPreAuthorize,
AuthorizationCacheEnabled) lets a charge point keep working while its link is down: a bench Pi
whose Wi-Fi dropped must still start a session for a tag it has seen accepted before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hilsim.clock import Clock, parse_iso
from hilsim.errors import CsmsError
from hilsim.keys import ConfigurationKeys
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.store import CachedIdTag, Store

log = logging.getLogger(__name__)

ACCEPTED = "Accepted"


@dataclass(frozen=True, slots=True)
class Decision:
    status: str  # an IdTagInfo status, e.g. Accepted, Invalid, Blocked, Expired
    parent_id_tag: str | None
    source: str  # "CSMS", "cache (online)", "cache (offline)", "offline, unknown idTag"


class Authorizer:
    def __init__(self, store: Store, keys: ConfigurationKeys, link: CsmsLink, clock: Clock):
        self.store = store
        self.keys = keys
        self.link = link
        self.clock = clock

    async def authorize(self, id_tag: str) -> Decision:
        cached = await self._cached(id_tag)
        usable = cached is not None and self._valid(cached)
        if self.link.state == LinkState.CONNECTED:
            if usable and self.keys.get("LocalPreAuthorize"):
                assert cached is not None
                return Decision(ACCEPTED, cached.parent_id_tag, "cache (online)")
            try:
                info = await self.link.submit(lambda c: c.authorize(id_tag), "Authorize")
            except CsmsError as exc:
                log.warning("Authorize %s failed (%s); deciding offline", id_tag, exc)
            else:
                await self.remember(id_tag, info)
                return Decision(str(info.get("status")), info.get("parent_id_tag"), "CSMS")
        if usable and self.keys.get("LocalAuthorizeOffline"):
            assert cached is not None
            return Decision(ACCEPTED, cached.parent_id_tag, "cache (offline)")
        if cached is None and self.keys.get("AllowOfflineTxForUnknownId"):
            return Decision(ACCEPTED, None, "offline, unknown idTag allowed")
        status = cached.status if cached is not None and cached.status != ACCEPTED else "Invalid"
        return Decision(status, None, "offline")

    async def remember(self, id_tag: str, info: dict[str, Any]) -> None:
        """Feed the cache with every IdTagInfo the CSMS returns (Authorize, StartTransaction)."""
        if not self.keys.get("AuthorizationCacheEnabled") or "status" not in info:
            return
        await self.store.cache_id_tag(
            id_tag, str(info["status"]), info.get("expiry_date"), info.get("parent_id_tag")
        )

    async def _cached(self, id_tag: str) -> CachedIdTag | None:
        if not self.keys.get("AuthorizationCacheEnabled"):
            return None
        return await self.store.cached_id_tag(id_tag)

    def _valid(self, cached: CachedIdTag) -> bool:
        if cached.status != ACCEPTED:
            return False
        if cached.expiry_date is None:
            return True
        try:
            return parse_iso(cached.expiry_date) > self.clock.now()
        except ValueError:
            return False
