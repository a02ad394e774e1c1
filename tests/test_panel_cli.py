"""The panel from the command line, in a real `hilsim` process: errors, `gpio test`, `ctl pins`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from test_panel import C1, C2, TOP, start_panel_service, write_config, write_config_file

from hilsim.csms import CentralSystem
from hilsim.panel import mock_factory
from hilsim.panel.backend import raspberry_pi_model

from conftest import CP_ID, stop_service

ROOT = Path(__file__).resolve().parent.parent
ON_A_PI = raspberry_pi_model() is not None


async def hilsim(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hilsim",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


BAD_CONFIGS = [
    pytest.param(
        {"c2": C2.replace("plug = 23", "plug = 17")},
        "connector[2].gpio.plug: GPIO17 is already used by connector[1].gpio.plug; "
        "expected each pin to be used once",
        id="pin-used-twice",
    ),
    pytest.param(
        {"c1": C1.replace("plug = 17", "plug = 40")},
        "connector[1].gpio.plug: GPIO40 does not exist on this board (Raspberry Pi 3B rev 1.2); "
        "expected one of its GPIO numbers: 0 to 27",
        id="pin-not-on-the-board",
    ),
    pytest.param(
        {"c1": C1.replace("plug = 17", "plug = 99")},
        "connector[1].gpio.plug: expected a BCM GPIO number (an integer from 0 to 53), got 99",
        id="pin-not-a-bcm-number",
    ),
    pytest.param(
        {"backend": "gpiod"},
        "gpio.backend: expected one of auto, mock, lgpio, rpigpio, native, got 'gpiod'",
        id="unknown-backend",
    ),
    pytest.param(
        {"backend": "lgpio"},
        "gpio.backend: 'lgpio': its library is not installed (No module named 'lgpio'); "
        "expected it installed: sudo apt install python3-lgpio",
        id="backend-library-missing",
        marks=pytest.mark.skipif(_importable("lgpio"), reason="lgpio is installed here"),
    ),
    pytest.param(
        {"backend": "native"},
        "gpio.backend: 'native': cannot open the GPIO chip",
        id="backend-without-a-pi",
        marks=pytest.mark.skipif(ON_A_PI, reason="on a Pi the native backend may start"),
    ),
]


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS)
async def test_hilsim_run_refuses_a_bad_pin_config_before_connecting(
    csms: CentralSystem, short_dir: Path, config: dict[str, str], message: str
) -> None:
    path = write_config_file(short_dir, csms.url, **config)
    code, _, err = await hilsim("run", "--config", str(path))
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("hilsim: ")]
    assert lines == [lines[0]] and lines[0].startswith(f"hilsim: {path}: {message}")
    assert "Traceback" not in err
    assert csms.sessions == {} and not (short_dir / "ctl.sock").exists()  # nothing connected


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS[:2])
async def test_gpio_test_refuses_a_bad_pin_config(
    short_dir: Path, config: dict[str, str], message: str
) -> None:
    path = write_config_file(short_dir, "ws://127.0.0.1:9", **config)
    code, _, err = await hilsim("gpio", "test", "--config", str(path), "--listen", "0")
    assert code == 2
    assert f"hilsim: {path}: {message}" in err


@pytest.mark.skipif(ON_A_PI, reason="on a Pi this would drive the real pins")
async def test_gpio_test_rehearses_the_hardware_panel_on_mock_pins() -> None:
    config = ROOT / "hardware" / "hilsim-panel.toml"
    code, out, err = await hilsim(
        "--log-level",
        "INFO",
        "gpio",
        "test",
        "--config",
        str(config),
        "--step",
        "0",
        "--listen",
        "0",
    )
    assert code == 0, err
    assert "GPIO backend auto: not a Raspberry Pi" in err and "using mock pins" in err
    lines = out.splitlines()
    assert lines[0] == "GPIO self-test on mock (Raspberry Pi 3B rev 1.2)"
    walked = [line.strip() for line in lines if ": on (" in line]
    assert walked == [
        "CSMS connected LED (GPIO19): on (GPIO19 reads 1)",
        "connector 1 RGB LED red (GPIO5): on (GPIO5 reads 1)",
        "connector 1 RGB LED green (GPIO6): on (GPIO6 reads 1)",
        "connector 1 RGB LED blue (GPIO13): on (GPIO13 reads 1)",
        "connector 1 relay (GPIO26, listen for the click): on (GPIO26 reads 1)",
        "connector 2 green LED (GPIO12): on (GPIO12 reads 1)",
        "connector 2 red LED (GPIO20): on (GPIO20 reads 1)",
        "connector 2 amber LED (GPIO16): on (GPIO16 reads 1)",
        "connector 2 relay (GPIO18, listen for the click): on (GPIO18 reads 1)",
    ]
    listening = next(line for line in lines if line.startswith("listening"))
    assert listening.startswith("listening to 8 input(s) for 0 s: GPIO21 emergency stop")
    assert lines[-1] == "self-test done"


async def test_gpio_test_without_pins_says_so(short_dir: Path) -> None:
    settings = write_config(short_dir, "ws://127.0.0.1:9", top="", c1="", c2="")
    code, out, _ = await hilsim("gpio", "test", "--config", settings.source)
    assert code == 0
    assert (
        out.strip() == f"{settings.source}: no GPIO pins configured ([gpio] and "
        "[connector.gpio] tables)"
    )


async def test_ctl_pins_press_and_release_from_the_command_line(
    csms: CentralSystem, short_dir: Path
) -> None:
    settings = write_config(short_dir, csms.url, top=TOP)
    service, task = await start_panel_service(settings, mock_factory())
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2, timeout=5)
        code, out, err = await hilsim("ctl", "--config", settings.source, "pins")
        assert code == 0, err
        pins = json.loads(out)
        assert pins["backend"] == "mock" and len(pins["pins"]) == 17
        assert {p["name"] for p in pins["pins"]} >= {"GPIO17", "GPIO19", "GPIO21", "GPIO26"}
        code, out, err = await hilsim("ctl", "--config", settings.source, "press", "GPIO17")
        assert code == 0, err
        assert json.loads(out) == {
            "pin": 17,
            "role": "plug",
            "connector": 1,
            "level": 0,
            "pressed": True,
            "event": "PlugIn",
            "result": "Preparing",
        }
        await session.wait_for(
            "StatusNotification", lambda p: p["status"] == "Preparing", timeout=5
        )
        code, out, err = await hilsim("ctl", "--config", settings.source, "release", "17")
        assert code == 0 and json.loads(out)["event"] is None
        code, out, err = await hilsim("ctl", "--config", settings.source, "press", "26")
        assert code == 1
        assert err.startswith("hilsim: press: GPIO26 is not a configured input (inputs: ")
    finally:
        await stop_service(service, task)
