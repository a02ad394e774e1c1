"""Whether an idTag may charge: the CSMS when it answers, the authorization cache when it cannot.

OCPP 1.6 (3.5, and the keys LocalAuthorizeOffline, AllowOfflineTxForUnknownId, LocalPreAuthorize,
AuthorizationCacheEnabled) lets a charge point keep working while its link is down: a bench Pi
whose Wi-Fi dropped must still start a session for a tag it has seen accepted before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hilsim.clock import Clock, parse_iso, utc_iso
from hilsim.errors import CsmsError, StoreError
from hilsim.keys import ConfigurationKeys
from hilsim.local_list import LocalAuthList
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.store import CachedIdTag, Store

log = logging.getLogger(__name__)

ACCEPTED = "Accepted"


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on an idTag and who gave it."""

    status: str  # an IdTagInfo status, e.g. Accepted, Invalid, Blocked, Expired
    parent_id_tag: str | None
    source: str  # "CSMS", "cache (online)", "local list (offline)", "offline, unknown idTag"


#: Told of an IdTagInfo from the CSMS that contradicts the local list (idTag, why).
ConflictListener = Callable[[str, str], None]
#: Told of every decision for a tag presented at a connector (connector id, the decision as
#: `last_decision` shows it), after the connector took it: `hilsim ctl tag`'s answer.
DecisionListener = Callable[[int, dict[str, Any]], None]


class Authorizer:
    """Decides per idTag: the local list first, then the authorization cache, then the CSMS.

    The local list takes precedence over the cache (3.5.3), and an idTag on it is never cached.
    LocalPreAuthorize and LocalAuthorizeOffline apply to both: an entry that is Accepted and not
    expired starts a transaction without asking the CSMS (online) or without the CSMS (offline).
    """

    def __init__(
        self,
        store: Store,
        keys: ConfigurationKeys,
        link: CsmsLink,
        clock: Clock,
        local_list: LocalAuthList | None = None,
    ):
        self.store = store
        self.keys = keys
        self.link = link
        self.clock = clock
        self.local_list = local_list
        self.conflict_listeners: list[ConflictListener] = []
        #: the last decision for a presented tag (connector, id_tag, status, source, at), for
        #: `hilsim ctl status`
        self.last_decision: dict[str, Any] | None = None
        self.decision_listeners: list[DecisionListener] = []
        #: OCPP 2.0.1's AuthCacheCtrlr.LifeTime in seconds, read each time a tag is cached: an
        #: entry expires that long after the CSMS last confirmed it, or at the CSMS's own
        #: expiry if sooner. None (1.6): only the CSMS's expiry counts.
        self.cache_lifetime_s: Callable[[], float] | None = None

    async def decide(
        self, connector_id: int, id_tag: str, take: Callable[[Decision], object]
    ) -> Decision:
        """The whole flow for a tag presented at a connector: decided (`authorize`), recorded
        for `ctl status`, handed to ``take`` (the charger feeds it to the connector's machine),
        then announced, so a listener sees the connector as the decision left it.
        """
        decision = await self.authorize(id_tag)
        log.info("C%d idTag %s: %s (%s)", connector_id, id_tag, decision.status, decision.source)
        self.last_decision = {
            "connector": connector_id,
            "id_tag": id_tag,
            "status": decision.status,
            "source": decision.source,
            "at": self.clock.iso(),
        }
        take(decision)
        for listener in list(self.decision_listeners):
            listener(connector_id, self.last_decision)
        return decision

    async def authorize(self, id_tag: str) -> Decision:
        """Local list, then cache, then Authorize.req within the link's response timeout, then
        the offline rules."""
        listed = self._listed(id_tag)
        known = listed if listed is not None else await self._cached(id_tag)
        where = "local list" if listed is not None else "cache"
        usable = known is not None and self._valid(known)
        if self.link.state == LinkState.CONNECTED:
            if usable and self.keys.get("LocalPreAuthorize"):
                assert known is not None
                return Decision(ACCEPTED, known.parent_id_tag, f"{where} (online)")
            # A deadline, whatever the link does: a connector must not wait on a tag forever.
            deadline = self.link.response_timeout
            try:
                async with asyncio.timeout(deadline):
                    info = await self.link.submit(lambda c: c.authorize(id_tag), "Authorize")
            except TimeoutError:
                log.warning("Authorize %s: no answer within %g s; deciding offline", id_tag,
                            deadline)  # fmt: skip
            except CsmsError as exc:
                log.warning("Authorize %s failed (%s); deciding offline", id_tag, exc)
            else:
                await self.remember(id_tag, info)
                return Decision(str(info.get("status")), info.get("parent_id_tag"), "CSMS")
        if usable and self.keys.get("LocalAuthorizeOffline"):
            assert known is not None
            return Decision(ACCEPTED, known.parent_id_tag, f"{where} (offline)")
        if known is None and self.keys.get("AllowOfflineTxForUnknownId"):
            return Decision(ACCEPTED, None, "offline, unknown idTag allowed")
        if known is None:
            return Decision("Invalid", None, "offline")
        if known.status != ACCEPTED:
            return Decision(known.status, None, f"{where} (offline)")
        if not usable:
            return Decision("Expired", None, f"{where} (offline)")
        return Decision("Invalid", None, f"{where} (offline, LocalAuthorizeOffline is false)")

    async def remember(self, id_tag: str, info: dict[str, Any]) -> None:
        """Take in every IdTagInfo the CSMS returns (Authorize, StartTransaction, StopTransaction).

        An idTag on the local list is not cached; an answer that contradicts its entry is
        reported (StatusNotification LocalListConflict, 3.5.3).
        """
        if "status" not in info:
            return
        listed = self._listed(id_tag)
        if listed is not None:
            why = self._conflict(listed, info)
            if why is not None:
                log.warning("local list conflict for idTag %s: %s", id_tag, why)
                for listener in self.conflict_listeners:
                    listener(id_tag, why)
            return
        if not self.keys.get("AuthorizationCacheEnabled"):
            return
        expiry = info.get("expiry_date")
        if self.cache_lifetime_s is not None:
            expiry = self._within_lifetime(expiry, self.cache_lifetime_s())
        try:
            await self.store.cache_id_tag(
                id_tag, str(info["status"]), expiry, info.get("parent_id_tag")
            )
        except StoreError as exc:
            # The CSMS's verdict stands; only the offline memory of it is missing.
            log.error("authorization cache not updated for idTag %s: %s", id_tag, exc)

    def _within_lifetime(self, expiry: str | None, lifetime_s: float) -> str:
        """The CSMS's expiry, or the end of the cache's lifetime from now if that is sooner."""
        end = self.clock.now() + timedelta(seconds=lifetime_s)
        if expiry is not None:
            try:
                if parse_iso(expiry) <= end:
                    return expiry
            except ValueError:
                pass  # an unreadable expiry is no expiry: the lifetime stands
        return utc_iso(end)

    def _listed(self, id_tag: str) -> CachedIdTag | None:
        local_list = self.local_list
        if local_list is None or not local_list.enabled:
            return None
        return local_list.get(id_tag)

    def _conflict(self, listed: CachedIdTag, info: dict[str, Any]) -> str | None:
        # ConcurrentTx means "Accepted, but already charging elsewhere" (MicroOcpp does the same).
        status = str(info["status"])
        status = ACCEPTED if status == "ConcurrentTx" else status
        local = listed.status
        if local == ACCEPTED and not self._valid(listed):
            local = "Expired"
        if status != local:
            return f"the list says {local}, the CSMS says {status}"
        if (listed.parent_id_tag or "") != (info.get("parent_id_tag") or ""):
            return (
                f"the list says parent {listed.parent_id_tag}, "
                f"the CSMS says {info.get('parent_id_tag')}"
            )
        return None

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
