"""The control socket and the `hilsim` command line, through their real interfaces."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
from pathlib import Path

import pytest

from hilsim.config import Settings
from hilsim.control import request
from hilsim.csms import CentralSystem
from hilsim.errors import ControlError, DatabaseInUseError
from hilsim.store import Store

from conftest import TAG, Bench, make_settings, start_service, stop_service


async def hilsim(*args: str) -> tuple[int, str, str]:
    """Run the real `hilsim` command line in a subprocess."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hilsim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_plug_and_unplug(bench: Bench) -> None:
    assert (await bench.ctl("plug", 1)) == {"ok": True, "result": {"status": "Preparing"}}
    await bench.status(1, "Preparing")
    assert (await bench.ctl("unplug", 1))["ok"]
    await bench.status(1, "Available")


async def test_tag_starts_and_stops(bench: Bench) -> None:
    tx = await bench.start_local(2)
    answer = await bench.ctl("tag", 2, id_tag=TAG)
    assert answer["ok"]
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["transactionId"] == tx and stop["reason"] == "Local"


async def test_fault_and_clear(bench: Bench) -> None:
    assert (await bench.ctl("fault", 2, error_code="HighTemperature"))["ok"]
    faulted = await bench.status(2, "Faulted")
    assert faulted["errorCode"] == "HighTemperature"
    assert (await bench.ctl("clear", 2))["ok"]
    await bench.status(2, "Available")


async def test_refusals_carry_the_reason(bench: Bench) -> None:
    assert await bench.ctl("unplug", 1) == {"ok": False, "error": "connector 1: not plugged in"}
    await bench.ctl("plug", 1)
    assert (await bench.ctl("plug", 1))["error"] == "connector 1: already plugged in"
    assert "no connector 5" in (await bench.ctl("plug", 5))["error"]
    assert "unknown command" in (await bench.ctl("launch"))["error"]
    assert "idTag" in (await bench.ctl("tag", 1, id_tag="X" * 21))["error"]
    assert "OtherErrors" in (await bench.ctl("fault", 1, error_code="OtherErrors"))["error"]


async def test_status_reports_connection_and_connectors(bench: Bench) -> None:
    tx = await bench.start_local(1)
    status = (await bench.ctl("status"))["result"]
    assert status["csms"]["state"] == "connected"
    assert status["csms"]["url"].endswith("/CP-TEST")
    c1, c2 = status["connectors"]
    assert c1["status"] == "Charging" and c1["transaction_id"] == tx and c1["id_tag"] == TAG
    assert c1["power_W"] == 11000.0 and c1["energy_Wh"] >= 0
    assert c2["status"] == "Available" and c2["transaction_id"] is None


async def test_malformed_requests_are_answered(bench: Bench) -> None:
    reader, writer = await asyncio.open_unix_connection(str(bench.settings.control.socket))
    writer.write(b"not json\n{\"no\": \"cmd\"}\n")
    await writer.drain()
    first = json.loads(await reader.readline())
    second = json.loads(await reader.readline())
    writer.close()
    assert first == {"ok": False, "error": "request is not JSON"}
    assert second["ok"] is False and "cmd" in second["error"]


async def test_cli_ctl_status_and_plug(bench: Bench) -> None:
    config = str(bench.settings.source)
    code, out, err = await hilsim("ctl", "--config", config, "plug", "2")
    assert code == 0, err
    await bench.status(2, "Preparing")
    code, out, err = await hilsim("ctl", "--config", config, "status")
    assert code == 0, err
    assert json.loads(out)["connectors"][1]["status"] == "Preparing"
    code, out, err = await hilsim("ctl", "--config", config, "plug", "2")
    assert code == 1 and "already plugged in" in err


async def test_cli_ctl_when_service_not_running(short_dir: Path) -> None:
    settings = make_settings(short_dir, "ws://127.0.0.1:9")
    code, _out, err = await hilsim("ctl", "--config", settings.source, "status")
    assert code == 1
    assert "hilsim is not running" in err and "Traceback" not in err
    with pytest.raises(ControlError, match="not running"):
        await request(settings.control.socket, {"cmd": "status"})


async def test_stale_socket_is_replaced(csms, short_dir: Path) -> None:
    settings = make_settings(short_dir, csms.url)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(settings.control.socket))
    stale.close()  # the file stays behind, as after a crash
    assert settings.control.socket.exists()
    service, task = await start_service(settings)
    try:
        assert (await request(settings.control.socket, {"cmd": "status"}))["ok"]
    finally:
        await stop_service(service, task)
    assert not settings.control.socket.exists()


async def test_second_instance_refuses_to_start(bench: Bench) -> None:
    # The database's lock refuses it first, naming the holder (tests/test_fault_process.py has
    # the two real processes); the control socket of the first is left serving.
    with pytest.raises(DatabaseInUseError, match=f"already running .*pid {os.getpid()}"):
        await start_service(bench.settings)
    assert (await bench.ctl("status"))["ok"]


def point_socket_at(settings: Settings, path: Path) -> None:
    """Rewrite the config file's `[control] socket`, whatever it says now."""
    config = Path(settings.source)
    text = re.sub(r'(?m)^socket = ".*"$', f'socket = "{path}"', config.read_text())
    config.write_text(text)


def files_in(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@pytest.mark.parametrize("victim", ["database", "config", "directory"])
async def test_a_control_socket_naming_a_file_is_a_config_error_and_never_deleted(
    csms: CentralSystem, short_dir: Path, victim: str
) -> None:
    settings = make_settings(short_dir, csms.url)
    async with await Store.open(settings.storage.database) as store:  # a database with data
        await store.save_key("HeartbeatInterval", "33")
    target = {
        "database": settings.storage.database,
        "config": Path(settings.source),
        "directory": short_dir / "state",
    }[victim]
    if victim == "directory":
        target.mkdir()
    point_socket_at(settings, target)
    before = files_in(short_dir)
    code, _out, err = await hilsim("run", "--config", settings.source)
    assert code == 2, err
    why = "exists and is not a socket" if victim != "database" else "is a file of [storage]"
    assert f"{settings.source}: control.socket: {target} {why}" in err
    assert "Traceback" not in err
    assert target.exists()
    # Nothing touched: the check comes before the database is opened.
    assert files_in(short_dir) == before


async def test_a_control_socket_naming_the_database_to_be_is_refused_before_it_exists(
    short_dir: Path,
) -> None:
    settings = make_settings(short_dir, "ws://127.0.0.1:9")
    database = settings.storage.database
    point_socket_at(settings, database.with_name(database.name + "-wal"))
    code, _out, err = await hilsim("run", "--config", settings.source)
    assert code == 2, err
    assert f"control.socket: {database}-wal is a file of [storage] database {database}" in err
    assert sorted(p.name for p in short_dir.iterdir()) == ["hilsim.toml"]  # noqa: ASYNC240


async def test_a_socket_path_too_long_or_a_directory_not_creatable_exits_2(
    short_dir: Path,
) -> None:
    settings = make_settings(short_dir, "ws://127.0.0.1:9")
    long_path = short_dir / ("s" * 120) / "ctl.sock"
    blocked = short_dir / "a-file" / "ctl.sock"  # its "directory" is a regular file
    (short_dir / "a-file").write_text("")
    for path, expected in [
        (long_path, "a Unix socket path has at most 107"),
        (blocked, f"cannot create directory {blocked.parent}"),
    ]:
        point_socket_at(settings, path)
        code, _out, err = await hilsim("run", "--config", settings.source)
        assert code == 2, err
        assert f"{settings.source}: control.socket: " in err and expected in err, err


async def test_config_get_and_set_through_the_running_service(bench: Bench) -> None:
    config = str(bench.settings.source)
    code, out, err = await hilsim("config", "--config", config, "set", "HeartbeatInterval", "33")
    assert code == 0, err
    code, out, err = await hilsim("config", "--config", config, "get", "HeartbeatInterval")
    assert json.loads(out) == {"HeartbeatInterval": "33"}
    # The running charge point uses it at once: the CSMS sees the new value.
    got = await bench.session.get_configuration(["HeartbeatInterval"])
    assert got["configurationKey"][0]["value"] == "33"
    code, out, err = await hilsim("config", "--config", config, "set", "HeartbeatInterval", "x")
    assert code == 1 and "Rejected" in err


async def test_config_get_and_set_offline(short_dir: Path) -> None:
    settings = make_settings(short_dir, "ws://127.0.0.1:9")
    config = settings.source
    code, out, err = await hilsim(
        "config", "--config", config, "set", "MeterValuesSampleInterval", "5"
    )
    assert code == 0, err
    code, out, err = await hilsim("config", "--config", config, "get")
    assert json.loads(out)["MeterValueSampleInterval"] == "5"
    code, out, err = await hilsim("config", "--config", config, "get", "Nope")
    assert code == 1 and "unknown configuration key Nope" in err


async def test_config_set_of_a_key_without_an_effect_says_read_only(short_dir: Path) -> None:
    settings = make_settings(short_dir, "ws://127.0.0.1:9")
    config = settings.source
    code, out, err = await hilsim("config", "--config", config, "set", "BlinkRepeat", "5")
    assert code == 1 and "Rejected: BlinkRepeat is read-only" in err, err
    code, out, err = await hilsim("config", "--config", config, "get", "BlinkRepeat")
    assert code == 0 and json.loads(out) == {"BlinkRepeat": "3"}


@pytest.mark.parametrize(
    ("content", "key", "expected"),
    [
        (None, None, "not found"),
        ("[charge_point\n", None, "TOML"),
        ('[charge_point]\nid = "A"\ncsms_url = "http://x"\n[[connector]]\nid = 1\n',
         "charge_point.csms_url", "ws://"),
        (
            '[charge_point]\nid = "A"\ncsms_url = "ws://x"\n[[connector]]\nid = 1\n'
            'voltage_V = "abc"\n',
            "connector[1].voltage_V",
            "number",
        ),
    ],
)
async def test_bad_config_exits_2_naming_file_and_key(
    short_dir: Path, content: str | None, key: str | None, expected: str
) -> None:
    path = short_dir / "bad.toml"
    if content is not None:
        path.write_text(content)
    code, _out, err = await hilsim("run", "--config", str(path))
    assert code == 2
    assert str(path) in err and expected in err and "Traceback" not in err
    if key:
        assert key in err
