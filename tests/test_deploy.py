"""deploy/: the installer and uninstaller (shellcheck, dry runs, each failure) and the udev rule.

A real install needs a Raspberry Pi with systemd as PID 1; here the scripts run for real in
--dry-run mode, and each refusal is produced the real way (another user, a PATH without apt-get,
a network namespace without routes).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_systemd_unit_file import require_tool

from hilsim.config import parse_settings
from hilsim.csms import CentralSystem
from hilsim.daemon import configured_log_level

from conftest import start_service, stop_service

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install.sh"
UNINSTALL = ROOT / "deploy" / "uninstall.sh"
RULES = ROOT / "deploy" / "99-hilsim-meter.rules"

#: Everything the installer creates; a dry run must leave each exactly as it was.
INSTALLED = (
    "/opt/hilsim",
    "/etc/hilsim",
    "/var/lib/hilsim",
    "/etc/systemd/system/hilsim.service",
    "/etc/udev/rules.d/99-hilsim-meter.rules",
    "/usr/local/bin/hilsim",
)


def sh(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> (
    subprocess.CompletedProcess[str]
):
    return subprocess.run(
        [*prefix, "sh", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def on_a_pi() -> bool:
    model = Path("/proc/device-tree/model")
    return model.exists() and "Raspberry Pi" in model.read_text(errors="replace")


def has_default_route() -> bool:
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == "00000000" for line in lines if len(line.split()) > 1)


def state_of_the_machine() -> dict[str, object]:
    state: dict[str, object] = {path: os.path.lexists(path) for path in INSTALLED}
    state["user"] = subprocess.run(["getent", "passwd", "hilsim"], capture_output=True).returncode
    return state


def require_root(why: str) -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI runs as root and must run this test ({why})")
    pytest.skip(f"needs root: {why}")


# -- shellcheck -----------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=lambda p: p.name)
def test_the_scripts_pass_shellcheck(script: Path) -> None:
    shellcheck = require_tool("shellcheck")
    result = subprocess.run(
        [shellcheck, "--shell=sh", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=lambda p: p.name)
def test_the_scripts_stop_at_the_first_error(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "set -eu" in lines
    assert os.access(script, os.X_OK)


# -- install.sh -----------------------------------------------------------------------------------


def test_install_dry_run_prints_every_step_and_changes_nothing() -> None:
    if not has_default_route() and not os.environ.get("CI"):
        pytest.skip("no network here (no default route): the installer refuses, as it should")
    before = state_of_the_machine()
    result = sh(str(INSTALL), "--dry-run", "--allow-non-pi")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("hilsim install: dry run: nothing will be changed\n")
    steps = [
        "would run: apt-get install -y python3 python3-venv python3-pip python3-systemd",
        "groups gpio,dialout",
        "would run: python3 -m venv --clear --system-site-packages /opt/hilsim/venv"
        if not os.path.exists("/opt/hilsim/venv/bin/python")
        else "upgrading /opt/hilsim/venv",
        f"would run: /opt/hilsim/venv/bin/pip install --upgrade {ROOT}",
        "would run: install -d -m 0750 -o root -g hilsim /etc/hilsim",
        "/etc/hilsim/hilsim.toml",
        "would run: install -d -m 0750 -o hilsim -g hilsim /var/lib/hilsim",
        f"would run: install -m 0644 {ROOT}/deploy/99-hilsim-meter.rules "
        "/etc/udev/rules.d/99-hilsim-meter.rules",
        f"would run: install -m 0644 {ROOT}/systemd/hilsim.service "
        "/etc/systemd/system/hilsim.service",
        "would run: systemctl daemon-reload",
        "would run: systemctl enable hilsim.service",
        "would run: systemctl restart hilsim.service",
        "hilsim install: dry run finished: nothing was changed",
    ]
    position = 0
    for step in steps:
        found = out.find(step, position)
        assert found >= 0, f"{step!r} missing or out of order in:\n{out}"
        position = found
    assert state_of_the_machine() == before


def test_install_keeps_an_existing_config_says_the_dry_run() -> None:
    """Idempotence is decided by what exists; the dry run shows the decision it would take."""
    if not has_default_route() and not os.environ.get("CI"):
        pytest.skip("no network here (no default route): the installer refuses, as it should")
    result = sh(str(INSTALL), "--dry-run", "--allow-non-pi")
    assert result.returncode == 0, result.stderr
    if os.path.exists("/etc/hilsim/hilsim.toml"):
        assert "keeping /etc/hilsim/hilsim.toml" in result.stdout
    else:
        assert "writing the starter config /etc/hilsim/hilsim.toml" in result.stdout
        assert "would write: /etc/hilsim/hilsim.toml (root:hilsim 0640" in result.stdout


def test_install_refuses_a_machine_that_is_not_a_pi() -> None:
    if on_a_pi():
        pytest.skip("this is a Raspberry Pi")
    result = sh(str(INSTALL), "--dry-run")
    assert result.returncode == 1
    assert "hilsim install: error: not a Raspberry Pi" in result.stderr
    assert "--allow-non-pi" in result.stderr


def unprivileged(script: Path, directory: Path) -> tuple[tuple[str, ...], Path]:
    """How to run `script` as an ordinary user: as is when we are one, else as nobody (a copy
    in `directory`, made world-readable: the clone may sit where nobody cannot read; /tmp's
    short_dir works, pytest's tmp_path does not, its parent is private)."""
    if os.geteuid() != 0:
        return (), script
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop root")
    directory.chmod(0o755)
    copy = directory / script.name
    shutil.copy(script, copy)
    copy.chmod(0o755)
    return (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"), copy


def test_install_refuses_to_run_without_root(short_dir: Path) -> None:
    prefix, script = unprivileged(INSTALL, short_dir)
    result = sh(str(script), "--allow-non-pi", prefix=prefix)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == f"hilsim install: error: must run as root: sudo {script}"


def test_install_refuses_a_system_without_apt(tmp_path: Path) -> None:
    """Every command on PATH is there except apt-get, as on a distribution without apt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/bin"):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = bin_dir / name
            if name.startswith("apt") or target.exists():
                continue
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK) and not os.path.isdir(path):
                target.symlink_to(path)
    assert shutil.which("apt-get", path=str(bin_dir)) is None
    result = sh(
        str(INSTALL), "--dry-run", "--allow-non-pi", env={**os.environ, "PATH": str(bin_dir)}
    )
    assert result.returncode == 1
    assert "hilsim install: error: apt-get not found" in result.stderr


def test_install_refuses_a_machine_without_network() -> None:
    require_root("a network namespace without routes needs unshare as root")
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run([unshare, "--net", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.decode().strip()}")
    result = sh(str(INSTALL), "--dry-run", "--allow-non-pi", prefix=(unshare, "--net"))
    assert result.returncode == 1
    assert "hilsim install: error: no network: no default route" in result.stderr


def test_install_rejects_unknown_options() -> None:
    result = sh(str(INSTALL), "--yes-please")
    assert result.returncode == 1
    assert "unknown option '--yes-please'" in result.stderr
    assert "Usage:" in result.stderr
    assert sh(str(INSTALL), "--help").stdout.startswith("Usage: sudo ")


def starter_config() -> str:
    result = sh(str(INSTALL), "--print-config")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_starter_config_loads_and_points_at_the_service_paths() -> None:
    settings = parse_settings(starter_config(), "/etc/hilsim/hilsim.toml")
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40]
    assert settings.charge_point.id == f"hilsim-{host}"
    assert str(settings.storage.database) == "/var/lib/hilsim/hilsim.db"
    assert str(settings.control.socket) == "/run/hilsim/control.sock"
    assert settings.gpio.backend == "auto"
    assert [c.id for c in settings.connectors] == [1, 2]
    assert configured_log_level(settings) == "INFO"


def test_the_installers_config_check_accepts_the_starter_and_names_a_typo(
    short_dir: Path,
) -> None:
    """What install.sh runs before restarting the service, run the same way."""
    config = short_dir / "hilsim.toml"
    config.write_text(starter_config())
    check = [sys.executable, "-m", "hilsim.daemon.checks", str(config)]
    good = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert (good.returncode, good.stdout) == (0, f"{config}: OK\n"), good.stderr
    config.write_text(starter_config().replace("max_power_W = 7400", 'max_power_W = "lots"'))
    bad = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"hilsim: {config}: connector[2].max_power_W: expected a number")
    # The demo page's table is checked too: `hilsim run` would refuse it.
    config.write_text(starter_config() + '\n[web]\nlisten = "0.0.0.0:http"\n')
    web = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert web.returncode == 2
    assert web.stderr.startswith(f"hilsim: {config}: web.listen: "), web.stderr


async def test_a_service_starts_from_the_starter_config(
    csms: CentralSystem, short_dir: Path
) -> None:
    """The starter config, with this test's CSMS and a writable directory for its files."""
    text = (
        starter_config()
        .replace("ws://127.0.0.1:9000", csms.url)
        .replace("/var/lib/hilsim/hilsim.db", str(short_dir / "hilsim.db"))
        .replace("/run/hilsim/control.sock", str(short_dir / "control.sock"))
    )
    settings = parse_settings(text, str(short_dir / "hilsim.toml"))
    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(settings.charge_point.id, timeout=10)
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
    finally:
        await stop_service(service, task)


# -- uninstall.sh ---------------------------------------------------------------------------------


def test_uninstall_dry_run_keeps_the_data() -> None:
    before = state_of_the_machine()
    result = sh(str(UNINSTALL), "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for path in ("/etc/systemd/system/hilsim.service", "/etc/udev/rules.d/99-hilsim-meter.rules",
                 "/opt/hilsim"):  # fmt: skip
        assert f"would run: rm -rf {path}\n" in out
    assert "would run: rm -rf /etc/hilsim" not in out
    assert "would run: rm -rf /var/lib/hilsim" not in out
    assert "keeping /etc/hilsim (the config) and /var/lib/hilsim (the database)" in out
    assert state_of_the_machine() == before


def test_uninstall_purge_deletes_the_data_too() -> None:
    result = sh(str(UNINSTALL), "--dry-run", "--purge")
    assert result.returncode == 0, result.stderr
    assert "would run: rm -rf /etc/hilsim\n" in result.stdout
    assert "would run: rm -rf /var/lib/hilsim\n" in result.stdout


def test_uninstall_refuses_to_run_without_root(short_dir: Path) -> None:
    prefix, script = unprivileged(UNINSTALL, short_dir)
    result = sh(str(script), prefix=prefix)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == f"hilsim uninstall: error: must run as root: sudo {script}"


# -- the udev rule --------------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r'([A-Z_]+(?:\{[^}]+\})?)(==|!=|\+=|:=|=)"([^"]*)"')


def rules() -> list[list[tuple[str, str, str]]]:
    """Each rule line as (key, operator, value) triples; anything else fails the parse."""
    parsed = []
    for number, line in enumerate(RULES.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [part.strip() for part in line.split(",")]
        triples = []
        for part in parts:
            match = _ASSIGNMENT.fullmatch(part)
            assert match, f"{RULES.name}:{number}: cannot parse {part!r}"
            triples.append((match.group(1), match.group(2), match.group(3)))
        parsed.append(triples)
    return parsed


def test_every_adapter_rule_links_hilsim_meter_in_group_dialout() -> None:
    adapters = [r for r in rules() if any(key == "ATTRS{idVendor}" for key, _, _ in r)]
    assert len(adapters) >= 10
    ids = set()
    for rule in adapters:
        fields = {key: (op, value) for key, op, value in rule}
        assert fields["ATTRS{idVendor}"][0] == "==" and fields["ATTRS{idProduct}"][0] == "=="
        assert re.fullmatch(r"[0-9a-f]{4}", fields["ATTRS{idVendor}"][1])
        assert fields["SYMLINK"] == ("+=", "hilsim-meter")
        assert fields["GROUP"] == ("=", "dialout")
        assert fields["MODE"] == ("=", "0660")
        ids.add((fields["ATTRS{idVendor}"][1], fields["ATTRS{idProduct}"][1]))
    # FTDI FT232R, CH340, CP2102, PL2303: the adapters most benches have.
    assert {("0403", "6001"), ("1a86", "7523"), ("10c4", "ea60"), ("067b", "2303")} <= ids
    assert len(ids) == len(adapters), "an adapter is listed twice"


def test_the_udev_rules_only_touch_ttys_and_labels_match() -> None:
    text = RULES.read_text()
    gotos = set(re.findall(r'GOTO="([^"]+)"', text))
    labels = set(re.findall(r'LABEL="([^"]+)"', text))
    assert gotos == labels == {"hilsim_meter_end"}
    assert 'SUBSYSTEM!="tty", GOTO="hilsim_meter_end"' in text
    # systemd 253 and newer can check rules files themselves.
    udevadm = shutil.which("udevadm")
    verify = [udevadm, "verify"] if udevadm else None
    if verify and subprocess.run([*verify, "--help"], capture_output=True).returncode == 0:
        result = subprocess.run([*verify, str(RULES)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
