"""The panel end to end: mock pins -> the real service -> the built-in CSMS, and back to the LEDs.

Every button is pressed on gpiozero mock pins from a worker thread (as a real edge arrives on a
gpiozero thread), the OCPP messages are read at the CSMS, and the LEDs and relays are read back
from their mock pins. Waits are on messages and pin changes, never on the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Button
from gpiozero.pins.mock import MockFactory

from hilsim.config import Settings, load_settings
from hilsim.control import request
from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.errors import ConfigError, PanelError
from hilsim.evse import Status, events
from hilsim.panel import load_panel_settings, mock_factory
from hilsim.panel.backend import PanelMockPin
from hilsim.panel.selftest import self_test
from hilsim.service import Service

from conftest import CP_ID, FAST_BACKOFF, stop_service

TAG = "04A2B3C4"
TIMEOUT = 5.0

TOP = "connected_led = 19\nemergency_stop = 21"
C1 = """plug = 17
fault = { pin = 22, error_code = "GroundFailure" }
tags = [{ pin = 27, id_tag = "04A2B3C4" }, { pin = 4, id_tag = "BADC0FFE" }]
rgb_led = { red = 5, green = 6, blue = 13 }
relay = 26"""
C2 = """plug = 23
fault = 25
tags = [{ pin = 24, id_tag = "DEADBEEF" }]
led_green = 12
led_amber = 16
led_red = 20
relay = { pin = 18, active_high = false }"""

PLUG = {1: 17, 2: 23}
TAGS = {1: 27, 2: 24}
FAULT = {1: 22, 2: 25}
RELAY = {1: 26, 2: 18}
ID_TAG = {1: "04A2B3C4", 2: "DEADBEEF"}
FAULT_CODE = {1: "GroundFailure", 2: "OtherError"}
ESTOP = 21
CONNECTED_LED = 19
RGB_PINS = {"red": 5, "green": 6, "blue": 13}
SEPARATE_PINS = {"green": 12, "amber": 16, "red": 20}


def write_config(directory: Path, csms_url: str, **panel: Any) -> Settings:
    """A two-connector config with a full panel (RGB LED on 1, separate LEDs on 2)."""
    return load_settings(write_config_file(directory, csms_url, **panel))


def write_config_file(
    directory: Path,
    csms_url: str,
    *,
    top: str = TOP,
    c1: str = C1,
    c2: str = C2,
    debounce_ms: float = 0,
    backend: str = "mock",
) -> Path:
    """The file only: it may hold what `load_settings` refuses."""
    text = f"""
[charge_point]
id = "{CP_ID}"
csms_url = "{csms_url}"
vendor = "hilsim"
model = "bench"
[[connector]]
id = 1
max_power_W = 11000
[connector.gpio]
{c1}
[[connector]]
id = 2
max_power_W = 7400
[connector.gpio]
{c2}
[storage]
database = "{directory / "hilsim.db"}"
[control]
socket = "{directory / "ctl.sock"}"
[gpio]
backend = "{backend}"
debounce_ms = {debounce_ms}
{top}
"""
    path = directory / "hilsim.toml"
    path.write_text(text)
    return path


@dataclass
class PanelBench:
    settings: Settings
    service: Service
    task: asyncio.Task[None]
    csms: CentralSystem
    session: ChargePointSession
    factory: MockFactory
    seen: list[tuple[int, str]] = field(default_factory=list)

    def pin(self, number: int) -> PanelMockPin:
        pin = self.factory.pin(number)
        assert isinstance(pin, PanelMockPin)
        return pin

    def active_high(self, number: int) -> bool:
        panel = self.service.panel
        assert panel is not None and panel.hardware is not None
        for binding in panel.hardware.inputs:
            if binding.spec.pin == number:
                return binding.spec.active_high
        raise AssertionError(f"GPIO{number} is not an input")

    async def finger(self, number: int, pressed: bool) -> None:
        """Drive an input pin from a worker thread, as a real edge arrives off the loop."""
        pin = self.pin(number)
        high = pressed == self.active_high(number)
        await asyncio.to_thread(pin.drive_high if high else pin.drive_low)

    async def click(self, number: int) -> None:
        await self.finger(number, True)
        await self.finger(number, False)

    async def status(self, connector: int, status: str, **fields: str) -> dict[str, Any]:
        return await self.session.wait_for(
            "StatusNotification",
            lambda p: (
                p["connectorId"] == connector
                and p["status"] == status
                and all(p.get(k) == v for k, v in fields.items())
            ),
            timeout=TIMEOUT,
        )

    async def ctl(self, cmd: str, **payload: Any) -> dict[str, Any]:
        return await request(self.settings.control.socket, {"cmd": cmd, **payload})

    def machine_status(self, connector: int) -> Status:
        charger = self.service.charger
        assert charger is not None
        return charger.connectors[connector].machine.status

    async def start(self, connector: int) -> int:
        """Plug and present the connector's known tag with the buttons; the transaction id."""
        await self.click(PLUG[connector])
        await self.status(connector, "Preparing")
        await self.click(TAGS[connector])
        start = await self.session.wait_for(
            "StartTransaction", lambda p: p["connectorId"] == connector, timeout=TIMEOUT
        )
        assert start["idTag"] == ID_TAG[connector]
        await self.status(connector, "Charging")
        charger = self.service.charger
        assert charger is not None
        tx = charger.connectors[connector].machine.state.local_id
        assert tx is not None
        return tx

    def statuses(self, connector: int) -> list[str]:
        return [
            m.payload["status"]
            for m in self.session.received
            if m.action == "StatusNotification" and m.payload["connectorId"] == connector
        ]


async def start_panel_service(
    settings: Settings, factory: MockFactory
) -> tuple[Service, asyncio.Task[None]]:
    service = Service(settings, backoff=FAST_BACKOFF, response_timeout=5, pin_factory=factory)
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
    assert ready in done, "service did not become ready"
    return service, task


PanelFactory = Callable[..., Awaitable[PanelBench]]


@pytest.fixture
async def panel_factory(csms: CentralSystem, short_dir: Path) -> AsyncIterator[PanelFactory]:
    running: list[PanelBench] = []

    async def factory(**config: Any) -> PanelBench:
        settings = write_config(short_dir, csms.url, **config)
        pins = mock_factory()
        service, task = await start_panel_service(settings, pins)
        session = await csms.wait_for_charge_point(CP_ID, timeout=TIMEOUT)
        bench = PanelBench(settings, service, task, csms, session, pins)
        running.append(bench)
        for connector in (0, 1, 2):
            await bench.status(connector, "Available")
        return bench

    yield factory
    for bench in running:
        await stop_service(bench.service, bench.task)
        assert bench.session.violations == []


@pytest.fixture
async def panel(panel_factory: PanelFactory) -> PanelBench:
    return await panel_factory()


# -- reading LEDs back from their pins -------------------------------------------------------


async def wait_level(pin: PanelMockPin, wanted: Callable[[float], bool], what: str) -> None:
    """Until the pin's level satisfies `wanted` (now or after a later change)."""

    def wait() -> bool:
        with pin.changed:
            return pin.changed.wait_for(lambda: wanted(float(pin.state)), TIMEOUT)

    if not await asyncio.to_thread(wait):
        shown = [round(float(s.state), 2) for s in list(pin.states)[-12:]]
        raise AssertionError(f"{pin!r} never {what}; last levels {shown}")


def is_(level: float) -> Callable[[float], bool]:
    return lambda v: abs(v - level) < 1e-6


def fractional(v: float) -> bool:
    return 0.02 < v < 0.98


async def steady(pin: PanelMockPin, level: float) -> None:
    await wait_level(pin, is_(level), f"at {level}")


async def blinking(pin: PanelMockPin, on: float, off: float = 0.0) -> None:
    """It goes on, then off, then on again: a rhythm, not a steady light."""
    for level in (on, off, on):
        await wait_level(pin, is_(level), f"at {level} (blinking between {on} and {off})")


async def pulsing(pin: PanelMockPin) -> None:
    """Fading: levels between off and full, rising and then falling."""
    first: list[float] = []

    def record(v: float) -> bool:
        if fractional(v):
            first.append(v)
            return True
        return False

    await wait_level(pin, record, "fading")
    await wait_level(pin, lambda v: fractional(v) and v != first[0], "fading on")


@dataclass(frozen=True)
class Light:
    """What one connector's LED must show: per-pin levels when lit, and the rhythm."""

    levels: dict[int, float]
    rhythm: str  # steady | blinking | pulsing


RGB_LIGHTS: dict[Status, Light] = {
    Status.AVAILABLE: Light({5: 0, 6: 1, 13: 0}, "steady"),
    Status.PREPARING: Light({5: 1, 6: 0.5, 13: 0}, "blinking"),
    Status.CHARGING: Light({5: 0, 6: 0, 13: 1}, "pulsing"),
    Status.SUSPENDED_EV: Light({5: 0, 6: 0, 13: 1}, "blinking"),
    Status.SUSPENDED_EVSE: Light({5: 1, 6: 0.5, 13: 0}, "blinking"),
    Status.FINISHING: Light({5: 1, 6: 0.5, 13: 0}, "steady"),
    Status.RESERVED: Light({5: 0, 6: 0, 13: 1}, "steady"),
    Status.UNAVAILABLE: Light({5: 1, 6: 0, 13: 0}, "steady"),
    Status.FAULTED: Light({5: 1, 6: 0, 13: 0}, "blinking"),
}
SEPARATE_LIGHTS: dict[Status, Light] = {
    Status.AVAILABLE: Light({12: 1, 16: 0, 20: 0}, "steady"),
    Status.PREPARING: Light({12: 0, 16: 1, 20: 0}, "blinking"),
    Status.CHARGING: Light({12: 1, 16: 0, 20: 0}, "pulsing"),
    Status.SUSPENDED_EV: Light({12: 1, 16: 0, 20: 0}, "blinking"),
    Status.SUSPENDED_EVSE: Light({12: 0, 16: 1, 20: 0}, "blinking"),
    Status.FINISHING: Light({12: 0, 16: 1, 20: 0}, "steady"),
    Status.RESERVED: Light({12: 1, 16: 1, 20: 0}, "steady"),
    Status.UNAVAILABLE: Light({12: 0, 16: 0, 20: 1}, "steady"),
    Status.FAULTED: Light({12: 0, 16: 0, 20: 1}, "blinking"),
}


async def shows(bench: PanelBench, connector: int, status: Status) -> None:
    """The connector's LED pins show the light for `status`, and `ctl pins` says the same."""
    light = (RGB_LIGHTS if connector == 1 else SEPARATE_LIGHTS)[status]
    lit = [pin for pin, level in light.levels.items() if level]
    dark = [pin for pin, level in light.levels.items() if not level]
    for pin in dark:
        await steady(bench.pin(pin), 0.0)
    check = {"steady": steady, "blinking": blinking}.get(light.rhythm)
    await asyncio.gather(
        *(
            check(bench.pin(pin), light.levels[pin]) if check else pulsing(bench.pin(pin))
            for pin in lit
        )
    )
    answer = await bench.ctl("pins")
    for entry in answer["result"]["pins"]:
        if entry["pin"] in lit:
            assert (entry["on"], entry["pattern"]) == (True, light.rhythm), entry
        elif entry["pin"] in dark:
            assert (entry["on"], entry["pattern"]) == (False, "off"), entry


# -- buttons drive OCPP ----------------------------------------------------------------------


@pytest.mark.parametrize("connector", [1, 2])
async def test_every_button_drives_the_expected_ocpp_messages(
    panel: PanelBench, connector: int
) -> None:
    s = panel.session
    await panel.click(PLUG[connector])
    await panel.status(connector, "Preparing")
    await panel.click(TAGS[connector])
    authorize = await s.wait_for("Authorize", timeout=TIMEOUT)
    assert authorize == {"idTag": ID_TAG[connector]}
    start = await s.wait_for("StartTransaction", timeout=TIMEOUT)
    assert (start["connectorId"], start["idTag"]) == (connector, ID_TAG[connector])
    await panel.status(connector, "Charging")
    await panel.click(TAGS[connector])  # the same card again ends the session
    stop = await s.wait_for("StopTransaction", timeout=TIMEOUT)
    assert (stop["reason"], stop["idTag"]) == ("Local", ID_TAG[connector])
    await panel.status(connector, "Finishing")
    await panel.click(PLUG[connector])
    await panel.status(connector, "Available")
    await panel.click(FAULT[connector])
    await panel.status(connector, "Faulted", errorCode=FAULT_CODE[connector])
    await panel.click(FAULT[connector])
    await panel.status(connector, "Available", errorCode="NoError")
    assert panel.statuses(3 - connector) == ["Available"]  # the other connector saw nothing


async def test_a_second_tag_button_presents_its_own_id_tag(panel: PanelBench) -> None:
    s = panel.session
    panel.csms.id_tags.add("BADC0FFE")
    await panel.click(PLUG[1])
    await panel.status(1, "Preparing")
    await panel.click(4)
    assert await s.wait_for("Authorize", timeout=TIMEOUT) == {"idTag": "BADC0FFE"}
    start = await s.wait_for("StartTransaction", timeout=TIMEOUT)
    assert (start["connectorId"], start["idTag"]) == (1, "BADC0FFE")
    await panel.status(1, "Charging")
    await panel.click(TAGS[1])  # another card cannot end someone else's session...
    await panel.click(4)  # ...its own card can
    stop = await s.wait_for("StopTransaction", timeout=TIMEOUT)
    assert (stop["reason"], stop["idTag"]) == ("Local", "BADC0FFE")
    assert [m.action for m in s.received].count("Authorize") == 1


async def test_a_fault_during_a_transaction_ends_it(panel: PanelBench) -> None:
    await panel.start(1)
    assert panel.pin(RELAY[1]).state == 1
    await panel.click(FAULT[1])
    stop = await panel.session.wait_for("StopTransaction", timeout=TIMEOUT)
    assert stop["reason"] == "Other"
    await panel.status(1, "Faulted", errorCode="GroundFailure")
    assert panel.pin(RELAY[1]).state == 0


async def test_a_latching_plug_switch_is_read_as_level(panel_factory: PanelFactory) -> None:
    bench = await panel_factory(c1=C1.replace("plug = 17", 'plug = { pin = 17, mode = "level" }'))
    await bench.finger(17, True)
    await bench.status(1, "Preparing")
    await bench.finger(17, False)
    await bench.status(1, "Available")
    await bench.finger(17, True)
    await bench.status(1, "Preparing")
    assert bench.statuses(1) == ["Available", "Preparing", "Available", "Preparing"]


async def test_a_switch_closed_before_start_is_seen_at_start(
    csms: CentralSystem, short_dir: Path
) -> None:
    # An external pull-down (pull = "none") lets the mock pin hold the level set before start.
    settings = write_config(
        short_dir,
        csms.url,
        c1=C1.replace(
            "plug = 17", 'plug = { pin = 17, mode = "level", pull = "none", active_high = true }'
        ),
    )
    factory = mock_factory()
    factory.pin(17).drive_high()
    service, task = await start_panel_service(settings, factory)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=TIMEOUT)
        first = await session.wait_for(
            "StatusNotification", lambda p: p["connectorId"] == 1, timeout=TIMEOUT
        )
        assert first["status"] == "Preparing"
    finally:
        await stop_service(service, task)


async def test_an_emergency_stop_engaged_at_start_holds_every_connector(
    csms: CentralSystem, short_dir: Path
) -> None:
    top = 'emergency_stop = { pin = 21, mode = "level", pull = "none", active_high = true }'
    settings = write_config(short_dir, csms.url, top=top)
    factory = mock_factory()
    factory.pin(ESTOP).drive_high()  # the mushroom was left pushed in
    service, task = await start_panel_service(settings, factory)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=TIMEOUT)
        for connector in (1, 2):
            first = await session.wait_for(
                "StatusNotification", lambda p, c=connector: p["connectorId"] == c, timeout=5
            )
            assert first["status"] == "Faulted"
        await asyncio.to_thread(factory.pin(ESTOP).drive_low)  # twisted out
        for connector in (1, 2):
            await session.wait_for(
                "StatusNotification",
                lambda p, c=connector: p["connectorId"] == c and p["status"] == "Available",
                timeout=TIMEOUT,
            )
    finally:
        await stop_service(service, task)


async def test_a_bounce_burst_is_exactly_one_event(panel_factory: PanelFactory) -> None:
    bench = await panel_factory(debounce_ms=200)
    pin = bench.pin(PLUG[1])

    def bounce_closed() -> None:
        for _ in range(5):  # the contact chatters: low, high, low, high, ...
            pin.drive_low()
            pin.drive_high()
        pin.drive_low()

    await asyncio.to_thread(bounce_closed)
    await bench.status(1, "Preparing")
    assert await asyncio.to_thread(pin.settle, TIMEOUT)  # the window closed: all reported
    await bench.finger(PLUG[1], False)  # a clean release: no event for a toggle
    assert await asyncio.to_thread(pin.settle, TIMEOUT)
    await bench.finger(PLUG[1], True)  # a clean second press: unplug
    await bench.status(1, "Available")
    # One PlugIn, one Unplug: any extra press from the burst would show as another status.
    assert bench.statuses(1) == ["Available", "Preparing", "Available"]


async def test_button_events_reach_the_charger_on_the_event_loop_thread(
    panel: PanelBench,
) -> None:
    charger = panel.service.charger
    assert charger is not None
    threads: list[int] = []
    charger.status_listeners.append(lambda *_: threads.append(threading.get_ident()))
    await panel.click(PLUG[1])
    await panel.status(1, "Preparing")
    await panel.click(PLUG[2])
    await panel.status(2, "Preparing")
    assert threads and set(threads) == {threading.get_ident()}


# -- relays and LEDs follow the charger ------------------------------------------------------


async def test_the_relay_is_closed_exactly_while_charging(panel: PanelBench) -> None:
    k1, k2 = panel.pin(RELAY[1]), panel.pin(RELAY[2])
    assert (k1.state, k2.state) == (0, 1)  # connector 2's relay board switches on low
    tx = await panel.start(1)
    assert (k1.state, k2.state) == (1, 1)
    s = panel.session
    await s.set_charging_profile(1, 0, "W", purpose="TxProfile", transaction_id=tx)
    await panel.status(1, "SuspendedEVSE")
    assert k1.state == 0
    await s.set_charging_profile(1, 3000, "W", purpose="TxProfile", transaction_id=tx)
    await panel.status(1, "Charging")
    assert k1.state == 1
    await panel.start(2)
    assert (k1.state, k2.state) == (1, 0)
    await s.remote_stop(tx)
    await panel.status(1, "Finishing")
    assert (k1.state, k2.state) == (0, 0)
    await panel.click(PLUG[2])  # unplugged while charging
    await panel.status(2, "Available")
    assert (k1.state, k2.state) == (0, 1)


@pytest.mark.parametrize("connector", [1, 2], ids=["rgb_led", "separate_leds"])
async def test_leds_follow_every_status(panel: PanelBench, connector: int) -> None:
    charger = panel.service.charger
    assert charger is not None
    s = panel.session
    await shows(panel, connector, Status.AVAILABLE)
    await panel.click(PLUG[connector])
    await panel.status(connector, "Preparing")
    await shows(panel, connector, Status.PREPARING)
    await panel.click(TAGS[connector])
    await panel.status(connector, "Charging")
    await shows(panel, connector, Status.CHARGING)
    tx = charger.connectors[connector].machine.state.local_id
    await s.set_charging_profile(connector, 0, "W", purpose="TxProfile", transaction_id=tx)
    await panel.status(connector, "SuspendedEVSE")
    await shows(panel, connector, Status.SUSPENDED_EVSE)
    await s.set_charging_profile(connector, 3000, "W", purpose="TxProfile", transaction_id=tx)
    await panel.status(connector, "Charging")
    charger.dispatch(connector, events.EvSuspend())  # the EV's battery is full
    await panel.status(connector, "SuspendedEV")
    await shows(panel, connector, Status.SUSPENDED_EV)
    assert tx is not None
    await s.remote_stop(tx)
    await panel.status(connector, "Finishing")
    await shows(panel, connector, Status.FINISHING)
    await panel.click(PLUG[connector])
    await panel.status(connector, "Available")
    await shows(panel, connector, Status.AVAILABLE)
    expires = charger.clock() + 600
    charger.dispatch(connector, events.Reserve(7, "CAFE", expires))
    await panel.status(connector, "Reserved")
    await shows(panel, connector, Status.RESERVED)
    charger.dispatch(connector, events.CancelReservation(7))
    await panel.status(connector, "Available")
    charger.dispatch(connector, events.ChangeAvailability(False))
    await panel.status(connector, "Unavailable")
    await shows(panel, connector, Status.UNAVAILABLE)
    charger.dispatch(connector, events.ChangeAvailability(True))
    await panel.status(connector, "Available")
    await panel.click(FAULT[connector])
    await panel.status(connector, "Faulted")
    await shows(panel, connector, Status.FAULTED)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_csms_link_shows_on_the_leds(short_dir: Path) -> None:
    port = _free_port()
    settings = write_config(short_dir, f"ws://127.0.0.1:{port}")
    factory = mock_factory()
    service, task = await start_panel_service(settings, factory)
    connected, green = factory.pin(CONNECTED_LED), factory.pin(RGB_PINS["green"])
    sep_green = factory.pin(SEPARATE_PINS["green"])
    try:
        # Nobody to talk to yet: every status is shown from the start, steady lights wink.
        await asyncio.gather(
            blinking(connected, 1.0),  # a short flash: searching
            blinking(green, 1.0),
            blinking(sep_green, 1.0),
        )
        answer = await request(settings.control.socket, {"cmd": "pins"})
        by_pin = {p["pin"]: p for p in answer["result"]["pins"]}
        assert by_pin[CONNECTED_LED]["timing_s"]["on"] == 0.1
        assert by_pin[RGB_PINS["green"]]["timing_s"] == {
            "on": 1.8,
            "off": 0.2,
            "fade_in": 0.0,
            "fade_out": 0.0,
        }
        async with CentralSystem("127.0.0.1", port) as central:
            session = await central.wait_for_charge_point(CP_ID, timeout=TIMEOUT)
            await session.wait_for(
                "StatusNotification", lambda p: p["connectorId"] == 2, timeout=TIMEOUT
            )
            await steady(connected, 1.0)
            await steady(green, 1.0)
            assert green.state == 1 and connected.state == 1
            answer = await request(settings.control.socket, {"cmd": "pins"})
            assert answer["result"]["csms_connected"] is True
        # The CSMS went away: back to searching, and the steady lights wink again.
        await asyncio.gather(blinking(connected, 1.0), blinking(green, 1.0))
    finally:
        await stop_service(service, task)


# -- emergency stop --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["toggle", "level"])
async def test_emergency_stop_ends_everything_until_released(
    panel_factory: PanelFactory, mode: str
) -> None:
    top = TOP.replace("emergency_stop = 21", f'emergency_stop = {{ pin = 21, mode = "{mode}" }}')
    bench = await panel_factory(top=top)
    await bench.start(1)
    await bench.start(2)
    assert (bench.pin(RELAY[1]).state, bench.pin(RELAY[2]).state) == (1, 0)
    if mode == "toggle":
        await bench.click(ESTOP)
    else:
        await bench.finger(ESTOP, True)
    stops = [await bench.session.wait_for("StopTransaction", timeout=TIMEOUT) for _ in range(2)]
    assert [stop["reason"] for stop in stops] == ["EmergencyStop", "EmergencyStop"]
    await bench.status(1, "Faulted")
    await bench.status(2, "Faulted")
    assert (bench.pin(RELAY[1]).state, bench.pin(RELAY[2]).state) == (0, 1)  # both open
    await shows(bench, 1, Status.FAULTED)
    await shows(bench, 2, Status.FAULTED)
    # A connector's own fault button cannot clear what the emergency stop holds.
    answer = await bench.ctl("press", pin=FAULT[1])
    assert answer["result"]["result"] == "refused: the emergency stop is engaged"
    await bench.ctl("release", pin=FAULT[1])
    assert bench.machine_status(1) == Status.FAULTED
    # Nor can `hilsim ctl clear`: power would come back with the stop still pressed.
    cleared = await bench.ctl("clear", connector=1)
    assert "the emergency stop is engaged (panel-estop)" in str(cleared), cleared
    assert bench.machine_status(1) == Status.FAULTED
    pins = (await bench.ctl("pins"))["result"]
    assert pins["emergency_stop"] is True
    if mode == "toggle":
        await bench.click(ESTOP)
    else:
        await bench.finger(ESTOP, False)
    await bench.status(1, "Finishing")  # cleared, and the EVs are still plugged in
    await bench.status(2, "Finishing")
    assert (bench.pin(RELAY[1]).state, bench.pin(RELAY[2]).state) == (0, 1)
    assert (await bench.ctl("pins"))["result"]["emergency_stop"] is False


async def test_releasing_the_emergency_stop_keeps_a_connectors_own_fault(
    panel: PanelBench,
) -> None:
    await panel.click(FAULT[2])
    await panel.status(2, "Faulted")
    await panel.click(ESTOP)
    await panel.status(1, "Faulted")
    await panel.click(ESTOP)
    await panel.status(1, "Available")
    assert panel.machine_status(2) == Status.FAULTED
    await panel.click(FAULT[2])
    await panel.status(2, "Available")


async def test_a_fault_button_under_the_emergency_stop_clears_only_its_own_fault(
    panel: PanelBench,
) -> None:
    await panel.click(FAULT[2])
    await panel.status(2, "Faulted")
    await panel.click(ESTOP)
    await panel.status(1, "Faulted")
    answer = await panel.ctl("press", pin=FAULT[2])
    assert answer["result"]["result"] == "Faulted"  # the emergency stop still holds it
    await panel.ctl("release", pin=FAULT[2])
    assert panel.machine_status(2) == Status.FAULTED
    await panel.click(ESTOP)
    await panel.status(2, "Available")


# -- hilsim ctl pins / press / release --------------------------------------------------------


async def test_ctl_pins_lists_every_configured_pin(panel: PanelBench) -> None:
    answer = await panel.ctl("pins")
    assert answer["ok"]
    result = answer["result"]
    assert (result["backend"], result["debounce_ms"]) == ("mock", 0)
    assert (result["csms_connected"], result["emergency_stop"]) == (True, False)
    by_pin = {p["pin"]: p for p in result["pins"]}
    assert sorted(by_pin) == sorted(
        [ESTOP, CONNECTED_LED, 17, 22, 27, 4, 5, 6, 13, 26, 23, 25, 24, 12, 16, 20, 18]
    )
    assert by_pin[17] == {
        "pin": 17,
        "name": "GPIO17",
        "header": "J8:11",
        "key": "connector[1].gpio.plug",
        "role": "plug",
        "connector": 1,
        "direction": "input",
        "level": 1,
        "pressed": False,
        "mode": "toggle",
        "pull": "up",
        "active_high": False,
    }
    assert by_pin[27]["id_tag"] == TAG and by_pin[27]["role"] == "tag"
    assert by_pin[ESTOP]["connector"] is None and by_pin[ESTOP]["role"] == "emergency_stop"
    green = by_pin[6]
    assert (green["role"], green["on"], green["pattern"], green["colour"], green["level"]) == (
        "rgb_led.green",
        True,
        "steady",
        "green",
        1,
    )
    assert (by_pin[5]["level"], by_pin[13]["level"]) == (0, 0)
    assert (by_pin[12]["role"], by_pin[12]["colour"], by_pin[12]["on"]) == (
        "led_green",
        "green",
        True,
    )
    assert (by_pin[16]["pattern"], by_pin[16]["colour"]) == ("off", "amber")
    assert (by_pin[26]["role"], by_pin[26]["colour"], by_pin[26]["level"]) == ("relay", "open", 0)
    assert (by_pin[18]["active_high"], by_pin[18]["level"]) == (False, 1)
    assert (by_pin[CONNECTED_LED]["pattern"], by_pin[CONNECTED_LED]["level"]) == ("steady", 1)
    await panel.click(PLUG[1])
    await panel.status(1, "Preparing")
    red = {p["pin"]: p for p in (await panel.ctl("pins"))["result"]["pins"]}[5]
    assert (red["pattern"], red["colour"]) == ("blinking", "amber")
    assert red["timing_s"] == {"on": 0.5, "off": 0.5, "fade_in": 0.0, "fade_out": 0.0}


async def test_ctl_press_and_release_drive_the_mock_pin(panel: PanelBench) -> None:
    answer = await panel.ctl("press", pin="17")
    assert answer == {
        "ok": True,
        "result": {
            "pin": 17,
            "role": "plug",
            "connector": 1,
            "level": 0,
            "pressed": True,
            "event": "PlugIn",
            "result": "Preparing",
        },
    }
    assert panel.pin(17).state == 0  # the very pin the button listens to
    await panel.status(1, "Preparing")
    answer = await panel.ctl("release", pin="GPIO17")
    assert answer["result"] | {} == {
        "pin": 17,
        "role": "plug",
        "connector": 1,
        "level": 1,
        "pressed": False,
        "event": None,
        "result": "no event",
    }
    answer = await panel.ctl("release", pin=17)
    assert (answer["result"]["event"], answer["result"]["result"]) == (
        None,
        "no edge: already released",
    )
    answer = await panel.ctl("press", pin=17)
    assert (answer["result"]["event"], answer["result"]["result"]) == ("Unplug", "Available")
    await panel.ctl("release", pin=17)
    answer = await panel.ctl("press", pin=TAGS[2])  # not plugged in: Authorize, then waits
    assert (answer["result"]["event"], answer["result"]["result"]) == ("PresentTag", "Preparing")
    await panel.ctl("release", pin=TAGS[2])
    assert await panel.session.wait_for("Authorize", timeout=TIMEOUT) == {"idTag": "DEADBEEF"}


@pytest.mark.parametrize(
    ("pin", "error"),
    [
        (
            "99",
            "press: GPIO99 is not a configured input (inputs: GPIO21 emergency stop (all "
            "connectors), GPIO17 plug (connector 1)",
        ),
        ("26", "press: GPIO26 is not a configured input"),
        ("plug", "press: expected a BCM pin number such as 17 or GPIO17, got 'plug'"),
        (None, "press: expected a BCM pin number"),
    ],
)
async def test_ctl_press_refuses_what_is_not_an_input(
    panel: PanelBench, pin: str | None, error: str
) -> None:
    answer = await panel.ctl("press", **({} if pin is None else {"pin": pin}))
    assert answer["ok"] is False
    assert answer["error"].startswith(error)


async def test_ctl_press_with_the_default_debounce(panel_factory: PanelFactory) -> None:
    bench = await panel_factory(debounce_ms=20)
    answer = await bench.ctl("press", pin=17)
    assert answer["result"]["event"] == "PlugIn"
    await bench.ctl("release", pin=17)  # inside the 20 ms window: reported when it settles
    await bench.status(1, "Preparing")
    assert await asyncio.to_thread(bench.pin(17).settle, TIMEOUT)
    answer = await bench.ctl("press", pin=17)
    assert answer["result"]["event"] == "Unplug"
    await bench.status(1, "Available")


# -- bad pin configs stop the service before anything connects --------------------------------


async def test_a_busy_pin_stops_the_service_before_it_connects(
    csms: CentralSystem, short_dir: Path
) -> None:
    settings = write_config(short_dir, csms.url)
    factory = mock_factory()
    holder = Button(23, pin_factory=factory)  # something else holds connector 2's plug pin
    service = Service(settings, backoff=FAST_BACKOFF, pin_factory=factory)
    with pytest.raises(PanelError) as caught:
        await service.run()
    text = str(caught.value)
    assert text.startswith(f"{settings.source}: connector[2].gpio.plug: GPIO23 is busy")
    assert caught.value.exit_status == 2
    assert csms.sessions == {} and not settings.control.socket.exists()
    # Every pin claimed before the failing one was released again.
    holder.close()
    for number in (17, 21, 5, 26):
        Button(number, pin_factory=factory).close()


async def test_a_pin_the_board_does_not_have(csms: CentralSystem, short_dir: Path) -> None:
    settings = write_config(short_dir, csms.url, c1=C1.replace("blue = 13", "blue = 28"))
    service = Service(settings, backoff=FAST_BACKOFF, pin_factory=mock_factory())
    with pytest.raises(PanelError) as caught:
        await service.run()
    assert str(caught.value) == (
        f"{settings.source}: connector[1].gpio.rgb_led.blue: GPIO28 does not exist on this "
        f"board (Raspberry Pi 3B rev 1.2); expected one of its GPIO numbers: 0 to 27"
    )
    assert csms.sessions == {}


async def test_a_pin_used_twice_fails_before_the_database_opens(
    csms: CentralSystem, short_dir: Path
) -> None:
    settings = write_config(short_dir, csms.url, c2=C2.replace("plug = 23", "plug = 17"))
    service = Service(settings, backoff=FAST_BACKOFF, pin_factory=mock_factory())
    with pytest.raises(ConfigError) as caught:
        await service.run()
    assert caught.value.key == "connector[2].gpio.plug"
    assert "GPIO17 is already used by connector[1].gpio.plug" in str(caught.value)
    assert not settings.storage.database.exists()


async def test_stopping_the_service_darkens_the_panel_and_releases_the_pins(
    csms: CentralSystem, short_dir: Path
) -> None:
    settings = write_config(short_dir, csms.url)
    factory = mock_factory()
    service, task = await start_panel_service(settings, factory)
    session = await csms.wait_for_charge_point(CP_ID, timeout=TIMEOUT)
    await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2, timeout=5)
    assert factory.pin(6).state == 1
    await stop_service(service, task)
    for use in load_panel_settings(settings).uses():
        pin = factory.pin(use.pin)
        if use.direction == "output":
            assert pin.function == "input" or pin.state == 0, use
        with contextlib.closing(Button(use.pin, pin_factory=factory)):
            pass  # claimable again: nothing leaked


# -- hilsim gpio test ------------------------------------------------------------------------


async def test_gpio_self_test_walks_every_output_and_prints_each_press(
    short_dir: Path,
) -> None:
    settings = load_panel_settings(write_config(short_dir, "ws://127.0.0.1:9"))
    factory = mock_factory()
    lines: asyncio.Queue[str] = asyncio.Queue()
    stop = asyncio.Event()
    run = asyncio.create_task(
        self_test(
            settings, factory, lines.put_nowait, backend="mock", step_s=0, listen_s=None, stop=stop
        )
    )

    async def until(text: str) -> str:
        while True:
            line = await asyncio.wait_for(lines.get(), TIMEOUT)
            if text in line:
                return line

    try:
        assert "GPIO self-test on mock (Raspberry Pi 3B rev 1.2)" in await until("self-test on")
        outputs = [
            u
            for u in load_panel_settings(write_config(short_dir, "ws://127.0.0.1:9")).uses()
            if u.direction == "output"
        ]
        walked = []
        while True:
            line = await asyncio.wait_for(lines.get(), TIMEOUT)
            if line.startswith("listening"):
                break
            if ": on" in line:
                walked.append(line)
        assert len(walked) == len(outputs)
        for use in outputs:
            on, off = (0.0, 1.0) if use.pin == RELAY[2] else (1.0, 0.0)  # K2's board: low = on
            low = ", active low" if use.pin == RELAY[2] else ""
            assert any(f": on (GPIO{use.pin} reads {on:g}{low})" in line for line in walked), use
            history = [float(s.state) for s in factory.pin(use.pin).states]
            assert on in history and history[-1] == off, (use, history)
        pin = factory.pin(PLUG[1])
        await asyncio.to_thread(pin.drive_low)
        assert await until("GPIO17 plug (connector 1)") == (
            "  GPIO17 plug (connector 1) pressed (level 0)"
        )
        await asyncio.to_thread(pin.drive_high)
        assert (await until("GPIO17")).endswith("released (level 1)")
        await asyncio.to_thread(factory.pin(ESTOP).drive_low)
        assert "GPIO21 emergency stop (all connectors) pressed" in await until("GPIO21")
        await asyncio.to_thread(factory.pin(4).drive_low)
        assert "GPIO4 tag BADC0FFE (connector 1) pressed" in await until("GPIO4")
        stop.set()
        assert await asyncio.wait_for(run, TIMEOUT) == 0
        assert "self-test done" in await until("done")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, TIMEOUT)
    Button(17, pin_factory=factory).close()  # released


# -- the demo ------------------------------------------------------------------------------


async def test_the_demo_presses_the_mock_buttons() -> None:
    from hilsim.demo import play

    lines: list[str] = []
    assert await play(trace=False, out=lines.append) == 0
    narration = "\n".join(lines)
    assert "▶ button GPIO17 pressed: EV plugged into connector 1" in narration
    assert "▶ button GPIO27 pressed: RFID tag 04A2B3C4 presented at connector 1" in narration
    assert "▶ button GPIO23 pressed: EV plugged into connector 2" in narration
    assert "connector 1 panel: LED blue pulsing (GPIO13), relay GPIO26 closed" in narration
    assert "connector 2 panel: LED green pulsing (GPIO12), relay GPIO18 closed" in narration
    assert "demo finished: OK" in narration


async def test_the_demo_plays_the_same_session_in_ocpp_201() -> None:
    """`hilsim demo --ocpp 2.0.1`: the same buttons and lights, a 2.0.1 CSMS, two whole
    transactions as TransactionEvents (the summary fails on a seqNo gap or a violation)."""
    from hilsim.demo import play

    lines: list[str] = []
    assert await play(trace=True, out=lines.append, ocpp_version="2.0.1") == 0, lines[-5:]
    narration = "\n".join(lines)
    assert "connecting with OCPP 2.0.1" in narration
    assert "▶ button GPIO27 pressed: RFID tag 04A2B3C4 presented at connector 1" in narration
    assert "connector 1 panel: LED blue pulsing (GPIO13), relay GPIO26 closed" in narration
    assert "TransactionEventResponse" in narration and ".conf" not in narration
    assert '"triggerReason":"RemoteStop"' in narration
    assert "idToken 04A2B3C4" in narration and "stopped: Remote" in narration
    assert "idToken DEADBEEF" in narration and "stopped: EVDisconnected" in narration
    assert "demo finished: OK" in narration
