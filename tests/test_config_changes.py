"""ChangeConfiguration and `hilsim config set`: validate, persist, then apply and answer.

Issue 14, item 7 and the case of key names: a value that cannot be saved is Rejected and never
in use; `hilsim config set` with the service stopped runs the service's own guards and says why
it refuses; a key name is a CiString50 (any case), and the AuthorizationKey's value is in no log
line however its name is spelt. The faults are real: a SQLite trigger that raises, a key file
path that is a directory, a real `hilsim` subprocess.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from pathlib import Path

import pytest
from test_outbox_faults import assert_ledger_whole, charge_once

from hilsim.firmware import LogRing

from conftest import Bench, make_settings

SECRET = "0123456789ABCDEF0123456789abcdef"


def sql(database: Path, statement: str) -> None:
    with sqlite3.connect(database) as other:
        other.execute(statement)


async def hilsim_config(config: Path, *words: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hilsim", "config", "--config", str(config), *words,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def profile_1_config(directory: Path) -> Path:
    """A configuration at security profile 1 (Basic auth, a password file), for the CLI."""
    settings = make_settings(directory, "ws://127.0.0.1:9/ocpp")
    password = directory / "password"
    password.write_text("a-password-of-16-bytes-or-more")
    password.chmod(0o600)
    config = Path(settings.source)
    config.write_text(
        config.read_text() + f'\n[security]\nprofile = 1\npassword_file = "{password}"\n'
    )
    return config


async def configured(bench: Bench, key: str) -> str | None:
    entries = (await bench.session.get_configuration([key]))["configurationKey"]
    return entries[0].get("value") if entries else None


async def test_a_value_that_cannot_be_saved_is_rejected_and_not_in_use(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """Today: applied first, then the save raised: a CALLERROR for a value the CP runs with."""
    database = bench.settings.storage.database
    sql(
        database,
        "CREATE TRIGGER failing BEFORE INSERT ON configuration_key "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
    )
    sql(
        database,
        "CREATE TRIGGER failing_update BEFORE UPDATE ON configuration_key "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
    )
    assert await bench.session.change_configuration("MeterValueSampleInterval", "7") == "Rejected"
    assert await configured(bench, "MeterValueSampleInterval") == "30"
    assert any(
        r.levelname == "ERROR" and "MeterValueSampleInterval = 7 not saved" in r.getMessage()
        for r in caplog.records
    )
    answer = await bench.ctl("config-set", key="HeartbeatInterval", value="300")
    assert not answer["ok"] and answer["error"].startswith("Rejected: cannot save")
    sql(database, "DROP TRIGGER failing")
    sql(database, "DROP TRIGGER failing_update")
    assert await bench.session.change_configuration("MeterValueSampleInterval", "7") == "Accepted"
    assert await configured(bench, "MeterValueSampleInterval") == "7"
    await charge_once(bench, 1)
    assert_ledger_whole(bench, 1)


async def test_an_authorization_key_that_cannot_be_kept_is_rejected(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """Today: the listener's failed save was swallowed and the CSMS heard Accepted."""
    key_file = bench.settings.storage.database.parent / "authorization_key"
    key_file.mkdir()  # a directory where the file must go: os.replace fails, as a full disk
    (key_file / "in-the-way").write_text("")
    assert await bench.session.change_configuration("AuthorizationKey", SECRET) == "Rejected"
    assert any(
        r.levelname == "ERROR" and "AuthorizationKey = (write-only, not shown) not saved"
        in r.getMessage()
        for r in caplog.records
    )
    assert all(SECRET.casefold() not in r.getMessage().casefold() for r in caplog.records)
    await charge_once(bench, 1)
    assert_ledger_whole(bench, 1)


async def test_key_names_are_case_insensitive_and_the_secret_never_logged(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    ring = LogRing()
    logging.getLogger().addHandler(ring)
    try:
        assert await bench.session.change_configuration("heartbeatINTERVAL", "300") == "Accepted"
        answer = await bench.session.get_configuration(["HEARTBEATINTERVAL", "nosuchkey"])
        assert answer["configurationKey"] == [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
        ]
        assert answer["unknownKey"] == ["nosuchkey"]
        for name in ("authorizationkey", "AUTHORIZATIONKEY", "AuthorizationKey"):
            assert await bench.session.change_configuration(name, SECRET) == "Accepted"
        # A bad value, in any case, is refused without being shown either.
        bad = "zz" + SECRET[2:]
        assert await bench.session.change_configuration("authorizationKEY", bad) == "Rejected"
        listed = await bench.session.get_configuration(["authorizationkey"])
        assert listed["configurationKey"] == [{"key": "AuthorizationKey", "readonly": False}]
        await charge_once(bench, 1)
    finally:
        logging.getLogger().removeHandler(ring)
    lines = [r.getMessage() for r in caplog.records] + ring.lines()
    for secret in (SECRET, bad):
        assert not [line for line in lines if secret.casefold() in line.casefold()]
    assert_ledger_whole(bench, 1)


async def test_config_set_offline_runs_the_service_guards_and_says_why(short_dir: Path) -> None:
    """Today: `hilsim config set SecurityProfile 3` (no certificates) or a downgrade was
    Accepted with the service stopped, and then the service could not start."""
    config = profile_1_config(short_dir)
    code, _, err = await hilsim_config(config, "set", "SecurityProfile", "3")
    assert code == 1
    assert err.strip() == (
        "hilsim: Rejected: profile 3 needs [security] client_cert and client_key"
    )
    code, _, err = await hilsim_config(config, "set", "securityprofile", "0")
    assert code == 1
    assert err.strip() == "hilsim: Rejected: going down from profile 1 to 0 is not allowed"
    code, _, err = await hilsim_config(config, "set", "NoSuchKey", "1")
    assert code == 1 and err.strip() == "hilsim: NotSupported: unknown key NoSuchKey"
    code, out, _ = await hilsim_config(config, "set", "heartbeatinterval", "300")
    assert code == 0 and '"Accepted"' in out
    code, out, _ = await hilsim_config(config, "get", "HEARTBEATINTERVAL")
    assert code == 0 and '"HeartbeatInterval": "300"' in out
    code, out, _ = await hilsim_config(config, "get", "SecurityProfile")
    assert '"SecurityProfile": "1"' in out  # nothing refused was stored
