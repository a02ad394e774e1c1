"""hilsim.daemon piece by piece: journal fields, log handler choice, notify, status line,
shutdown reason, reload plan. The whole process under a notify socket is in
test_systemd_service.py."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_systemd_service import edit, require_systemd_python

from hilsim.config import parse_settings
from hilsim.daemon import (
    Notifier,
    ShutdownProbe,
    Supervision,
    SystemdBindings,
    configure_logging,
    configured_log_level,
    describe,
    journal_fields,
    load_bindings,
    plan_reload,
    status_line,
)
from hilsim.daemon.logs import journal_handler, journal_send, stderr_is_journal
from hilsim.daemon.notify import watchdog_interval
from hilsim.errors import ConfigError
from hilsim.evse import StopReason

from conftest import Bench


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("hilsim.charger", logging.INFO, __file__, 1, msg, args or None, None)
    made.__dict__.update(extra)
    return made


# -- journal fields -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "args", "fields"),
    [
        ("C%d is %s (%s)", (1, "Charging", "NoError"), {"CONNECTOR": "1"}),
        (
            "C%d transaction %d stopping (%s) at %d Wh",
            (2, 42, "Local", 1234),
            {"CONNECTOR": "2", "TRANSACTION": "42"},
        ),
        (
            "StopTransaction %d: not connected to the CSMS",
            (7,),
            {"TRANSACTION": "7", "OCPP_ACTION": "StopTransaction"},
        ),
        ("StatusNotification C%d", (3,), {"CONNECTOR": "3", "OCPP_ACTION": "StatusNotification"}),
        ("BootNotification accepted by the CSMS", (), {"OCPP_ACTION": "BootNotification"}),
        ("connector 2: already plugged in", (), {"CONNECTOR": "2"}),
        (
            "C1 StartTransaction failed: timeout",
            (),
            {"CONNECTOR": "1", "OCPP_ACTION": "StartTransaction"},
        ),
        ("CSMS sent %s, which hilsim does not implement", ("Reset",), {"OCPP_ACTION": "Reset"}),
        ("connected to ws://127.0.0.1:9000/CP-1", (), {}),
        ("connectorId: 2, transactionId=31", (), {"CONNECTOR": "2", "TRANSACTION": "31"}),
        ("idTag 04A2B3C4 and digest c3 are not connectors", (), {}),
        # Look-alikes are not fields: "CSMS" is not connector "C", "Resetting" is not "Reset".
        ("Resetting the CSMS link in C3PO mode", (), {}),
    ],
)
def test_journal_fields_are_read_from_the_message(
    message: str, args: tuple[object, ...], fields: dict[str, str]
) -> None:
    assert journal_fields(record(message, *args)) == fields


def test_explicit_fields_win_over_the_message() -> None:
    made = record(
        "C1 transaction 5", connector=2, transaction=9, ocpp_action="RemoteStopTransaction"
    )
    assert journal_fields(made) == {
        "CONNECTOR": "2",
        "TRANSACTION": "9",
        "OCPP_ACTION": "RemoteStopTransaction",
    }


def test_journal_send_passes_only_valid_field_names() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    journal_send(
        lambda message, **fields: sent.append((message, fields)),
        "hello",
        PRIORITY="6",
        CONNECTOR="1",
        msg="hello %s",
        levelname="INFO",
        EXCEPTION_INFO=(None, None, None),
        _PRIVATE="x",
        MESSAGE_ID=None,
    )
    assert sent == [("hello", {"PRIORITY": "6", "CONNECTOR": "1"})]


def test_the_journal_handler_sends_structured_fields() -> None:
    require_systemd_python()
    bindings = load_bindings()
    sent: list[tuple[str, dict[str, Any]]] = []
    handler = journal_handler(bindings.journal, send=lambda m, **f: sent.append((m, f)))
    logger = logging.Logger("hilsim.charger")
    logger.addHandler(handler)
    logger.warning("C%d transaction %d stopping (%s)", 1, 17, "Local")
    logger.info("plain", extra={"ocpp_action": "Heartbeat"})
    (message, fields), (plain, plain_fields) = sent
    assert message == "C1 transaction 17 stopping (Local)"
    assert fields["CONNECTOR"] == "1" and fields["TRANSACTION"] == "17"
    assert fields["PRIORITY"] == "4"  # warning
    assert fields["SYSLOG_IDENTIFIER"] == "hilsim"
    assert fields["LOGGER"] == "hilsim.charger"
    assert all(name.isupper() for name in fields)
    assert (plain, plain_fields["OCPP_ACTION"], plain_fields["PRIORITY"]) == (
        "plain",
        "Heartbeat",
        "6",
    )
    assert "CONNECTOR" not in plain_fields


# -- which handler --------------------------------------------------------------------------------


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[Any]:
    with (tmp_path / "stderr").open("w+") as handle:
        yield handle


def journal_stream_of(handle: Any) -> str:
    info = os.fstat(handle.fileno())
    return f"{info.st_dev}:{info.st_ino}"


def test_under_systemd_with_systemd_python_logs_go_to_the_journal(stream: Any) -> None:
    require_systemd_python()
    logger = logging.Logger("t")
    kind = configure_logging(
        "INFO", load_bindings(), environ={"INVOCATION_ID": "abc"}, stream=stream, logger=logger
    )
    assert kind == "journal"
    (handler,) = logger.handlers
    assert type(handler).__name__ == "JournalHandler"


def test_a_journal_stream_without_systemd_python_gets_priority_prefixes(stream: Any) -> None:
    logger = logging.Logger("t")
    environ = {"JOURNAL_STREAM": journal_stream_of(stream)}
    assert stderr_is_journal(environ, stream)
    kind = configure_logging(
        "DEBUG", SystemdBindings.absent(), environ=environ, stream=stream, logger=logger
    )
    assert kind == "stream"
    logger.warning("C1 faulted")
    logger.debug("detail")
    stream.seek(0)
    assert stream.read().splitlines() == ["<4>t: C1 faulted", "<7>t: detail"]


def test_at_a_terminal_logs_are_timestamped_lines(stream: Any) -> None:
    logger = logging.Logger("t")
    other = {"JOURNAL_STREAM": "1:2"}  # inherited, but not our stderr
    kind = configure_logging(
        "INFO", load_bindings(), environ=other, stream=stream, logger=logger
    )
    assert kind == "stderr"
    logger.info("hello")
    stream.seek(0)
    line = stream.read()
    assert line.endswith("INFO    t: hello\n") and line[:4].isdigit()


def test_a_logger_that_has_handlers_is_left_alone_unless_forced(stream: Any) -> None:
    logger = logging.Logger("t")
    mine = logging.NullHandler()
    logger.addHandler(mine)
    assert configure_logging("ERROR", SystemdBindings.absent(), stream=stream, logger=logger) == (
        "kept"
    )
    assert logger.handlers == [mine] and logger.level == logging.ERROR
    configure_logging("INFO", SystemdBindings.absent(), environ={}, stream=stream, logger=logger,
                      force=True)  # fmt: skip
    assert logger.handlers != [mine]


@pytest.mark.parametrize(
    ("environ", "level"),
    [({"NOTIFY_SOCKET": "/run/systemd/notify"}, logging.INFO), ({}, logging.DEBUG)],
)
def test_missing_systemd_python_is_said_once_and_notify_still_works(
    caplog: pytest.LogCaptureFixture, environ: dict[str, str], level: int
) -> None:
    caplog.set_level(logging.DEBUG)
    absent = SystemdBindings.absent("systemd-python is not installed (No module named 'systemd')")
    supervision = Supervision.from_environment(absent, environ=environ)
    # Under systemd the notifier sends by itself; nothing is missing but the journal's fields.
    assert supervision.notifier.active == bool(environ)
    assert supervision.notifier.via == ("datagram" if environ else None)
    said = [r for r in caplog.records if "journal entries" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == level
    assert "without the CONNECTOR, TRANSACTION and OCPP_ACTION fields" in said[0].getMessage()
    assert "sd_notify is sent without it" in said[0].getMessage()


def test_nothing_is_said_when_systemd_python_is_there(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    Supervision.from_environment(SystemdBindings(), environ={})  # installed, not loaded
    assert not [r for r in caplog.records if "journal entries" in r.getMessage()]


def _bindings_in_a_fresh_process(environ: dict[str, str], *python_flags: str) -> dict[str, Any]:
    """bindings_for in a new interpreter: which systemd modules it imported, and what it said."""
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from hilsim.daemon.bindings import bindings_for;"
        "b = bindings_for(json.loads(sys.argv[2]));"
        "print(json.dumps({'imported': sorted(m for m in sys.modules if m.startswith('systemd.')),"
        " 'loaded': b.journal is not None and b.daemon is not None,"
        " 'available': b.available, 'missing': b.missing}))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, *python_flags, "-c", script, root, json.dumps(environ)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_at_a_terminal_systemd_python_is_looked_for_not_imported() -> None:
    require_systemd_python()
    found = _bindings_in_a_fresh_process({})
    assert found == {"imported": [], "loaded": False, "available": True, "missing": None}


@pytest.mark.parametrize("variable", ["NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM"])
def test_under_systemd_the_modules_are_loaded(variable: str) -> None:
    require_systemd_python()
    found = _bindings_in_a_fresh_process({variable: "/run/systemd/notify"})
    assert found["loaded"] and found["available"]
    assert {"systemd.daemon", "systemd.journal"} <= set(found["imported"])


def test_without_systemd_python_the_look_says_it_is_missing() -> None:
    # -S: no site-packages, so the checkout's systemd/ folder (the unit) is all there is.
    found = _bindings_in_a_fresh_process({}, "-S")
    assert not found["available"] and not found["loaded"]
    assert "systemd-python is not installed" in found["missing"]


# -- [log] level ----------------------------------------------------------------------------------

BASE = """
[charge_point]
id = "CP"
csms_url = "ws://127.0.0.1:9000"
[[connector]]
id = 1
"""


def test_log_level_comes_from_the_config_file() -> None:
    assert configured_log_level(parse_settings(BASE, "f.toml")) is None
    assert configured_log_level(parse_settings(BASE + '[log]\nlevel = "debug"\n', "f.toml")) == (
        "DEBUG"
    )


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        ('[log]\nlevel = "LOUD"\n', "log.level", "expected one of DEBUG, INFO, WARNING, ERROR"),
        ("[log]\nlevel = 10\n", "log.level", "expected one of DEBUG, INFO, WARNING, ERROR"),
        ('[log]\nfile = "x"\n', "log.file", "unknown key; known keys are: level"),
    ],
)
def test_a_bad_log_table_names_file_key_and_expectation(
    table: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        configured_log_level(parse_settings(BASE + table, "f.toml"))
    assert (caught.value.file, caught.value.key) == ("f.toml", key)
    assert expected in caught.value.expected


def test_apply_log_level_prefers_the_command_line() -> None:
    logger = logging.Logger("t")
    settings = parse_settings(BASE + '[log]\nlevel = "ERROR"\n', "f.toml")
    assert Supervision(logger=logger).apply_log_level(settings) == "ERROR"
    assert logger.level == logging.ERROR
    assert Supervision(logger=logger, log_level_override="DEBUG").apply_log_level(settings) == (
        "DEBUG"
    )
    assert Supervision(logger=logger).apply_log_level(parse_settings(BASE, "f.toml")) == "INFO"


# -- notify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1234"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "99"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    environ: dict[str, str], interval: float | None
) -> None:
    assert watchdog_interval(environ, pid=1234) == interval


@pytest.fixture
def notify_socket(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket where systemd's would be; libsystemd reads NOTIFY_SOCKET itself."""
    path = short_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


@pytest.fixture(params=["systemd-python", "datagram"])
def sender(request: pytest.FixtureRequest) -> Any | None:
    """What `Notifier` is given: systemd-python's `daemon` module, or None to send by itself."""
    if request.param == "datagram":
        return None
    require_systemd_python()
    return load_bindings().daemon


def test_notifier_sends_assignments_and_skips_repeated_status(
    notify_socket: socket.socket, sender: Any | None
) -> None:
    notifier = Notifier(sender)
    assert notifier.active
    assert notifier.via == ("datagram" if sender is None else "systemd-python")
    assert notifier.ready("C1 Available")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=C1 Available"
    assert not notifier.status("C1 Available")  # unchanged: not sent
    assert notifier.status("C1 Charging\n7.2 kW")
    assert notify_socket.recv(4096) == b"STATUS=C1 Charging 7.2 kW"  # one line, always
    assert notifier.status("C1 Charging 7.2 kW", force=True)
    assert notify_socket.recv(4096) == b"STATUS=C1 Charging 7.2 kW"
    assert notifier.watchdog() and notify_socket.recv(4096) == b"WATCHDOG=1"
    assert notifier.reloading() and notify_socket.recv(4096) == b"RELOADING=1"
    assert notifier.stopping("stopping")
    assert notify_socket.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    assert not notifier.status("disconnected")  # the stopping line stays


def test_an_abstract_notify_socket_is_reached(
    monkeypatch: pytest.MonkeyPatch, sender: Any | None
) -> None:
    # '@' stands for the leading NUL byte of a Linux abstract socket name.
    name = f"hilsim-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = Notifier(sender)
        assert notifier.ready() and sock.recv(4096) == b"READY=1"
        assert notifier.watchdog() and sock.recv(4096) == b"WATCHDOG=1"


def test_a_vanished_notify_socket_is_reported_once(
    notify_socket: socket.socket,
    short_dir: Path,
    caplog: pytest.LogCaptureFixture,
    sender: Any | None,
) -> None:
    notifier = Notifier(sender)
    notify_socket.close()
    (short_dir / "notify.sock").unlink()
    assert not notifier.watchdog()
    assert not notifier.watchdog()
    warnings = [r for r in caplog.records if "sd_notify" in r.getMessage()]
    assert len(warnings) == 1


def test_a_notify_address_only_libsystemd_speaks_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier(None, environ={"NOTIFY_SOCKET": "vsock:2:1234"})
    assert notifier.active and notifier.via == "datagram"
    assert not notifier.ready() and not notifier.watchdog()
    warnings = [r.getMessage() for r in caplog.records if "sd_notify" in r.getMessage()]
    assert warnings == [
        "sd_notify to vsock:2:1234 failed: unsupported NOTIFY_SOCKET address 'vsock:2:1234'"
    ]


def test_without_systemd_python_the_service_still_notifies(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole chain in this process with the import made to fail, as on a bare pip install."""
    monkeypatch.setitem(sys.modules, "systemd", None)  # Python's own way to fail an import
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    bindings = load_bindings()
    assert not bindings.available and bindings.daemon is None
    notifier = Supervision.from_environment(bindings).notifier
    assert notifier.via == "datagram" and notifier.watchdog_interval_s == 1.0
    assert notifier.ready("up") and notify_socket.recv(4096) == b"READY=1\nSTATUS=up"
    assert notifier.watchdog() and notify_socket.recv(4096) == b"WATCHDOG=1"


def test_without_notify_socket_the_notifier_is_silent(sender: Any | None) -> None:
    off = Notifier(sender, environ={"WATCHDOG_USEC": "1"})
    assert not off.active and off.via is None and off.watchdog_interval_s is None
    assert not off.ready("x") and not off.watchdog() and not off.status("x")


# -- status line ----------------------------------------------------------------------------------


def connector(
    cid: int, status: str, power_W: float = 0.0, error: str = "NoError"
) -> dict[str, Any]:
    return {"id": cid, "status": status, "power_W": power_W, "error_code": error}


@pytest.mark.parametrize(
    ("state", "connectors", "line"),
    [
        (
            "connected",
            [connector(1, "Charging", 7200.0), connector(2, "Available")],
            "connected to ws://csms:9000/PI · C1 Charging 7.2 kW · C2 Available",
        ),
        (
            "disconnected",
            [connector(1, "SuspendedEV", 0.0), connector(2, "Faulted", error="GroundFailure")],
            "disconnected from ws://csms:9000/PI, retrying · C1 SuspendedEV 0.0 kW"
            " · C2 Faulted (GroundFailure)",
        ),
        ("pending", [], "BootNotification pending at ws://csms:9000/PI"),
        ("booting", [], "sending BootNotification to ws://csms:9000/PI"),
        ("connecting", [], "connecting to ws://csms:9000/PI"),
    ],
)
def test_status_line_reads_like_a_front_panel(
    state: str, connectors: list[dict[str, Any]], line: str
) -> None:
    snapshot = {"csms": {"url": "ws://csms:9000/PI", "state": state}, "connectors": connectors}
    assert status_line(snapshot) == line


async def test_status_line_of_a_real_charger(bench: Bench) -> None:
    url = f"{bench.csms.url}/CP-TEST"
    assert bench.service.status_text() == f"connected to {url} · C1 Available · C2 Available"
    await bench.start_local(1)
    assert bench.service.status_text() == (
        f"connected to {url} · C1 Charging 11.0 kW · C2 Available"
    )
    assert (await bench.ctl("fault", 2, error_code="GroundFailure"))["ok"]
    assert bench.service.status_text().endswith("· C2 Faulted (GroundFailure)")


async def test_debug_block_loop_refuses_unbounded_or_bad_durations(bench: Bench) -> None:
    for seconds in (0, -1, 601, "soon", None, float("nan")):
        answer = await bench.ctl("debug-block-loop", seconds=seconds)
        assert answer == {"ok": False, "error": "debug-block-loop: seconds must be > 0 and <= 600"}


# -- shutdown reason ------------------------------------------------------------------------------


def script(directory: Path, body: str) -> str:
    path = directory / "systemctl"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


async def test_a_plain_stop_is_local(short_dir: Path) -> None:
    probe = ShutdownProbe(systemctl=script(short_dir, "echo running\n"), scheduled=short_dir / "x")
    assert await probe.stop_reason() == StopReason.LOCAL


async def test_a_stopping_system_is_reboot(short_dir: Path) -> None:
    probe = ShutdownProbe(systemctl=script(short_dir, "echo stopping; exit 1\n"),
                          scheduled=short_dir / "x")  # fmt: skip
    assert await probe.stop_reason() == StopReason.REBOOT


async def test_missing_or_silent_systemctl_means_local(short_dir: Path) -> None:
    missing = ShutdownProbe(systemctl=str(short_dir / "nope"), scheduled=short_dir / "x")
    assert await missing.stop_reason() == StopReason.LOCAL
    hung = ShutdownProbe(
        systemctl=script(short_dir, "exec sleep 30\n"), scheduled=short_dir / "x", timeout_s=0.2
    )
    started = time.monotonic()
    assert await hung.stop_reason() == StopReason.LOCAL
    assert time.monotonic() - started < 5


async def test_this_machine_is_not_shutting_down() -> None:
    """The real systemctl (where there is one) on a machine that is running tests."""
    assert await ShutdownProbe(scheduled=Path("/nonexistent")).stop_reason() == StopReason.LOCAL


@pytest.mark.parametrize(
    ("content", "due"),
    [
        (f"USEC={int((time.time() - 5) * 1e6)}\nWARN_WALL=1\nMODE=reboot\n", True),
        (f"USEC={int((time.time() + 600) * 1e6)}\nMODE=poweroff\n", False),  # only scheduled
        ("MODE=reboot\n", False),
        ("USEC=soon\n", False),
    ],
)
def test_a_scheduled_shutdown_counts_once_its_time_has_come(
    tmp_path: Path, content: str, due: bool
) -> None:
    scheduled = tmp_path / "scheduled"
    scheduled.write_text(content)
    assert ShutdownProbe(scheduled=scheduled).scheduled_shutdown_due() is due
    assert not ShutdownProbe(scheduled=tmp_path / "absent").scheduled_shutdown_due()


# -- reload plan ----------------------------------------------------------------------------------


def test_reload_applies_charge_point_and_log_and_names_the_rest(short_dir: Path) -> None:
    old = parse_settings(BASE + '[csms]\nport = 9000\n', "f.toml")
    new = parse_settings(
        BASE.replace("127.0.0.1:9000", "csms.example:9443").replace('id = "CP"', 'id = "CP-2"')
        + '[[connector]]\nid = 2\n[log]\nlevel = "DEBUG"\n[meter]\nport = "/dev/hilsim-meter"\n'
        + "[csms]\nport = 9100\n",
        "f.toml",
    )
    plan = plan_reload(old, new)
    assert plan.log_level == "DEBUG"
    assert plan.applied == (
        "log.level = DEBUG (now)",
        "charge_point.id = 'CP-2' (at the next connection to the CSMS)",
        "charge_point.csms_url = 'ws://csms.example:9443' (at the next connection to the CSMS)",
    )
    assert plan.needs_restart == ("connector", "meter")  # [csms] is not `hilsim run`'s
    assert plan.settings.charge_point.endpoint == "ws://csms.example:9443/CP-2"
    assert plan.settings.connectors == old.connectors  # still running with the old ones
    assert plan.settings.raw["log"]["level"] == "DEBUG" and "meter" not in plan.settings.raw
    assert describe(plan)[-1] == (
        logging.WARNING,
        "reload: changed but needs `systemctl restart hilsim` to apply: connector, meter",
    )


def test_reload_of_an_unchanged_file_says_so() -> None:
    settings = parse_settings(BASE, "f.toml")
    plan = plan_reload(settings, parse_settings(BASE, "f.toml"))
    assert not plan.changed
    assert describe(plan) == [(logging.INFO, "reload: configuration unchanged")]


def test_a_connector_subtable_change_needs_a_restart() -> None:
    old = parse_settings(BASE, "f.toml")
    new = parse_settings(BASE + "[connector.gpio]\nplug = { pin = 17 }\n", "f.toml")
    assert old.connectors == new.connectors  # the parsed limits are the same...
    assert plan_reload(old, new).needs_restart == ("connector",)  # ...the pins are not


def test_storage_control_and_gpio_need_a_restart() -> None:
    old = parse_settings(BASE, "/etc/hilsim/f.toml")
    new = parse_settings(
        BASE + '[storage]\ndatabase = "/tmp/x.db"\n[control]\nsocket = "/tmp/x.sock"\n'
        '[gpio]\nbackend = "auto"\n',
        "/etc/hilsim/f.toml",
    )
    assert plan_reload(old, new).needs_restart == ("storage", "control", "gpio")


async def test_service_reload_points_the_link_at_the_new_csms(bench: Bench) -> None:
    edit(
        Path(bench.settings.source),
        lambda text: text.replace(bench.csms.url, "ws://127.0.0.2:9999").replace(
            'vendor = "hilsim"', 'vendor = "acme"'
        ),
    )
    bench.service.reload()
    link = bench.service.link
    assert link is not None
    assert link.endpoint == "ws://127.0.0.2:9999/CP-TEST"
    assert link.identity.vendor == "acme"
    assert bench.service.settings.charge_point.csms_url == "ws://127.0.0.2:9999"
    assert link.state == "connected"  # the running connection is kept

