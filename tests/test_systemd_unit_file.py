"""systemd/hilsim.service as systemd itself reads it: `systemd-analyze verify` and `security`."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "hilsim.service"
INSTALLED_HILSIM = "/opt/hilsim/venv/bin/hilsim"


def require_tool(name: str) -> str:
    """The tool's path; skipped where it is not installed, but CI installs it, so fail there."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (apt-get install {'systemd' if 'systemd' in name else name})"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


def directives() -> dict[str, list[str]]:
    """Every `Key=value` of the unit, in order; keys repeat (DeviceAllow=, SystemCallFilter=)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify also checks that ExecStart= exists, and /opt/hilsim is not installed here: the
    copy checked points ExecStart= at this checkout's `hilsim`, every other line verbatim."""
    analyze = require_tool("systemd-analyze")
    here = Path(sys.executable).with_name("hilsim")
    assert here.exists(), f"no hilsim console script next to {sys.executable}"
    text = UNIT.read_text()
    assert text.count(INSTALLED_HILSIM) == 1
    unit = tmp_path / "hilsim.service"
    unit.write_text(text.replace(INSTALLED_HILSIM, str(here)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning


def test_the_unit_without_its_program_fails_verify(tmp_path: Path) -> None:
    """The check above can fail: a wrong ExecStart= path is an error."""
    analyze = require_tool("systemd-analyze")
    unit = tmp_path / "hilsim.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_HILSIM, str(tmp_path / "missing")))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "missing" in result.stderr


def measured_exposure() -> float:
    analyze = require_tool("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for hilsim\.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_the_security_exposure_is_no_worse_than_the_readme_says() -> None:
    readme = (ROOT / "README.md").read_text()
    quoted = re.search(r"exposure level of \*\*(\d+\.\d) OK\*\*", readme)
    assert quoted, "README must quote the `systemd-analyze security` figure"
    assert measured_exposure() <= float(quoted.group(1))


def test_the_unit_is_a_notify_service_with_a_watchdog_and_restarts() -> None:
    found = directives()
    assert found["Service.Type"] == ["notify"]
    assert found["Service.NotifyAccess"] == ["main"]
    assert found["Service.WatchdogSec"] == ["30"]
    assert found["Service.Restart"] == ["on-failure"]
    assert found["Service.RestartPreventExitStatus"] == ["2"]  # a config error
    assert found["Service.ExecStart"] == [
        f"{INSTALLED_HILSIM} run --config /etc/hilsim/hilsim.toml"
    ]
    assert found["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert found["Install.WantedBy"] == ["multi-user.target"]


def test_the_unit_runs_as_hilsim_with_gpio_and_serial_only() -> None:
    found = directives()
    assert found["Service.User"] == ["hilsim"]
    assert found["Service.SupplementaryGroups"] == ["gpio dialout"]
    assert found["Service.StateDirectory"] == ["hilsim"]
    assert found["Service.RuntimeDirectory"] == ["hilsim"]
    assert found["Service.ProtectSystem"] == ["strict"]
    assert found["Service.ReadWritePaths"] == ["/var/lib/hilsim"]
    assert found["Service.DevicePolicy"] == ["closed"]
    allowed = {value.split()[0] for value in found["Service.DeviceAllow"]}
    assert allowed == {
        "char-gpiochip",
        "char-bcm2835-gpiomem",
        "char-rpi-gpiomem",
        "char-gpiomem",
        "char-ttyUSB",
        "char-ttyACM",
        "char-ttyAMA",
        "char-ttyS",
    }
    assert found["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "MemoryDenyWriteExecute"):
        assert found[f"Service.{key}"] == ["yes"], key
    assert "@system-service" in found["Service.SystemCallFilter"]


def test_the_unit_parses_as_ini() -> None:
    # Duplicate keys are normal in units; strict=False lets configparser read them.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]


def test_every_exit_status_a_restart_cannot_fix_stops_the_restarts() -> None:
    """Each error class that ends `hilsim run` with a status other than 1 is one systemd must not
    restart on (a config error, pins taken, a database locked or not permitted): else a broken
    setup restart-loops until StartLimitBurst, burying the one line that says what to fix."""
    import hilsim.errors as errors

    def subclasses(cls: type) -> list[type]:
        return [cls, *(c for sub in cls.__subclasses__() for c in subclasses(sub))]

    statuses = {
        cls.exit_status
        for cls in subclasses(errors.HilsimError)
        if cls.__module__ == errors.__name__ and cls.exit_status != 1
    }
    assert statuses == {2}
    assert errors.DatabaseInUseError.exit_status == errors.StoreSetupError.exit_status == 2
    prevented = directives()["Service.RestartPreventExitStatus"]
    assert {int(word) for line in prevented for word in line.split()} >= statuses
