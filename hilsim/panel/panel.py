"""The physical panel: buttons become charger events, statuses become lights and relay states.

A button press produces exactly the event `hilsim ctl` injects for the same action, dispatched on
the event loop (gpiozero's callbacks only post to it, see `bridge.py`). The LEDs and relays follow
the charger through its status and link listeners, so whatever caused a change (a button, `ctl`,
the CSMS, a timeout) is shown the same way.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections import deque
from types import ModuleType
from typing import TYPE_CHECKING, Any

from hilsim.charger import Charger
from hilsim.errors import PanelError
from hilsim.evse import ErrorCode, FaultSource, Status, StopReason, events
from hilsim.ocpp.session import LinkState
from hilsim.panel.bridge import LoopBridge
from hilsim.panel.config import PANEL_COMMANDS, PanelSettings

if TYPE_CHECKING:
    from gpiozero import Factory

    from hilsim.panel.devices import Action, InputBinding, PanelHardware

log = logging.getLogger(__name__)

#: `hilsim ctl` commands the panel answers.

#: Presses remembered for `ctl press` answers.
_ACTIONS_KEPT = 64
#: Longer than any debounce_ms allowed: how long `ctl press` waits for a bounce window to close.
_SETTLE_TIMEOUT_S = 2.0


class Panel:
    """Buttons, LEDs and relays of a running charge point. Open it after the charger exists."""

    def __init__(
        self,
        settings: PanelSettings,
        charger: Charger,
        loop: asyncio.AbstractEventLoop,
        factory: Factory | None = None,
    ) -> None:
        """`factory` None opens the one `[gpio] backend` names (and closes it again)."""
        self.settings = settings
        self.charger = charger
        self.loop = loop
        self.factory = factory
        self.backend = "none" if factory is None else _backend_name(factory)
        self.hardware: PanelHardware | None = None
        self._owns_factory = False
        self._bridge = LoopBridge(loop)
        self._open = False
        self._online = False
        self._statuses: dict[int, Status] = {}
        self._estop = False  # the button's position; the connectors hold its faults
        self._seq = 0
        self._actions: deque[Action] = deque(maxlen=_ACTIONS_KEPT)

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Panel:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Claim every pin (or none: PanelError), then show the current state of everything."""
        if self.settings.empty:
            log.info("no GPIO pins configured")
            return
        if self.factory is None:
            from hilsim.panel.backend import open_pin_factory

            self.factory, self.backend = open_pin_factory(
                self.settings.backend, self.settings.source
            )
            self._owns_factory = True
        try:
            from hilsim.panel.devices import PanelHardware

            self.hardware = PanelHardware.build(self.settings, self.factory, self._from_gpio)
        except BaseException:
            self._close_factory()
            raise
        self._open = True
        self.charger.status_listeners.append(self._status_changed)
        self.charger.link_listeners.append(self._link_changed)
        link = self.charger.link
        self._link_changed(link.state if link is not None else LinkState.DISCONNECTED)
        for cid, rt in self.charger.connectors.items():
            self._statuses[cid] = rt.machine.status
            self._show(cid)
        log.info(
            "panel on %s: %d input(s), %d output(s)",
            self.backend,
            len(self.hardware.inputs),
            sum(1 for _ in self.hardware.outputs()),
        )
        # A latching switch already closed at start is a fact the charger must know.
        for binding in self.hardware.inputs:
            if binding.spec.mode == "level" and binding.device.is_active:
                self._input(binding, True)

    def close(self) -> None:
        """LEDs dark, relays open, pins released. Safe to call twice."""
        self._bridge.close()
        if self._open:
            self._open = False
            for listeners, fn in (
                (self.charger.status_listeners, self._status_changed),
                (self.charger.link_listeners, self._link_changed),
            ):
                if fn in listeners:
                    listeners.remove(fn)  # type: ignore[arg-type]
        if self.hardware is not None:
            self.hardware.close()
            self.hardware = None
        self._close_factory()

    def _close_factory(self) -> None:
        if self._owns_factory and self.factory is not None:
            self.factory.close()
            self.factory = None
            self._owns_factory = False

    # -- buttons in ----------------------------------------------------------------------------

    def _from_gpio(self, binding: InputBinding, active: bool) -> None:
        """On a gpiozero thread: only hand over to the loop."""
        self._bridge.post(self._input, binding, active)

    def _input(self, binding: InputBinding, active: bool) -> None:
        """On the loop: turn an input edge into the charger event `hilsim ctl` would inject."""
        if not self._open:
            return
        log.info("%s %s", binding.label, "pressed" if active else "released")
        toggle = binding.spec.mode == "toggle"
        if toggle and not active:
            # A momentary button acts on the press; its release only ends the press.
            self._record(binding, None, binding.connector_id, "no event")
            return
        if binding.role == "emergency_stop":
            self._emergency_stop(binding, not self._estop if toggle else active)
            return
        cid = binding.connector_id
        assert cid is not None
        state = self.charger.connectors[cid].machine.state
        event: events.Event | None = None
        if binding.role == "plug":
            plugged = not state.plugged if toggle else active
            if plugged != state.plugged:
                event = events.PlugIn() if plugged else events.Unplug()
        elif binding.role == "fault":
            own = state.faulted_by(FaultSource.OPERATOR)
            held = state.faulted_by(FaultSource.PANEL_ESTOP)
            # A momentary button toggles what the connector shows; a switch is its own fault.
            fault = state.error_code is None if toggle else active
            if fault and not own:
                event = events.Fault(self._fault_code(cid))
            elif not fault and (own or (toggle and state.error_code is not None)):
                if held and not own:
                    log.warning("%s: not cleared, the emergency stop is engaged", binding.label)
                    self._record(binding, None, cid, "refused: the emergency stop is engaged")
                    return
                # Under the emergency stop the button clears its own fault only.
                event = events.ClearFault(FaultSource.OPERATOR if held else None)
        elif binding.role == "tag":
            assert binding.id_tag is not None
            event = events.PresentTag(binding.id_tag)
        if event is None:
            self._record(binding, None, cid, "no event")
        else:
            self._dispatch(binding, cid, event)

    def _fault_code(self, cid: int) -> ErrorCode:
        panel = self.settings.connector(cid)
        return panel.fault_code if panel is not None else ErrorCode.OTHER_ERROR

    def _dispatch(self, binding: InputBinding, cid: int, event: events.Event) -> None:
        outcome = self.charger.dispatch(cid, event)
        result = f"refused: {outcome.refused}" if outcome.refused else str(outcome.state.status)
        self._record(binding, type(event).__name__, cid, result)

    def _record(
        self, binding: InputBinding, event: str | None, cid: int | None, result: str
    ) -> None:
        self._seq += 1
        self._actions.append(_devices().Action(self._seq, binding.spec.pin, event, cid, result))

    def _emergency_stop(self, binding: InputBinding, engaged: bool) -> None:
        """Engaged: transactions end (EmergencyStop), relays open, all Faulted until released.

        The stop's faults are raised under `FaultSource.PANEL_ESTOP` and cleared by that source
        only, so a connector faulted by anything else as well (its fault switch, its meter) keeps
        that fault when the stop is released.
        """
        if engaged == self._estop:
            return
        self._estop = engaged
        if engaged:
            log.warning("EMERGENCY STOP engaged (%s)", binding.label)
            if self.hardware is not None:
                for relay in self.hardware.relays.values():
                    relay.set(False)
            stop = events.Fault(
                ErrorCode.OTHER_ERROR, StopReason.EMERGENCY_STOP, FaultSource.PANEL_ESTOP
            )
            for cid in self.charger.connectors:
                self.charger.dispatch(cid, stop)
            self._record(binding, "EmergencyStop", None, "engaged")
            return
        log.warning("emergency stop released (%s)", binding.label)
        for cid, rt in self.charger.connectors.items():
            if rt.machine.state.faulted_by(FaultSource.PANEL_ESTOP):
                self.charger.dispatch(cid, events.ClearFault(FaultSource.PANEL_ESTOP))
        self._record(binding, "EmergencyStopReleased", None, "released")

    # -- lights and relays out -----------------------------------------------------------------

    def _status_changed(self, connector_id: int, status: Status, error_code: ErrorCode) -> None:
        self._statuses[connector_id] = status
        self._show(connector_id)

    def _link_changed(self, state: LinkState) -> None:
        online = state == LinkState.CONNECTED
        hardware = self.hardware
        if hardware is not None and hardware.connected is not None:
            hardware.connected.show(_lights().LINK_LANGUAGE[state])
        if online != self._online:
            self._online = online
            for cid in self._statuses:
                self._show(cid)

    def _show(self, connector_id: int) -> None:
        hardware = self.hardware
        status = self._statuses.get(connector_id)
        if hardware is None or status is None:
            return
        lamp = hardware.lamps.get(connector_id)
        if lamp is not None:
            rgb = isinstance(lamp, _devices().RgbLamp)
            lamp.show(_lights().connector_indication(status, rgb=rgb, online=self._online))
        relay = hardware.relays.get(connector_id)
        if relay is not None:
            relay.set(status == Status.CHARGING and not self._estop)

    # -- hilsim ctl ----------------------------------------------------------------------------

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "pins":
            return {"ok": True, "result": self.describe()}
        if cmd in ("press", "release"):
            return await self.drive(request.get("pin"), active=cmd == "press")
        return {"ok": False, "error": f"unknown panel command {cmd!r}"}

    def describe(self) -> dict[str, Any]:
        """Every configured pin: number, role, connector, level, and what each output shows."""
        hardware = self.hardware
        pins: list[dict[str, Any]] = []
        if hardware is not None:
            for binding in hardware.inputs:
                spec = binding.spec
                entry: dict[str, Any] = {
                    "pin": spec.pin,
                    "name": f"GPIO{spec.pin}",
                    "header": hardware.header_position(spec.pin),
                    "key": spec.key,
                    "role": binding.role,
                    "connector": binding.connector_id,
                    "direction": "input",
                    "level": _level(binding.device.pin),
                    "pressed": bool(binding.device.is_active),
                    "mode": spec.mode,
                    "pull": spec.pull,
                    "active_high": spec.active_high,
                }
                if binding.id_tag is not None:
                    entry["id_tag"] = binding.id_tag
                pins.append(entry)
            for view in hardware.outputs():
                spec = view.spec
                entry = {
                    "pin": spec.pin,
                    "name": f"GPIO{spec.pin}",
                    "header": hardware.header_position(spec.pin),
                    "key": spec.key,
                    "role": view.role,
                    "connector": view.connector_id,
                    "direction": "output",
                    "level": _level(hardware.factory.pin(spec.pin)),
                    "on": view.on,
                    "pattern": view.pattern,
                    "colour": view.colour,
                    "active_high": spec.active_high,
                }
                if view.timing is not None:
                    entry["timing_s"] = {
                        "on": view.timing.on_s,
                        "off": view.timing.off_s,
                        "fade_in": view.timing.fade_in_s,
                        "fade_out": view.timing.fade_out_s,
                    }
                pins.append(entry)
        pins.sort(key=lambda p: (p["connector"] or 0, p["direction"], p["pin"]))
        return {
            "backend": self.backend,
            "debounce_ms": round(self.settings.debounce_s * 1000, 3),
            "emergency_stop": self._estop,
            "csms_connected": self._online,
            "pins": pins,
        }

    async def drive(self, pin_text: object, *, active: bool) -> dict[str, Any]:
        """Press or release a mock input pin as a finger would, from another thread."""
        verb = "press" if active else "release"
        hardware = self.hardware
        inputs = {b.spec.pin: b for b in hardware.inputs} if hardware else {}
        try:
            number = _pin_number(pin_text)
        except ValueError as exc:
            return {"ok": False, "error": f"{verb}: {exc}"}
        binding = inputs.get(number)
        if binding is None:
            known = ", ".join(b.label for b in inputs.values()) or "none configured"
            return {
                "ok": False,
                "error": f"{verb}: GPIO{number} is not a configured input (inputs: {known})",
            }
        pin = binding.device.pin
        try:
            drive = _backend().finger(pin, active == binding.spec.active_high)
        except PanelError:
            return {
                "ok": False,
                "error": (
                    f"{verb}: GPIO{number} is a real pin on the {self.backend} backend; "
                    f"`hilsim ctl {verb}` drives mock pins only: use the button itself"
                ),
            }
        before = self._seq
        unchanged = bool(pin.state) == (active == binding.spec.active_high)

        def press() -> None:
            drive()
            if isinstance(pin, _backend().PanelMockPin):
                # An edge inside the debounce window is reported when the window closes; wait
                # for it, so the answer says what the edge did.
                pin.settle(_SETTLE_TIMEOUT_S)

        # From a worker thread, like a real edge: debounce and gpiozero's callbacks run for real,
        # and the handler is queued on the loop before this await returns.
        await asyncio.to_thread(press)
        done = [a for a in self._actions if a.seq > before and a.pin == number]
        result: dict[str, Any] = {
            "pin": number,
            "role": binding.role,
            "connector": binding.connector_id,
            "level": _level(pin),
            "pressed": bool(binding.device.is_active),
            "event": done[-1].event if done else None,
        }
        if done:
            result["result"] = done[-1].result
        elif unchanged:
            result["result"] = f"no edge: already {'pressed' if active else 'released'}"
        return {"ok": True, "result": result}


def _backend() -> ModuleType:
    """gpiozero is imported with the first pin, never by a charger without any (cold start)."""
    return importlib.import_module("hilsim.panel.backend")


def _devices() -> ModuleType:
    return importlib.import_module("hilsim.panel.devices")


def _lights() -> ModuleType:
    """The LED language; like gpiozero, only loaded once there are pins to light."""
    return importlib.import_module("hilsim.panel.lights")


def _backend_name(factory: Factory) -> str:
    if _backend().is_mock(factory):
        return "mock"
    return type(factory).__name__.removesuffix("Factory").lower()


def _level(pin: Any) -> float | int:
    state = pin.state
    if isinstance(state, bool) or float(state) in (0.0, 1.0):
        return int(state)
    return round(float(state), 3)


def _pin_number(value: object) -> int:
    text = str(value).strip().upper()
    for prefix in ("GPIO", "BCM"):
        text = text.removeprefix(prefix)
    if not text.isdigit():
        raise ValueError(f"expected a BCM pin number such as 17 or GPIO17, got {value!r}")
    return int(text)


__all__ = ["PANEL_COMMANDS", "Panel", "PanelError"]
