"""The handlers of the CSMS's OCPP 2.0.1 device-model CALLs: GetVariables, SetVariables,
GetBaseReport and GetReport, with the NotifyReport frames they set off; and NotifyEvent for a
variable that changed for another reason than a SetVariables.

A mixin of `hilsim.ocpp201.client.ChargePointClient201`: each handler takes the payload as it
came (``@on(action, raw=True)``: a result echoes the request's component and variable as sent,
and the BytesPerMessage check measures what came) and makes one call of the charge point's
`DeviceModel`, whose answer is the CALLRESULT payload. The reports follow the answer as
its `Reply` after-step, so the CSMS sees Accepted before the first NotifyReport (B07.FR.01).

DeviceDataCtrlr's limits are enforced as OCPP 2.0.1 says: more items than ItemsPerMessage is a
CALLERROR OccurrenceConstraintViolation, a message longer than BytesPerMessage a CALLERROR
FormatViolation (B06.FR.16/17 for GetVariables, B08.FR.17/18 for GetReport, and alike for
SetVariables), raised as `CallErrorReply` for the client's router to answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from hilsim.device_model import (
    Component,
    DeviceModel,
    Variable,
    VariableChange,
    chunks,
    event_data,
    get_variables,
    set_variables,
)
from hilsim.errors import CsmsError
from hilsim.ocpp.routing import CallErrorReply, Reply, on

log = logging.getLogger(__name__)


class Wall(Protocol):
    def iso(self) -> str: ...


class EventIds(Protocol):
    """`hilsim.ocpp201.client.Memory201`: NotifyEvent's eventIds, unique for the process."""

    event_ids: Iterator[int]


class DeviceModelHost(Protocol):
    """What the handlers need of the charge point: its device model and its wall clock."""

    @property
    def device_model(self) -> DeviceModel: ...

    @property
    def wall(self) -> Wall: ...


def _size(payload: Any) -> int:
    """The length of the payload as it travels (compact JSON, ASCII), the BytesPerMessage check."""
    return len(json.dumps(payload, separators=(",", ":")))


class DeviceModelHandlers:
    """One handler per device-model action, named as in the spec; and NotifyEvent."""

    # Provided by ChargePointClient201.
    charger: DeviceModelHost
    call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
    after_configuration_change: Callable[[], None] | None
    memory: EventIds

    def _device_data_limits(self, instance: str, items: list[Any], payload: Any) -> None:
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

    @on("GetVariables", raw=True)
    def on_get_variables(self, payload: dict[str, Any]) -> dict[str, Any]:
        items = payload["getVariableData"]
        self._device_data_limits("GetVariables", items, payload)
        return {"getVariableResult": get_variables(self.charger.device_model, items)}

    @on("SetVariables", raw=True)
    async def on_set_variables(self, payload: dict[str, Any]) -> Reply:
        """Each item validated, persisted and applied in order; a new SecurityProfile or
        BasicAuthPassword connects again once the answer is on the wire (as ChangeConfiguration
        does in 1.6)."""
        items = payload["setVariableData"]
        self._device_data_limits("SetVariables", items, payload)
        results = await set_variables(self.charger.device_model, items)
        return Reply({"setVariableResult": results}, self.after_configuration_change)

    @on("GetBaseReport")
    def on_get_base_report(
        self, request_id: int, report_base: str, custom_data: Any = None
    ) -> Reply | dict[str, Any]:
        data = self.charger.device_model.report(report_base)
        if data is None:
            return {"status": "NotSupported"}
        if not data:
            return {"status": "EmptyResultSet"}
        return Reply({"status": "Accepted"}, lambda: self.notify_report(request_id, data))

    @on("GetReport", raw=True)
    def on_get_report(self, payload: dict[str, Any]) -> Reply | dict[str, Any]:
        """The variables componentVariable names (all of a component without a variable), of
        the components meeting every componentCriteria; EmptyResultSet when none."""
        wanted = payload.get("componentVariable", [])
        self._device_data_limits("GetReport", wanted, payload)
        chosen = [
            (
                Component.from_wire(item["component"]),
                item.get("variable", {}).get("name"),
                item.get("variable", {}).get("instance"),
            )
            for item in wanted
        ]
        criteria = payload.get("componentCriteria", [])
        data = self.charger.device_model.custom_report(chosen, criteria)
        if not data:
            return {"status": "EmptyResultSet"}
        request_id = int(payload["requestId"])
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
            except (CsmsError, TimeoutError, OSError) as exc:  # the CSMS may ask again
                log.warning("NotifyReport %d (part %d) not delivered: %s", request_id, seq_no, exc)
                return

    async def notify_variable(self, variable: Variable, value: str, timestamp: str) -> None:
        """NotifyEvent (seqNo 0, complete): a variable's Actual value changed."""
        event = event_data(variable, value, next(self.memory.event_ids), timestamp)
        await self.call("NotifyEvent", {"generatedAt": timestamp, "seqNo": 0, "eventData": [event]})


def forward_changes(
    model: DeviceModel,
    submit: Callable[[Callable[[Any], Awaitable[Any]], str], object],
    now: Callable[[], str],
    connected: Callable[[], bool],
) -> Callable[[], None]:
    """Send a NotifyEvent for each variable that changed for another reason than a SetVariables
    (the operator's `hilsim config set`); returns the unsubscribe.

    ``submit(job, name)`` queues ``job(client)`` on the link (`CsmsLink.submit`, quiet), ``now()``
    stamps the event. While not ``connected()`` an event is dropped, not queued: the CSMS reads
    the variables again when it is back, and the HeartbeatInterval a BootNotification answer
    sets (applied while booting) is the CSMS's own news.
    """

    def changed(change: VariableChange) -> None:
        if change.by_csms or change.value is None:
            return
        variable, value = change.variable, change.value
        if not connected():
            log.debug("%s = %s while not connected: no NotifyEvent", variable.label(), value)
            return
        timestamp = now()
        log.info("NotifyEvent %s = %s", variable.label(), value)
        submit(lambda client: client.notify_variable(variable, value, timestamp), "NotifyEvent")

    return model.subscribe(changed)
