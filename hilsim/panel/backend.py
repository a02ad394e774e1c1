"""From `[gpio] backend` to a gpiozero pin factory, and the mock pins a laptop runs on.

The factory is created here and handed to every device (`pin_factory=`); gpiozero's global
`Device.pin_factory` is never set, so two panels (or a test and a service) never share pins by
accident. A missing library or a board that is not there is translated into a PanelError naming
the config key, because the gpiozero message alone ("unable to locate Pi revision") does not tell
a person which line of their file to change.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from typing import Any

from gpiozero import Factory
from gpiozero.pins import Pin
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin, PinState

from hilsim.errors import PanelError

log = logging.getLogger(__name__)

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")

#: Pin states a mock pin remembers: a breathing LED changes 50 times a second, forever.
MOCK_STATES_KEPT = 512


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    module: str
    factory: str
    install: str  # how to get the library when it is missing


REAL_BACKENDS: tuple[Backend, ...] = (
    # gpiozero's own order of preference; lgpio is the one that works on a Pi 5.
    Backend(
        "lgpio",
        "gpiozero.pins.lgpio",
        "LGPIOFactory",
        "sudo apt install python3-lgpio, or pip install lgpio (hilsim[pi])",
    ),
    Backend(
        "rpigpio",
        "gpiozero.pins.rpigpio",
        "RPiGPIOFactory",
        "sudo apt install python3-rpi.gpio, or pip install RPi.GPIO (not on a Pi 5)",
    ),
    Backend("native", "gpiozero.pins.native", "NativeFactory", "it is part of gpiozero"),
)
BACKENDS = {b.name: b for b in REAL_BACKENDS}


class PanelMockPin(MockPWMPin):
    """gpiozero's MockPWMPin, completed where it says ``XXX Need to implement this``.

    gpiozero's Pin contract says a pin with edge detection "must implement bounce detection, even
    if only in software"; MockPin stores `bounce` and ignores it, so on a laptop a bouncing
    contact would fire a button three times. This pin does what the native backend does (report
    an edge, then ignore edges for `bounce` seconds) and, once the bouncing is over, reports the
    level it settled at if that differs from the last one reported, so a short glitch can never
    leave a switch read the wrong way round. It also remembers a bounded number of states
    (MockPin's list grows forever under a breathing LED) and lets a watcher wait for a change.
    """

    def __init__(self, factory: Any, info: Any) -> None:
        self._bounce_lock = threading.Lock()
        self._last_call: float | None = None
        self._reported: object = None
        self._settle_timer: threading.Timer | None = None
        #: notified after every change of state; hold it while reading `state` or `states`
        self.changed = threading.Condition()
        super().__init__(factory, info)

    def clear_states(self) -> None:
        self._last_change = monotonic()
        self.states = deque([PinState(0.0, self.state)], maxlen=MOCK_STATES_KEPT)

    def _change_state(self, value: Any) -> bool:
        with self.changed:
            changed = bool(super()._change_state(value))
            if changed:
                self.changed.notify_all()
        return changed

    def _call_when_changed(self) -> None:  # type: ignore[override]
        with self._bounce_lock:
            now = self._last_change
            bounce = self.bounce
            if bounce and self._last_call is not None and now - self._last_call < bounce:
                if self._settle_timer is None:
                    wait = max(0.0, self._last_call + bounce - monotonic())
                    self._settle_timer = threading.Timer(wait, self._settle)
                    self._settle_timer.daemon = True
                    self._settle_timer.start()
                return
            self._last_call = now
            self._reported = self.state
        super()._call_when_changed()

    def _settle(self) -> None:
        """The bounce window closed: report the level it ended at, if nobody has heard it."""
        with self._bounce_lock:
            self._settle_timer = None
            state = self.state
            wanted = "rising" if state else "falling"
            if (
                self.function != "input"
                or self.when_changed is None
                or state == self._reported
                or self.edges not in ("both", wanted)
            ):
                return
            self._last_call = monotonic()
            self._reported = state
        super()._call_when_changed()

    def settle(self, timeout: float | None = None) -> bool:
        """Block until a pending bounce window has closed and its level was reported.

        True when nothing is pending any more. What a bench (or a test) waits on instead of
        sleeping for "longer than the debounce time".
        """
        with self._bounce_lock:
            timer = self._settle_timer
        if timer is not None:
            timer.join(timeout)
            return not timer.is_alive()
        return True

    def close(self) -> None:
        with self._bounce_lock:
            if self._settle_timer is not None:
                self._settle_timer.cancel()
                self._settle_timer = None
            self._last_call = None
            self._reported = None
        super().close()


def finger(pin: Pin, pressed_level: bool) -> Callable[[], None]:
    """What drives a mock input pin to a level, as a finger on a button would.

    Only mock pins can be driven from software; on a real backend the level is the wire's, and
    pretending otherwise would hide a wiring fault, so this raises PanelError instead.
    """
    if not isinstance(pin, MockPin):
        raise PanelError(f"{pin!r} is a real pin: only mock pins can be pressed from software")
    return pin.drive_high if pressed_level else pin.drive_low


def mock_factory() -> MockFactory:
    """The `mock` backend: a mock Raspberry Pi whose pins do PWM and honour debounce."""
    return MockFactory(pin_class=PanelMockPin)


def is_mock(factory: Factory) -> bool:
    return isinstance(factory, MockFactory)


def raspberry_pi_model(model_file: Path = DEVICE_TREE_MODEL) -> str | None:
    """The board's model string when this is a Raspberry Pi, else None."""
    try:
        model = model_file.read_bytes().rstrip(b"\x00\n").decode("utf-8", "replace")
    except OSError:
        return None
    return model if "Raspberry Pi" in model else None


def open_pin_factory(
    backend: str, source: str, *, model_file: Path = DEVICE_TREE_MODEL
) -> tuple[Factory, str]:
    """The pin factory for a backend name, and the backend actually chosen.

    `auto` picks the first real backend that starts on a Raspberry Pi, and mock pins anywhere
    else, and logs which and why: a service that silently ran on mock pins on a Pi (because a
    library was missing) would look wired but never react.
    """
    if backend == "mock":
        model = raspberry_pi_model(model_file)
        if model is not None:
            log.warning(
                '%s: gpio.backend = "mock" on a %s: the pins on its header are not used '
                '(set backend = "auto" to drive them)',
                source,
                model,
            )
        log.info("GPIO backend mock: simulated pins (drive them with `hilsim ctl press`)")
        return mock_factory(), "mock"
    if backend != "auto":
        chosen = BACKENDS.get(backend)
        if chosen is None:
            known = ", ".join(("auto", "mock", *BACKENDS))
            raise PanelError(f"{source}: gpio.backend: expected one of {known}, got {backend!r}")
        try:
            factory = _start(chosen)
        except _Unavailable as exc:
            raise PanelError(
                f"{source}: gpio.backend: {backend!r}: {exc.reason}; {exc.expected}"
            ) from None
        log.info("GPIO backend %s", backend)
        return factory, backend
    model = raspberry_pi_model(model_file)
    if model is None:
        log.info(
            "GPIO backend auto: not a Raspberry Pi (no 'Raspberry Pi' in %s): using mock pins",
            model_file,
        )
        return mock_factory(), "mock"
    failures = []
    for candidate in REAL_BACKENDS:
        try:
            factory = _start(candidate)
        except _Unavailable as exc:
            failures.append(f"{candidate.name}: {exc.reason}")
            continue
        log.info("GPIO backend auto: %s: using %s", model, candidate.name)
        return factory, candidate.name
    raise PanelError(
        f"{source}: gpio.backend: 'auto' found a {model} but no GPIO library that can drive it "
        f"({'; '.join(failures)}); expected lgpio installed: {BACKENDS['lgpio'].install}"
    )


class _Unavailable(Exception):
    def __init__(self, reason: str, expected: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expected = expected


def _start(backend: Backend) -> Factory:
    try:
        module = importlib.import_module(backend.module)
    except ImportError as exc:
        raise _Unavailable(
            f"its library is not installed ({exc})",
            f'expected it installed: {backend.install}; or set backend = "mock"',
        ) from None
    try:
        factory: Factory = getattr(module, backend.factory)()
    except Exception as exc:  # each library fails its own way: OSError, RuntimeError, lgpio.error
        raise _Unavailable(
            f"cannot open the GPIO chip ({type(exc).__name__}: {exc})",
            "expected a Raspberry Pi this library supports and access to /dev/gpiochip* "
            '(is the user in the gpio group?); or set backend = "mock"',
        ) from None
    return factory
