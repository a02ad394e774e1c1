"""Backends and the mock pins: which factory a backend name gives, and debounce on mock pins."""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import pytest
from gpiozero import PWMLED, Button
from gpiozero.pins import Pin
from gpiozero.pins.mock import MockFactory

from hilsim.errors import PanelError
from hilsim.panel.backend import (
    MOCK_STATES_KEPT,
    PanelMockPin,
    finger,
    mock_factory,
    open_pin_factory,
    raspberry_pi_model,
)

SOURCE = "/etc/hilsim/hilsim.toml"


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def test_mock_backend_gives_pwm_pins_that_honour_debounce(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "hilsim.panel.backend")
    factory, name = open_pin_factory("mock", SOURCE)
    try:
        assert name == "mock"
        assert isinstance(factory, MockFactory)
        assert isinstance(factory.pin(17), PanelMockPin)
        assert "GPIO backend mock" in caplog.text
    finally:
        factory.close()


def test_mock_on_a_pi_warns_that_the_header_is_unused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    factory, name = open_pin_factory("mock", SOURCE, model_file=model)
    factory.close()
    assert name == "mock"
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        f'{SOURCE}: gpio.backend = "mock" on a Raspberry Pi 4 Model B Rev 1.4: the pins on its '
        'header are not used (set backend = "auto" to drive them)'
    )


def test_auto_off_a_pi_picks_mock_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "hilsim.panel.backend")
    model = tmp_path / "model"
    model.write_bytes(b"Generic x86 laptop\x00")
    factory, name = open_pin_factory("auto", SOURCE, model_file=model)
    factory.close()
    assert name == "mock"
    assert "not a Raspberry Pi" in caplog.text and "using mock pins" in caplog.text
    factory, name = open_pin_factory("auto", SOURCE, model_file=tmp_path / "absent")
    factory.close()
    assert name == "mock"


def test_raspberry_pi_model_reads_the_device_tree(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert raspberry_pi_model(model) == "Raspberry Pi 5 Model B Rev 1.0"
    model.write_bytes(b"Pine64 RockPro64\x00")
    assert raspberry_pi_model(model) is None
    assert raspberry_pi_model(tmp_path / "absent") is None


@pytest.mark.skipif(
    raspberry_pi_model() is not None or not _missing("lgpio"),
    reason="this machine can really drive GPIO",
)
def test_auto_on_a_pi_without_a_working_library_says_what_to_install(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    with pytest.raises(PanelError) as caught:
        open_pin_factory("auto", SOURCE, model_file=model)
    text = str(caught.value)
    assert text.startswith(f"{SOURCE}: gpio.backend: 'auto' found a Raspberry Pi 5 Model B")
    assert "lgpio: its library is not installed" in text
    assert "native: cannot open the GPIO chip" in text
    assert "python3-lgpio" in text
    assert caught.value.exit_status == 2


@pytest.mark.parametrize(("backend", "module"), [("lgpio", "lgpio"), ("rpigpio", "RPi.GPIO")])
def test_a_missing_backend_library_names_the_key(backend: str, module: str) -> None:
    if not _missing(module):
        pytest.skip(f"{module} is installed here")
    with pytest.raises(PanelError) as caught:
        open_pin_factory(backend, SOURCE)
    text = str(caught.value)
    assert text.startswith(f"{SOURCE}: gpio.backend: {backend!r}: its library is not installed")
    assert "expected it installed" in text and 'or set backend = "mock"' in text
    assert caught.value.exit_status == 2


@pytest.mark.skipif(raspberry_pi_model() is not None, reason="on a Pi, native may well start")
def test_native_backend_off_a_pi_cannot_open_the_chip() -> None:
    with pytest.raises(PanelError) as caught:
        open_pin_factory("native", SOURCE)
    assert f"{SOURCE}: gpio.backend: 'native': cannot open the GPIO chip" in str(caught.value)


def test_an_unknown_backend_name() -> None:
    with pytest.raises(PanelError) as caught:
        open_pin_factory("gpiod", SOURCE)
    assert str(caught.value) == (
        f"{SOURCE}: gpio.backend: expected one of auto, mock, lgpio, rpigpio, native, got 'gpiod'"
    )


# -- the mock pins -------------------------------------------------------------------------


class Presses:
    """Counts a button's callbacks (they arrive on whatever thread drove the pin)."""

    def __init__(self, button: Button) -> None:
        self.lock = threading.Lock()
        self.pressed = 0
        self.released = 0
        self.released_event = threading.Event()
        button.when_pressed = self.on_press
        button.when_released = self.on_release

    def on_press(self) -> None:
        with self.lock:
            self.pressed += 1

    def on_release(self) -> None:
        with self.lock:
            self.released += 1
        self.released_event.set()


def test_a_bounce_burst_is_one_press() -> None:
    factory = mock_factory()
    button = Button(17, bounce_time=0.2, pin_factory=factory)
    presses = Presses(button)
    pin = button.pin
    try:
        for _ in range(5):  # a contact bouncing while it closes: low, high, low, ...
            pin.drive_low()
            pin.drive_high()
        pin.drive_low()
        assert pin.settle(5)
        assert (presses.pressed, presses.released) == (1, 0)
        assert button.is_pressed
    finally:
        button.close()


def test_without_debounce_every_edge_counts() -> None:
    factory = mock_factory()
    button = Button(17, bounce_time=None, pin_factory=factory)
    presses = Presses(button)
    try:
        for _ in range(5):
            button.pin.drive_low()
            button.pin.drive_high()
        assert (presses.pressed, presses.released) == (5, 5)
    finally:
        button.close()


def test_a_release_inside_the_bounce_window_is_reported_once_it_settles() -> None:
    factory = mock_factory()
    button = Button(17, bounce_time=0.2, pin_factory=factory)
    presses = Presses(button)
    pin = button.pin
    try:
        pin.drive_low()  # counts at once
        pin.drive_high()  # inside the window: held back, not lost
        assert (presses.pressed, presses.released) == (1, 0)
        assert presses.released_event.wait(5)
        assert (presses.pressed, presses.released) == (1, 1)
        assert not button.is_pressed
    finally:
        button.close()


def test_a_glitch_shorter_than_the_window_is_not_a_release() -> None:
    factory = mock_factory()
    button = Button(17, bounce_time=0.2, pin_factory=factory)
    presses = Presses(button)
    pin = button.pin
    try:
        pin.drive_low()  # pressed, and held
        pin.drive_high()  # a glitch on the held contact inside the window...
        pin.drive_low()
        assert pin.settle(5)
        assert (presses.pressed, presses.released) == (1, 0)  # ...settled where it was
        assert button.is_pressed
    finally:
        button.close()


def test_mock_pins_remember_a_bounded_history() -> None:
    factory = mock_factory()
    led = PWMLED(5, pin_factory=factory)
    try:
        for n in range(MOCK_STATES_KEPT * 3):
            led.value = (n % 100) / 100
        assert len(led.pin.states) == MOCK_STATES_KEPT
        assert led.pin.states[-1].state == pytest.approx(((MOCK_STATES_KEPT * 3 - 1) % 100) / 100)
    finally:
        led.close()


def test_only_mock_pins_can_be_pressed_from_software() -> None:
    pin = mock_factory().pin(17)
    assert finger(pin, pressed_level=False) == pin.drive_low
    assert finger(pin, pressed_level=True) == pin.drive_high
    with pytest.raises(PanelError, match="is a real pin"):
        finger(Pin(), pressed_level=False)
