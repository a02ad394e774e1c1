"""SQLite store: real database files under tmp_path, closed and reopened to simulate restarts."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import stat
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest

import hilsim.store.migrations as migrations_module
from hilsim.errors import DatabaseInUseError, StoreError, StoreSetupError
from hilsim.keys import SPECS, ChangeStatus
from hilsim.store import MIGRATIONS, Store
from hilsim.stored_keys import load_configuration


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file with plain sqlite3, independent of the code under test."""
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


async def test_open_creates_parent_dirs_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "hilsim.db"
    async with await Store.open(path) as store:
        assert store.path == path
        assert await store.load_keys() == {}
    assert path.is_file()
    assert query(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    columns = [row[1] for row in query(path, "PRAGMA table_info(configuration_key)")]
    assert columns == ["name", "value", "origin", "updated_at"]


async def test_wal_mode_is_on(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    store = await Store.open(str(path))
    try:
        assert query(path, "PRAGMA journal_mode") == [("wal",)]
    finally:
        await store.close()


async def test_seed_then_restart_keeps_changed_keys(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path) as store:
        keys = await load_configuration(store)
        # Every key but the write-only one (a secret is never stored with the others).
        assert keys.as_text() == {
            spec.name: spec.format(spec.default) for spec in SPECS if not spec.writeonly
        }
        stored = await store.load_keys()
        assert set(stored) == {spec.name for spec in SPECS if not spec.writeonly}
        assert await store.changed_keys() == set()

        status, spec, value = keys.change("MeterValuesSampleInterval", "10")
        assert status is ChangeStatus.accepted and spec is not None and value is not None
        await store.save_key(spec.name, spec.format(value))

    async with await Store.open(path) as store:
        assert await store.changed_keys() == {"MeterValueSampleInterval"}
        keys = await load_configuration(store)
        assert keys.get("MeterValueSampleInterval") == 10
        assert keys.get("HeartbeatInterval") == 120
        stored = await store.load_keys()
        assert stored["MeterValueSampleInterval"] == "10"
        assert set(stored) == {spec.name for spec in SPECS if not spec.writeonly}


async def test_seed_only_inserts_missing_and_never_overrides_changed(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path) as store:
        await store.save_key("HeartbeatInterval", "15")
        await store.seed_keys({"HeartbeatInterval": "120", "ConnectionTimeOut": "60"})
        assert await store.load_keys() == {"HeartbeatInterval": "15", "ConnectionTimeOut": "60"}
        assert await store.changed_keys() == {"HeartbeatInterval"}


async def test_seed_override_and_new_seed_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path) as store:
        keys = await load_configuration(store, {"voltage_V": 120})
        assert keys.get("voltage_V") == 120.0
    # The TOML was edited between runs: a key the CSMS never changed follows the new seed.
    async with await Store.open(path) as store:
        keys = await load_configuration(store, {"voltage_V": 400.0})
        assert keys.get("voltage_V") == 400.0
        assert (await store.load_keys())["voltage_V"] == "400.0"


async def test_invalid_seed_falls_back_to_spec_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await Store.open(tmp_path / "hilsim.db") as store:
        with caplog.at_level(logging.WARNING, logger="hilsim.store"):
            keys = await load_configuration(store, {"voltage_V": 0.5})
    assert keys.get("voltage_V") == 230.0
    assert "voltage_V" in caplog.text


async def test_unknown_seed_key_is_a_programming_error(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "hilsim.db") as store:
        with pytest.raises(KeyError):
            await load_configuration(store, {"Nope": 1})


async def test_garbage_value_falls_back_to_default_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path) as store:
        await store.save_key("HeartbeatInterval", "every now and then")
        await store.save_key("OCPPAuthorizationEnabled", "false")
        await store.save_key("RemovedInOlderRelease", "1")
        with caplog.at_level(logging.WARNING, logger="hilsim.store"):
            keys = await load_configuration(store)

    assert keys.get("HeartbeatInterval") == 120
    assert keys.get("OCPPAuthorizationEnabled") is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "HeartbeatInterval" in warnings[0].getMessage()
    assert "every now and then" in warnings[0].getMessage()
    assert str(path) in warnings[0].getMessage()


async def test_save_key_is_committed_immediately(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path) as store:
        await store.save_key("HeartbeatInterval", "30")
        # A second connection sees it while the store is still open: nothing is left uncommitted.
        rows = query(path, "SELECT name, value, origin FROM configuration_key")
        assert rows == [("HeartbeatInterval", "30", "changed")]


async def test_origin_constraint_is_enforced(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path):
        pass
    with closing(sqlite3.connect(path)) as connection, pytest.raises(sqlite3.IntegrityError):
        connection.execute(
            "INSERT INTO configuration_key VALUES ('HeartbeatInterval', '1', 'typed', 'now')"
        )


async def test_parent_is_a_file_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = blocker / "hilsim.db"
    with pytest.raises(StoreError) as info:
        await Store.open(path)
    assert str(path) in str(info.value)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreSetupError, match="newer than this hilsim supports") as info:
        await Store.open(path)
    assert info.value.exit_status == 2  # a restart would meet it again


async def test_use_after_close_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    store = await Store.open(path)
    await store.close()
    with pytest.raises(StoreError) as info:
        await store.load_keys()
    assert str(path) in str(info.value)


async def test_concurrent_writes_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path) as store:
        await asyncio.gather(
            store.seed_keys({f"Key{n}": "0" for n in range(20)}),
            *(store.save_key(f"Key{n}", str(n)) for n in range(20)),
        )
        stored = await store.load_keys()
    assert len(stored) == 20


async def test_failed_migration_leaves_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path):
        pass
    broken = "CREATE TABLE scratch (id INTEGER PRIMARY KEY); SELECT * FROM no_such_table;"
    monkeypatch.setattr(migrations_module, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(StoreError, match="no_such_table"):
        await Store.open(path)
    assert query(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert query(path, "SELECT name FROM sqlite_master WHERE name = 'scratch'") == []


async def test_corrupt_database_is_moved_aside_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path) as store:
        await store.save_key("HeartbeatInterval", "33")
    path.write_bytes(b"this is not an SQLite database, the SD card ate it" * 100)
    with caplog.at_level(logging.ERROR, logger="hilsim.store"):
        async with await Store.open(path) as store:
            assert await store.load_keys() == {}
    asides = sorted(tmp_path.glob("hilsim.db.corrupt-*"))  # noqa: ASYNC240
    assert len(asides) == 1 and asides[0].read_bytes().startswith(b"this is not")
    assert "is corrupt" in caplog.text and str(asides[0]) in caplog.text


async def test_outbox_keeps_order_and_forgets_delivered_transactions(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "hilsim.db") as store:
        local = await store.begin_transaction(1, "TAG", 100, "2026-01-01T00:00:00Z", '{"a": 1}')
        await store.record_sample(1, 150.0, "2026-01-01T00:00:30Z", local, '{"b": 2}')
        await store.end_transaction(local, 1, 160.0, "2026-01-01T00:01:00Z", '{"c": 3}')
        seen = []
        while (head := await store.outbox_head()) is not None:
            seen.append(head.action)
            await store.outbox_done(head.seq, transaction_id=7 if not seen[:-1] else None)
            if head.action == "StartTransaction":
                assert (await store.transactions())[0].transaction_id == 7
        assert seen == ["StartTransaction", "MeterValues", "StopTransaction"]
        assert await store.transactions() == []
        assert await store.meter_registers() == {1: 160.0}


async def test_open_transaction_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path) as store:
        local = await store.begin_transaction(2, "TAG", 5, "2026-01-01T00:00:00Z", "{}")
        await store.record_sample(2, 42.5, "2026-01-01T00:00:30Z", local, "{}")
    async with await Store.open(path) as store:
        (row,) = await store.transactions()
        assert (row.local_id, row.connector_id, row.stopped) == (local, 2, False)
        assert row.last_energy_Wh == 42.5 and row.last_sample_at == "2026-01-01T00:00:30Z"
        assert await store.outbox_size() == 2


async def test_transaction_data_survives_a_restart_and_leaves_with_the_stop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path) as store:
        local = await store.begin_transaction(1, "TAG", 5, "2026-01-01T00:00:00Z", "{}")
        other = await store.begin_transaction(2, "TAG", 9, "2026-01-01T00:00:00Z", "{}")
        await store.keep_transaction_data(local, '{"begin": 1}')
        await store.record_sample(1, 6.0, "2026-01-01T00:00:30Z", local, None, '{"sample": 2}')
        await store.record_sample(2, 9.5, "2026-01-01T00:00:30Z", other, "{}", '{"other": 1}')
        # No transaction: nothing kept, whatever is passed (an idle connector's clock value).
        await store.record_sample(1, 6.0, "2026-01-01T00:00:31Z", None, None, '{"idle": 0}')
    async with await Store.open(path) as store:  # a power cut here loses none of it
        assert await store.transaction_data(local) == ['{"begin": 1}', '{"sample": 2}']
        await store.end_transaction(local, 1, 7.0, "2026-01-01T00:01:00Z", "{}")
        assert await store.transaction_data(local) == []
        assert await store.transaction_data(other) == ['{"other": 1}']
    rows = query(path, "SELECT local_id, meter_value FROM transaction_data ORDER BY seq")
    assert rows == [(other, '{"other": 1}')]


async def test_a_directory_at_the_database_path_is_refused_not_moved_aside(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hilsim.db"
    path.mkdir()
    (path / "keep").write_text("mine")
    with pytest.raises(StoreSetupError, match="is not a regular file") as info:
        await Store.open(path)
    assert info.value.exit_status == 2 and str(path) in str(info.value)
    assert (path / "keep").read_text() == "mine"
    assert not list(tmp_path.glob("*.corrupt-*"))  # noqa: ASYNC240


async def test_the_lock_is_held_while_open_and_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.db"
    async with await Store.open(path, holder="hilsim run --config a.toml"):
        with pytest.raises(DatabaseInUseError, match=r"pid \d+, hilsim run --config a.toml"):
            await Store.open(path, holder="hilsim config --config b.toml")
    async with await Store.open(path):  # closing let go of it
        pass
    # Created 0600 whatever the umask: idTags and readings are the service user's alone.
    for name in ("hilsim.db", "hilsim.db.lock"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_storage_imports_no_service() -> None:
    """Storage sits below every service: importing it must not load the keys, charger, etc.

    It imported hilsim.keys (for load_configuration), which put it in the import cycle through
    charger, keys and the OCPP handlers. A fresh interpreter, since this one has loaded them all.
    """
    code = (
        "import sys, hilsim.store\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('hilsim'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert [m for m in loaded if not m.startswith("hilsim.store")] == ["hilsim", "hilsim.errors"]


@pytest.mark.parametrize("durable", [False, True], ids=["normal", "durable"])
async def test_a_write_cancelled_in_its_begin_leaves_no_transaction_open(
    tmp_path: Path, durable: bool
) -> None:
    """A task cancelled while its BEGIN runs in aiosqlite's thread (the outbox when the link
    drops) once left the connection inside a transaction: every later write failed."""
    store = await Store.open(tmp_path / "hilsim.db")
    entered, release = threading.Event(), threading.Event()

    def hold_begin(statement: str) -> None:  # runs in aiosqlite's thread, before the statement
        if statement.startswith("BEGIN") and not release.is_set():
            entered.set()
            release.wait(10)

    async def write() -> None:
        async with store.database.transaction(durable=durable):
            await store.database.connection.execute("SELECT 1")

    try:
        await store.database.connection.set_trace_callback(hold_begin)
        task = asyncio.create_task(write())
        assert await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.database.connection.set_trace_callback(None)
        assert not store.database.connection.in_transaction
        await store.save_key("HeartbeatInterval", "77")
    finally:
        release.set()
        await store.close()
    assert query(
        tmp_path / "hilsim.db",
        "SELECT value FROM configuration_key WHERE name = 'HeartbeatInterval'",
    ) == [("77",)]


async def test_schema_7_keeps_queued_messages_and_takes_transaction_events(
    tmp_path: Path,
) -> None:
    """A database of the previous release (schema 6) with a message waiting keeps it, in order,
    and afterwards the outbox accepts OCPP 2.0.1's TransactionEvent."""
    path = tmp_path / "hilsim.db"
    with closing(sqlite3.connect(path)) as db:
        for number, script in enumerate(MIGRATIONS[:6], 1):
            db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        db.execute(
            "INSERT INTO charging_transaction (local_id, connector_id, id_tag, meter_start_Wh, "
            "started_at, last_energy_Wh, last_sample_at) VALUES (4, 1, 'T', 10, 's', 10, 's')"
        )
        for seq in (11, 12):
            db.execute(
                "INSERT INTO outbox (seq, action, local_id, payload, created_at) "
                "VALUES (?, 'MeterValues', 4, '{}', 's')",
                (seq,),
            )
        db.commit()
    async with await Store.open(path):
        pass
    assert query(path, "SELECT seq, action, local_id FROM outbox ORDER BY seq") == [
        (11, "MeterValues", 4),
        (12, "MeterValues", 4),
    ]
    assert query(path, "SELECT tx_id, next_seq_no FROM charging_transaction") == [(None, 0)]
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            "INSERT INTO outbox (action, local_id, payload, created_at) "
            "VALUES ('TransactionEvent', 4, '{}', 's')"
        )
        assert db.execute("SELECT max(seq) FROM outbox").fetchone() == (13,)
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "INSERT INTO outbox (action, local_id, payload, created_at) "
                "VALUES ('Nonsense', 4, '{}', 's')"
            )


async def test_a_backup_during_a_write_transaction_waits_for_it_instead_of_freezing_the_store(
    tmp_path: Path,
) -> None:
    """A diagnostics archive asked for while a key is being saved: the backup used to run
    inside the open transaction, get SQLITE_LOCKED for ever in aiosqlite's one thread, and
    leave the COMMIT (and every later store call) queued behind it."""
    target = tmp_path / "copy.db"
    async with await Store.open(tmp_path / "hilsim.db") as store:
        async with asyncio.timeout(10):
            async with store.database.transaction():
                await store.database.connection.execute(
                    "INSERT INTO configuration_key (name, value, origin, updated_at)"
                    " VALUES ('HeartbeatInterval', '42', 'changed', 'now')"
                )
                backup = asyncio.create_task(store.backup_to(target))
                # Given its time to reach the database while the transaction is open, it
                # cannot finish before the transaction does.
                done, _ = await asyncio.wait({backup}, timeout=0.5)
                assert not done
            await backup
            assert await store.load_keys() == {"HeartbeatInterval": "42"}  # the store still works
    copied = query(target, "SELECT name, value FROM configuration_key")
    assert copied == [("HeartbeatInterval", "42")]
