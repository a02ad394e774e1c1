"""Faults of the process and its files, through real `hilsim run` processes (issue 14).

Two services on one database, a database the service's user may not use, the modes of the files
the service creates. The CSMS is the built-in one over the wire; nothing sleeps: every wait is
an exit status, a stderr line or a CSMS message, with a timeout.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest
from test_systemd_service import Child, running_hilsim

from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.store import Store, lock_path_of

from conftest import CP_ID, TAG, make_settings


def database_files(database: Path) -> dict[str, bytes]:
    """The database, its WAL and SHM, and its lock file, byte for byte."""
    names = [database.name + suffix for suffix in ("", "-wal", "-shm", ".lock")]
    return {
        name: (database.parent / name).read_bytes()
        for name in names
        if (database.parent / name).exists()
    }


async def charge(child: Child, session: ChargePointSession, connector: int, tag: str) -> int:
    """Plug in and present a tag; the CSMS's transaction id once the connector is Charging."""
    assert (await child.ctl("plug", connector=connector))["ok"]
    await session.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == connector and p["status"] == "Preparing"
    )
    assert (await child.ctl("tag", connector=connector, id_tag=tag))["ok"]
    await session.wait_for("StartTransaction", lambda p: p["connectorId"] == connector)
    await session.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == connector and p["status"] == "Charging"
    )
    record = next(
        r for r in session.central.ledger.values() if r.connector_id == connector and r.active
    )
    return record.transaction_id


async def refused_second(directory: Path, csms: CentralSystem, config: Path, first: Child) -> str:
    """Start a second `hilsim run` on `config`; it must exit 2 naming the first. Its last line."""
    async with running_hilsim(directory, csms.url, config=config) as second:
        status = await second.exit_status()
    assert status == 2, second.lines
    line = second.lines[-1]
    assert "already running on this database" in line, line
    assert f"pid {first.process.pid}, hilsim run --config {first.config}" in line, line
    return line


def shared_database_config(first: Child, directory: Path) -> Path:
    """A second config of its own (socket, charge point id) sharing the first's database."""
    text = first.config.read_text()
    other = directory / "other.toml"
    other.write_text(
        text.replace(str(first.socket_path), str(directory / "other.sock")).replace(
            f'id = "{CP_ID}"', 'id = "CP-OTHER"'
        )
    )
    return other


@pytest.mark.parametrize("second_config", ["same config", "other config, same database"])
async def test_a_second_hilsim_on_one_database_exits_2_and_the_first_keeps_charging(
    csms: CentralSystem, short_dir: Path, second_config: str
) -> None:
    async with running_hilsim(short_dir, csms.url) as first:
        session = await csms.wait_for_charge_point(CP_ID, timeout=10)
        for connector in (0, 1, 2):
            await session.wait_for(
                "StatusNotification",
                lambda p, c=connector: p["connectorId"] == c and p["status"] == "Available",
            )
        database = first.config.parent / "hilsim.db"
        config = first.config
        if second_config != "same config":
            config = shared_database_config(first, short_dir)

        # Idle: the refused instance leaves every file of the first byte-identical.
        before = database_files(database)
        await refused_second(short_dir, csms, config, first)
        assert database_files(database) == before

        # Charging: no power-loss recovery from the second, so no StopTransaction PowerLoss.
        transaction = await charge(first, session, 1, TAG)
        await refused_second(short_dir, csms, config, first)
        if second_config != "same config":
            # `hilsim config set` finds no service on its own socket, so it goes offline: the
            # lock refuses that too instead of writing behind the running service's back.
            before = database_files(database)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hilsim", "config", "--config", str(config),
                "set", "HeartbeatInterval", "33",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 2, err
            assert f"pid {first.process.pid}" in err.decode()
            assert database_files(database) == before
        state = await first.ctl("status")
        assert [c["status"] for c in state["result"]["connectors"]] == ["Charging", "Available"]

        # The first goes on: its transaction ends as the user ends it, and a new one works.
        assert (await first.ctl("tag", connector=1, id_tag=TAG))["ok"]
        stop = await session.wait_for("StopTransaction")
        assert stop["transactionId"] == transaction and stop.get("reason", "Local") == "Local"
        second = await charge(first, session, 2, TAG)
        assert (await first.ctl("tag", connector=2, id_tag=TAG))["ok"]
        stop = await session.wait_for("StopTransaction")
        assert stop["transactionId"] == second and stop.get("reason", "Local") == "Local"

        ledger = csms.ledger
        assert sorted(ledger) == [transaction, second]
        assert all(not record.active and record.reason == "Local" for record in ledger.values())
        assert ledger.repeated_starts == 0
        stops = [m for m in session.received if m.action == "StopTransaction"]
        assert len(stops) == 2  # nothing sent twice, nothing sent for the second instance
        assert csms.sessions.get("CP-OTHER") is None

        # The files it created are the service user's alone (the test runs with umask 022).
        for name in ("hilsim.db", "hilsim.db-wal", "hilsim.db-shm", "hilsim.db.lock"):
            mode = stat.S_IMODE((short_dir / name).stat().st_mode)
            assert mode == 0o600, f"{name}: {mode:o}"
        assert stat.S_IMODE(first.socket_path.stat().st_mode) == 0o660


# -- a database the service's user may not use ---------------------------------------------------

#: `hilsim run` as user nobody: root switches user once the interpreter and hilsim are loaded
#: (the interpreter may live under /root, which nobody cannot read).
AS_NOBODY = """
import os, pwd, sys
import asyncio, aiosqlite, sqlite3
import hilsim.cli, hilsim.config, hilsim.daemon, hilsim.service, hilsim.store
user = pwd.getpwnam("nobody")
os.setgroups([])
os.setgid(user.pw_gid)
os.setuid(user.pw_uid)
sys.exit(hilsim.cli.main(sys.argv[1:]))
"""


def state_directory(directory: Path, csms_url: str) -> tuple[Path, Path]:
    """A config whose database is in `directory`/state; (database, config)."""
    settings = make_settings(directory, csms_url)
    config = Path(settings.source)
    database = directory / "state" / "hilsim.db"
    database.parent.mkdir()
    config.write_text(config.read_text().replace(str(settings.storage.database), str(database)))
    return database, config


def take_away_access(database: Path, fault: str, nobody: pwd.struct_passwd) -> Path:
    """Make the database unusable for `nobody` as `fault` says; the path that refuses it."""
    state = database.parent
    state.parent.chmod(0o755)  # nobody may reach the config and the state directory
    if fault == "locked-up directory":
        os.chown(database, nobody.pw_uid, nobody.pw_gid)  # the file is fine, the directory not
        lock_path_of(database).unlink(missing_ok=True)
        return state
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    if lock_path_of(database).exists():  # left by the root who made the database
        os.chown(lock_path_of(database), nobody.pw_uid, nobody.pw_gid)
    database.chmod(0o644 if fault == "read-only database" else 0o600)
    return database


@pytest.mark.parametrize(
    "fault", ["read-only database", "unreadable database", "locked-up directory"]
)
async def test_a_database_the_user_may_not_use_is_a_permission_error_not_corruption(
    csms: CentralSystem, short_dir: Path, fault: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the test switches to user nobody to be refused by the files")

    nobody = pwd.getpwnam("nobody")
    database, config = state_directory(short_dir, csms.url)
    async with await Store.open(database) as store:  # a database with something in it
        await store.save_key("HeartbeatInterval", "33")
    denied = take_away_access(database, fault, nobody)
    state = database.parent
    before = database_files(database)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AS_NOBODY, "run", "--config", str(config),
        cwd=short_dir, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _out, raw = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:  # the old code moved the file aside and ran on
            proc.kill()
            await proc.wait()
    err = raw.decode()
    assert proc.returncode == 2, err
    assert f"hilsim: {denied}: permission denied for user nobody (uid {nobody.pw_uid})" in err
    assert "corrupt" not in err and "Traceback" not in err
    # The lock file now says who had it last; the database files are untouched, none moved aside.
    after = database_files(database)
    assert {n: b for n, b in after.items() if not n.endswith(".lock")} == {
        n: b for n, b in before.items() if not n.endswith(".lock")
    }
    assert sorted(p.name for p in state.iterdir()) == sorted(after)
