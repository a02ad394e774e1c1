"""The handlers of the 2.0.1 CSMS's transaction CALLs (functional block E and F).

A mixin of `hilsim.ocpp201.client.ChargePointClient201`: RequestStartTransaction,
RequestStopTransaction, GetTransactionStatus, and TriggerMessage's TransactionEvent. Each
translates into the call the 1.6 handler makes of the charger (`remote_start`, `remote_stop`)
and tells the outbox's 2.0.1 dialect (`hilsim.ocpp201.transaction_events`) what the CSMS asked,
so that the TransactionEvent that follows carries it: the remoteStartId (triggerReason
RemoteStart), or stoppedReason Remote (triggerReason RemoteStop). A 2.0.1 transactionId is the
charge point's (a UUID); the charger knows the transaction by its local id (`local_id_of`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from hilsim.clock import Clock
from hilsim.ocpp.ports import Release, nothing
from hilsim.ocpp.routing import Reply, on
from hilsim.ocpp201.smart_charging import Refused, profile_to_16
from hilsim.ocpp201.transaction_events import TransactionEvents

log = logging.getLogger(__name__)


class TransactionOutbox(Protocol):
    """The charger's outbox (`hilsim.outbox.Outbox`)."""

    @property
    def messages(self) -> object:
        """The dialect: `TransactionEvents` in 2.0.1 mode."""
        ...

    @property
    def store(self) -> Any: ...


class TransactionCharger(Protocol):
    """What the transaction handlers need of the charge point (`hilsim.charger.Charger`)."""

    @property
    def connectors(self) -> Mapping[int, Any]: ...
    @property
    def outbox(self) -> TransactionOutbox: ...
    @property
    def wall(self) -> Clock: ...

    def remote_start(
        self, id_tag: str, connector_id: int | None, profile: dict[str, Any] | None
    ) -> tuple[str, Release]: ...

    def remote_stop(self, transaction_id: int) -> tuple[str, Release]: ...


class TransactionIds:
    """2.0.1 transactionId <-> local id, as the smart charging handlers ask for it."""

    def __init__(self, events: TransactionEvents) -> None:
        self.events = events

    def local_id(self, tx_id: str) -> int | None:
        return self.events.local_id_of(tx_id)

    def tx_id(self, local_id: int) -> str | None:
        return self.events.tx_id(local_id)


class TransactionHandlers:
    """RequestStartTransaction, RequestStopTransaction, GetTransactionStatus and the
    TransactionEvent of TriggerMessage."""

    # Provided by ChargePointClient201.
    charger: TransactionCharger

    @property
    def transaction_events(self) -> TransactionEvents:
        events = self.charger.outbox.messages
        if not isinstance(events, TransactionEvents):
            raise RuntimeError("the outbox does not speak OCPP 2.0.1")
        return events

    @property
    def transaction_ids(self) -> TransactionIds:
        """For `hilsim.ocpp201.smart_charging_handlers` (a TxProfile names a transactionId)."""
        return TransactionIds(self.transaction_events)

    @on("RequestStartTransaction", raw=True)
    def on_request_start_transaction(self, payload: dict[str, Any]) -> Reply:
        """Raw: the idToken goes into the TransactionEvent as the CSMS gave it (camelCase)."""
        id_token: dict[str, Any] = payload["idToken"]
        remote_start_id = int(payload["remoteStartId"])
        evse_id: int | None = payload.get("evseId")
        charging_profile: dict[str, Any] | None = payload.get("chargingProfile")
        events = self.transaction_events
        profile = None
        if charging_profile is not None:  # a TxProfile for the transaction it starts
            try:
                profile = profile_to_16(
                    evse_id or min(self.charger.connectors),  # a TxProfile needs an EVSE
                    charging_profile,
                    events.local_id_of,
                    received_at=self.charger.wall.now().timestamp(),
                    remote_start=True,
                )
            except Refused as refused:
                log.warning("RequestStartTransaction %d: its chargingProfile is refused (%s)",
                            remote_start_id, refused)  # fmt: skip
                return Reply({"status": "Rejected", "statusInfo": refused.payload()["statusInfo"]})
        before = {cid: events.open_tx_id(cid) for cid in self.charger.connectors}
        events.expect_remote_start(remote_start_id, id_token)
        status, release = self.charger.remote_start(
            str(id_token["idToken"]), evse_id, profile
        )
        taken = events.remote_started_on
        events.expect_remote_start(None, id_token)
        answer: dict[str, Any] = {"status": status}
        already = before.get(taken) if taken is not None else None
        if evse_id is not None and already is None:
            already = before.get(evse_id)
        if already is not None:
            answer["transactionId"] = already  # started before the request (plugged first)
        log.info("RequestStartTransaction %d for %s: %s", remote_start_id,
                 id_token.get("idToken"), status)  # fmt: skip
        return Reply(answer, release)

    @on("RequestStopTransaction")
    def on_request_stop_transaction(self, transaction_id: str, custom_data: Any = None) -> Reply:
        events = self.transaction_events
        local_id = events.local_id_of(transaction_id)
        evse_id = events.evse_of(transaction_id)
        if local_id is None or evse_id is None:
            log.info("RequestStopTransaction %s: no such transaction runs", transaction_id)
            return Reply({"status": "Rejected"})
        status, release = self.charger.remote_stop(local_id)
        if status != "Accepted":  # no machine transaction yet (before the power path closed)
            if not events.stop_open(evse_id, "Remote"):
                return Reply({"status": "Rejected"})
            status, release = "Accepted", nothing
        log.info("RequestStopTransaction %s: %s", transaction_id, status)
        return Reply({"status": status}, release)

    @on("GetTransactionStatus")
    async def on_get_transaction_status(
        self, transaction_id: str | None = None, custom_data: Any = None
    ) -> dict[str, Any]:
        events = self.transaction_events
        if transaction_id is None:
            return {"messagesInQueue": await self.charger.outbox.store.outbox_size() > 0}
        local_id = events.local_id_of(transaction_id)
        queued = 0 if local_id is None else await events.messages_queued(local_id)
        return {
            "ongoingIndicator": events.evse_of(transaction_id) is not None,
            "messagesInQueue": queued > 0,
        }

    def trigger_other(
        self, requested_message: str, evse_id: int | None
    ) -> tuple[str, Release] | None:
        """TriggerMessage TransactionEvent: an Updated (Trigger) of the EVSE's transaction, or
        of every open one; Rejected when there is none."""
        if requested_message != "TransactionEvent":
            return None
        events = self.transaction_events
        evses = [evse_id] if evse_id is not None else list(self.charger.connectors)
        open_on = [cid for cid in evses if events.open_tx_id(cid) is not None]
        if not open_on:
            return "Rejected", nothing

        def send() -> None:
            for cid in open_on:
                events.triggered(cid)

        return "Accepted", send
