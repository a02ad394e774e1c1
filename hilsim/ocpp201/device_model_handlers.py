"""The handlers of the CSMS's OCPP 2.0.1 device-model CALLs: GetVariables, SetVariables,
GetBaseReport and GetReport, with the NotifyReport frames they set off; and NotifyEvent for a
variable that changed for another reason than a SetVariables.

A mixin of `hilsim.ocpp201.client.ChargePointClient201`: each handler translates the wire form
(the router hands it the payload's fields in snake_case) to one call of the charge point's
`DeviceModel` and turns the answer into the CALLRESULT payload. The reports follow the answer as
its `Reply` after-step, so the CSMS sees Accepted before the first NotifyReport (B07.FR.01).

DeviceDataCtrlr's limits are enforced as OCPP 2.0.1 says: more items than ItemsPerMessage is a
CALLERROR OccurrenceConstraintViolation, a message longer than BytesPerMessage a CALLERROR
FormatViolation (B06.FR.16/17 for GetVariables, B08.FR.17/18 for GetReport, and alike for
SetVariables), raised as `CallErrorReply` for the client's router to answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from hilsim.device_model import (
    Component,
    DeviceModel,
    VariableChange,
    chunks,
    event_data,
    get_variables,
    set_variables,
)
from hilsim.ocpp.routing import Reply, on

log = logging.getLogger(__name__)


class CallErrorReply(Exception):
    """A CALL the handler answers with a CALLERROR (``code``, ``description``), not a result."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class Wall(Protocol):
    def iso(self) -> str: ...


class DeviceModelHost(Protocol):
    """What the handlers need of the charge point: its device model and its wall clock."""

    @property
    def device_model(self) -> DeviceModel: ...

    @property
    def wall(self) -> Wall: ...


_CAMEL = {"connector_id": "connectorId", "attribute_type": "attributeType",
          "attribute_value": "attributeValue"}  # fmt: skip


def wire_form(data: Any) -> Any:
    """A snake_case item of a request back in its wire (camelCase) form, without customData:
    results echo the request's component and variable as sent."""
    if isinstance(data, Mapping):
        return {
            _CAMEL.get(key, key): wire_form(value)
            for key, value in data.items()
            if key != "custom_data"
        }
    if isinstance(data, list):
        return [wire_form(value) for value in data]
    return data


def _size(payload: Any) -> int:
    """The length of the payload as it travels (compact JSON, ASCII), the BytesPerMessage check."""
    return len(json.dumps(payload, separators=(",", ":")))


class DeviceModelHandlers:
    """One handler per device-model action, named as in the spec; and NotifyEvent."""

    # Provided by ChargePointClient201.
    charger: DeviceModelHost
    call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

    def _limits(self, instance: str, items: list[Any], payload: Any) -> None:
        """``payload``: the request as received (its customData counts towards the bytes)."""
        model = self.charger.device_model
        most = int(model.text("DeviceDataCtrlr", "ItemsPerMessage", instance))
        size = int(model.text("DeviceDataCtrlr", "BytesPerMessage", instance))
        if len(items) > most:
            raise CallErrorReply(
                "OccurrenceConstraintViolation",
                f"{len(items)} items, more than ItemsPerMessage {instance} ({most})",
            )
        if _size(payload) > size:
            raise CallErrorReply(
                "FormatViolation", f"longer than BytesPerMessage {instance} ({size} bytes)"
            )

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]]) -> dict[str, Any]:
        items = wire_form(get_variable_data)
        self._limits("GetVariables", items, get_variable_data)
        return {"getVariableResult": get_variables(self.charger.device_model, items)}

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]]) -> dict[str, Any]:
        items = wire_form(set_variable_data)
        self._limits("SetVariables", items, set_variable_data)
        return {"setVariableResult": await set_variables(self.charger.device_model, items)}

    @on("GetBaseReport")
    def on_get_base_report(self, request_id: int, report_base: str) -> Reply | dict[str, Any]:
        data = self.charger.device_model.report(report_base)
        if data is None:
            return {"status": "NotSupported"}
        if not data:
            return {"status": "EmptyResultSet"}
        return Reply({"status": "Accepted"}, lambda: self.notify_report(request_id, data))

    @on("GetReport")
    def on_get_report(
        self,
        request_id: int,
        component_variable: list[dict[str, Any]] | None = None,
        component_criteria: list[str] | None = None,
    ) -> Reply | dict[str, Any]:
        wanted = wire_form(component_variable or [])
        self._limits("GetReport", wanted, component_variable)
        chosen = [
            (
                Component.from_wire(item["component"]),
                item.get("variable", {}).get("name"),
                item.get("variable", {}).get("instance"),
            )
            for item in wanted
        ]
        data = self.charger.device_model.custom_report(chosen, component_criteria or ())
        if not data:
            return {"status": "EmptyResultSet"}
        return Reply({"status": "Accepted"}, lambda: self.notify_report(request_id, data))

    async def notify_report(self, request_id: int, data: list[dict[str, Any]]) -> None:
        """The report in NotifyReport frames of ItemsPerMessage GetReport items, in order;
        seqNo counts from 0, tbc says another follows. NotifyReport is no transaction message:
        one the link loses is not sent again (the CSMS asks for the report again)."""
        model = self.charger.device_model
        per_message = int(model.text("DeviceDataCtrlr", "ItemsPerMessage", "GetReport"))
        pieces = chunks(data, per_message)
        generated_at = self.charger.wall.iso()
        for seq_no, piece in enumerate(pieces):
            payload: dict[str, Any] = {
                "requestId": request_id,
                "generatedAt": generated_at,
                "seqNo": seq_no,
                "reportData": piece,
            }
            if seq_no < len(pieces) - 1:
                payload["tbc"] = True
            try:
                await self.call("NotifyReport", payload)
            except Exception as exc:  # the CSMS may ask again; nothing to undo
                log.warning("NotifyReport %d (part %d) not delivered: %s", request_id, seq_no, exc)
                return

    async def notify_event(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """One NotifyEvent (seqNo 0, complete) for these EventData."""
        payload = {"generatedAt": self.charger.wall.iso(), "seqNo": 0, "eventData": events}
        return await self.call("NotifyEvent", payload)


def forward_changes(
    model: DeviceModel,
    submit: Callable[[Callable[[Any], Awaitable[Any]], str], object],
    now: Callable[[], str],
) -> Callable[[], None]:
    """Send a NotifyEvent for each variable that changed for another reason than a SetVariables
    (the operator's `hilsim config set`, a connector's AvailabilityState); returns the
    unsubscribe. ``submit(job, name)`` queues ``job(client)`` on the link (`CsmsLink.submit`
    with quiet=True: while the link is down an event is dropped, not queued), ``now()`` stamps
    the event."""
    counter = iter(range(1, 2**31))

    def changed(change: VariableChange) -> None:
        if change.by_csms or change.value is None:
            return
        event = event_data(change.variable, change.value, next(counter), now())
        log.info("NotifyEvent %s = %s", change.variable.label(), change.value)
        submit(lambda client: client.notify_event([event]), "NotifyEvent")

    return model.subscribe(changed)
