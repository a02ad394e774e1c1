"""`[web]`: off by default, 127.0.0.1 unless told otherwise, and every wrong value named."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

import pytest

from hilsim.config import embedded_defaults, load_settings
from hilsim.errors import ConfigError
from hilsim.web import WebSettings, demo_listen, load_web_settings, with_web

BASE = """
[charge_point]
id = "CP"
csms_url = "ws://127.0.0.1:9000"
[[connector]]
id = 1
[storage]
database = "hilsim.db"
[control]
socket = "ctl.sock"
[gpio]
backend = "mock"
"""


def web_of(tmp_path: Path, web: str, *, base: str = BASE) -> WebSettings:
    path = tmp_path / "hilsim.toml"
    path.write_text(base + "[web]\n" + web)
    return load_web_settings(load_settings(path))


def error_of(tmp_path: Path, web: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        web_of(tmp_path, web)
    error = info.value
    assert error.file == str(tmp_path / "hilsim.toml")
    return error


def test_off_without_a_web_table(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.toml"
    path.write_text(BASE)
    web = load_web_settings(load_settings(path))
    assert not web.enabled
    assert not web.buttons


def test_off_with_a_web_table_but_no_listen(tmp_path: Path) -> None:
    web = web_of(tmp_path, 'password = "s3cret"\n')
    assert not web.enabled
    assert web.buttons  # a password alone is no reason to open a port


def test_the_issues_example(tmp_path: Path) -> None:
    web = web_of(tmp_path, 'listen = "0.0.0.0:8080"\n')
    assert (web.host, web.port) == ("0.0.0.0", 8080)
    assert web.enabled
    assert not web.buttons  # no password: a read-only view


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ('"127.0.0.1:8080"', "127.0.0.1", 8080),
        ('"localhost:9090"', "localhost", 9090),
        ('"pi-bench.local:80"', "pi-bench.local", 80),
        ('"[::1]:8080"', "::1", 8080),
        ('"[::]:8080"', "::", 8080),
        ('"127.0.0.1:0"', "127.0.0.1", 0),
        # A bare port stays on this machine: bound to 127.0.0.1 unless an address says otherwise.
        ("8080", "127.0.0.1", 8080),
        ('"8081"', "127.0.0.1", 8081),
    ],
)
def test_listen_forms(tmp_path: Path, listen: str, host: str, port: int) -> None:
    web = web_of(tmp_path, f"listen = {listen}\n")
    assert (web.host, web.port) == (host, port)


@pytest.mark.parametrize(
    ("web", "key", "fragment"),
    [
        ('listen = "0.0.0.0"\n', "web.listen", "expected HOST:PORT"),
        ('listen = ":8080"\n', "web.listen", "expected HOST:PORT"),
        ('listen = "127.0.0.1:http"\n', "web.listen", "expected HOST:PORT"),
        ('listen = "127.0.0.1:70000"\n', "web.listen", "port from 1 to 65535"),
        ("listen = 70000\n", "web.listen", "port from 1 to 65535"),
        ('listen = "::1:8080"\n', "web.listen", "IPv6 address in brackets"),
        ('listen = "[127.0.0.1]:8080"\n', "web.listen", "IPv6 address inside [ ]"),
        ('listen = "bad_host!:8080"\n', "web.listen", "IP address or a host name"),
        ("listen = true\n", "web.listen", "got true (a boolean)"),
        ("listen = [8080]\n", "web.listen", "got an array"),
        ('password = ""\n', "web.password", "non-empty string, got an empty string"),
        ("password = 1234\n", "web.password", "non-empty string, got 1234"),
        ('password = "a"\npassword_file = "pw"\n', "web.password_file", "not both"),
        ('password_file = "missing.txt"\n', "web.password_file", "file not found"),
        ("password_file = 5\n", "web.password_file", "path of a file"),
        ('id_tags = "04A2B3C4"\n', "web.id_tags", "array of strings"),
        ('id_tags = ["OK", ""]\n', "web.id_tags[1]", "at most 20 characters"),
        ('id_tags = ["123456789012345678901"]\n', "web.id_tags[0]", "OCPP 1.6 IdToken"),
        ("port = 8080\n", "web.port", "unknown key; known keys are: listen, password"),
    ],
)
def test_bad_values_name_file_key_and_expectation(
    tmp_path: Path, web: str, key: str, fragment: str
) -> None:
    error = error_of(tmp_path, web)
    assert error.key == key
    assert fragment in error.expected
    assert str(error).startswith(f"{tmp_path / 'hilsim.toml'}: {key}: ")


def test_web_must_be_a_table(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.toml"
    path.write_text('web = "on"\n' + BASE)
    with pytest.raises(ConfigError) as info:
        load_web_settings(load_settings(path))
    assert info.value.key == "web"
    assert "expected a [web] table" in info.value.expected


def test_password_file_relative_to_the_config_and_newline_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "web-password"
    secret.write_text("correct horse\n")
    secret.chmod(0o600)
    web = web_of(tmp_path, 'listen = 8080\npassword_file = "web-password"\n')
    assert web.password == "correct horse"
    assert "correct horse" not in repr(web)


def test_empty_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n")
    error = error_of(tmp_path, 'password_file = "pw"\n')
    assert error.key == "web.password_file"
    assert "empty" in error.expected


def test_world_readable_password_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter22")
    secret.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="hilsim.web.config"):
        web_of(tmp_path, 'password_file = "pw"\n')
    assert "readable by every user" in caplog.text
    assert "hunter22" not in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0)
    error = error_of(tmp_path, 'password_file = "pw"\n')
    assert "cannot read" in error.expected


def test_id_tags_default_to_the_csms_list_and_can_be_replaced(tmp_path: Path) -> None:
    base = BASE + '[csms]\nid_tags = ["AAA", "BBB"]\n'
    assert web_of(tmp_path, "listen = 8080\n", base=base).id_tags == ("AAA", "BBB")
    replaced = web_of(tmp_path, 'id_tags = ["CCC", "CCC", "DDD"]\n', base=base)
    assert replaced.id_tags == ("CCC", "DDD")


def test_with_web_turns_the_page_on_in_settings() -> None:
    settings = with_web(embedded_defaults(), "127.0.0.1:0", password="pw")
    web = load_web_settings(settings)
    assert (web.host, web.port, web.password) == ("127.0.0.1", 0, "pw")
    assert not load_web_settings(embedded_defaults()).enabled


def test_demo_listen_takes_8080_or_any_free_port() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        assert demo_listen(port=busy) == "127.0.0.1:0"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert demo_listen(port=free) == f"127.0.0.1:{free}"


async def _hilsim_run(config: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hilsim",
        "run",
        "--config",
        str(config),
        cwd=config.parent,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")},
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_hilsim_run_exits_2_on_a_bad_web_table(short_dir: Path) -> None:
    config = short_dir / "hilsim.toml"
    config.write_text(BASE + '[web]\nlisten = "0.0.0.0"\n')
    status, err = await _hilsim_run(config)
    assert status == 2
    assert f"hilsim: {config}: web.listen: expected HOST:PORT" in err


async def test_hilsim_run_exits_2_when_the_port_is_taken(short_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = short_dir / "hilsim.toml"
        config.write_text(BASE + f'[web]\nlisten = "127.0.0.1:{port}"\n')
        status, err = await _hilsim_run(config)
    assert status == 2
    assert f"web.listen: cannot listen on 127.0.0.1:{port}" in err
    assert "expected a free port" in err
