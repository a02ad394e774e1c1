"""Wiring: build the store, keys, charger, CSMS link and control socket, and run them together.

Everything that lives for the whole process is started here under one TaskGroup, so a crash in
any part ends the service visibly (systemd restarts it) instead of leaving a half-alive charger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

import ocpp.messages

from hilsim.charger import Charger
from hilsim.config import Settings
from hilsim.control import ControlServer
from hilsim.evse import ErrorCode, StopReason, events
from hilsim.keys import ChangeStatus, ConfigurationKeys
from hilsim.ocpp.client import Identity
from hilsim.ocpp.session import CsmsLink
from hilsim.ocpp.transport import Backoff
from hilsim.ocpp.wire import FrameListener
from hilsim.store import Store, load_configuration

log = logging.getLogger(__name__)


def identity_of(settings: Settings) -> Identity:
    cp = settings.charge_point
    return Identity(
        vendor=cp.vendor,
        model=cp.model,
        firmware_version=cp.firmware_version,
        serial_number=cp.serial_number,
        charge_box_serial_number=cp.charge_box_serial_number,
        meter_serial_number=cp.meter_serial_number,
        meter_type=cp.meter_type,
    )


class Service:
    """The running charge point. `run()` returns when `stop()` is called (or a signal arrives)."""

    def __init__(
        self,
        settings: Settings,
        *,
        frame_listeners: Sequence[FrameListener] = (),
        backoff: Backoff | None = None,
        response_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.frame_listeners = list(frame_listeners)
        self.backoff = backoff
        self.response_timeout = response_timeout
        self.store: Store | None = None
        self.keys: ConfigurationKeys | None = None
        self.charger: Charger | None = None
        self.link: CsmsLink | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self.stop_reason = StopReason.LOCAL

    def stop(self, reason: StopReason = StopReason.LOCAL) -> None:
        self.stop_reason = reason
        self._stop.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        # Validation stays on for every frame; only the thread-pool hop per frame is dropped: on a
        # Pi Zero it costs more than the validation itself.
        ocpp.messages.ASYNC_VALIDATION = False
        settings = self.settings
        async with await Store.open(settings.storage.database) as store:
            self.store = store
            first = settings.connectors[0]
            keys = await load_configuration(store, seed={"voltage_V": first.voltage_V})
            overridden = "voltage_V" in await store.changed_keys()
            charger = Charger(settings.connectors, keys, store, voltage_overridden=overridden)
            link = CsmsLink(
                settings.charge_point.endpoint,
                settings.charge_point.id,
                identity_of(settings),
                charger,
                keys,
                backoff=self.backoff,
                frame_listeners=self.frame_listeners,
                response_timeout=self.response_timeout,
            )
            charger.link = link
            self.keys, self.charger, self.link = keys, charger, link
            if handle_signals:
                self._install_signal_handlers()
            try:
                async with (
                    ControlServer(settings.control.socket, self.command),
                    asyncio.TaskGroup() as tasks,
                ):
                    link_task = tasks.create_task(link.run(), name="csms-link")
                    self.ready.set()
                    log.info(
                        "charge point %s with %d connector(s), CSMS %s",
                        settings.charge_point.id,
                        len(settings.connectors),
                        settings.charge_point.endpoint,
                    )
                    await self._stop.wait()
                    log.info("stopping: ending transactions (%s)", self.stop_reason)
                    await charger.end_all_transactions(self.stop_reason)
                    link_task.cancel()
            finally:
                await charger.close()
                if handle_signals:
                    self._remove_signal_handlers()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    # -- the control socket's commands ---------------------------------------------------------

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one `hilsim ctl` request. Button-like commands inject the button's event."""
        charger, keys = self.charger, self.keys
        assert charger is not None and keys is not None
        cmd = request["cmd"]
        if cmd == "status":
            return {"ok": True, "result": charger.snapshot()}
        if cmd in _BUTTON_EVENTS:
            try:
                connector_id = int(request.get("connector", 0))
                event = _BUTTON_EVENTS[cmd](request)
            except (TypeError, ValueError) as exc:
                return {"ok": False, "error": f"{cmd}: {exc}"}
            if connector_id not in charger.connectors:
                known = ", ".join(str(c) for c in charger.connectors)
                return {"ok": False, "error": f"no connector {connector_id} (have {known})"}
            outcome = charger.dispatch(connector_id, event)
            if outcome.refused:
                return {"ok": False, "error": f"connector {connector_id}: {outcome.refused}"}
            return {"ok": True, "result": {"status": str(outcome.state.status)}}
        if cmd == "config-get":
            return self._config_get(keys, request.get("key"))
        if cmd == "config-set":
            key, value = str(request.get("key", "")), str(request.get("value", ""))
            status = await charger.change_configuration(key, value)
            ok = status == ChangeStatus.accepted
            return {"ok": ok, "result": {"status": status}, **({} if ok else {"error": status})}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    @staticmethod
    def _config_get(keys: ConfigurationKeys, key: object) -> dict[str, Any]:
        names = [str(key)] if key else None
        known, unknown = keys.report(names)
        if unknown:
            return {"ok": False, "error": f"unknown configuration key {unknown[0]}"}
        return {"ok": True, "result": {spec.name: text for spec, text in known}}


def _fault(request: dict[str, Any]) -> events.Fault:
    code = request.get("error_code") or ErrorCode.OTHER_ERROR
    return events.Fault(ErrorCode(code))


_BUTTON_EVENTS: dict[str, Callable[[dict[str, Any]], events.Event]] = {
    "plug": lambda r: events.PlugIn(),
    "unplug": lambda r: events.Unplug(),
    "tag": lambda r: events.PresentTag(_id_tag(r.get("id_tag"))),
    "fault": _fault,
    "clear": lambda r: events.ClearFault(),
}


def _id_tag(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 20:
        raise ValueError("an idTag is 1 to 20 characters")
    return value
