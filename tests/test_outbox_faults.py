"""The outbox survives rows it cannot send and never sends a row that is not committed.

Issue 14, items 6 and 8: rows hold the OCPP payload, old rows are converted by a migration (or
set aside), a message that keeps failing is set aside in outbox_dead, and a reader never sees a
transaction's rows before its commit. After each fault the charge point still charges, and the
CSMS ledger has every transaction once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hilsim.errors import StoreError
from hilsim.store import MIGRATIONS, Store

from conftest import CP_ID, TAG, Bench, make_settings, start_service, stop_service

STAMP = "2026-01-01T00:00:00.000Z"


async def charge_once(bench: Bench, connector: int) -> int:
    """Plug, tag, unplug: the StartTransaction and StopTransaction of one more transaction."""
    tx = await bench.start_local(connector)
    assert (await bench.ctl("unplug", connector))["ok"]
    await bench.session.wait_for(
        "StopTransaction", lambda p: p["transactionId"] == tx, timeout=10
    )
    return tx


def assert_ledger_whole(bench: Bench, count: int) -> None:
    """Every transaction the CSMS saw started once and stopped once."""
    ledger = bench.csms.ledger
    assert len(ledger) == count
    assert ledger.repeated_starts == 0
    assert all(not record.active for record in ledger.values())


def old_database(path: Path, rows: list[tuple[int, str, dict[str, Any]]]) -> None:
    """A database as the previous release left it (schema 5): rows of method arguments."""
    db = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:5], 1):
        db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    for local_id in sorted({local for local, _, _ in rows}):
        db.execute(
            "INSERT INTO charging_transaction (local_id, connector_id, id_tag, meter_start_Wh, "
            "started_at, last_energy_Wh, last_sample_at, stopped) "
            "VALUES (?, 1, ?, 100, ?, 160, ?, 1)",
            (local_id, TAG, STAMP, STAMP),
        )
    for local_id, action, kwargs in rows:
        db.execute(
            "INSERT INTO outbox (action, local_id, payload, created_at) VALUES (?, ?, ?, ?)",
            (action, local_id, json.dumps(kwargs), STAMP),
        )
    db.commit()
    db.close()


def set_aside_rows(path: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(path) as db:
        query = "SELECT action, local_id, reason FROM outbox_dead ORDER BY seq"
        return db.execute(query).fetchall()


async def test_old_rows_are_converted_and_an_unknown_one_set_aside(
    csms, short_dir: Path, bench_factory
) -> None:
    """A row with a parameter this release does not know no longer crashes the outbox loop."""
    settings = make_settings(short_dir, csms.url)
    sample = [{"timestamp": STAMP, "sampledValue": [{"value": "150"}]}]
    old_database(
        settings.storage.database,
        [
            (1, "StartTransaction", {"connector_id": 1, "id_tag": TAG, "meter_start": 100,
                                     "timestamp": STAMP, "reservation_id": None}),
            (1, "MeterValues", {"connector_id": 1, "meter_value": sample}),
            (1, "StopTransaction", {"meter_stop": 160, "timestamp": STAMP, "reason": "Local",
                                    "id_tag": TAG, "transaction_data": sample}),
            # A parameter renamed by an upgrade: the old code raised TypeError on every start.
            (2, "StartTransaction", {"connector_id": 1, "id_tag": TAG, "meter_start_Wh": 160,
                                     "timestamp": STAMP}),
            (2, "StopTransaction", {"meter_stop": 170, "timestamp": STAMP, "reason": "Local"}),
        ],
    )  # fmt: skip
    bench = await bench_factory()
    stop = await bench.session.wait_for("StopTransaction", timeout=10)
    start = next(
        m.payload for m in bench.session.received if m.action == "StartTransaction"
    )
    assert start == {"connectorId": 1, "idTag": TAG, "meterStart": 100, "timestamp": STAMP}
    values = next(m.payload for m in bench.session.received if m.action == "MeterValues")
    assert values["meterValue"] == sample and values["transactionId"] == stop["transactionId"]
    assert stop["meterStop"] == 160 and stop["idTag"] == TAG
    assert stop["transactionData"] == sample
    outbox = bench.service.charger.outbox
    await asyncio.wait_for(outbox.drained(), 10)
    dead = set_aside_rows(settings.storage.database)
    assert [(action, local) for action, local, _ in dead] == [
        ("StartTransaction", 2),
        ("StopTransaction", 2),
    ]
    assert dead[0][2].startswith("upgrade") and "never confirmed" in dead[1][2]
    status = await bench.ctl("status")
    assert status["result"]["outbox"]["set_aside"] == 2
    # The charge point goes on charging, and the CSMS has every transaction once.
    await charge_once(bench, 2)
    assert_ledger_whole(bench, 2)


async def test_a_message_refused_every_time_is_set_aside_and_the_queue_goes_on(
    bench_factory, caplog: pytest.LogCaptureFixture
) -> None:
    bench = await bench_factory()
    await bench.session.change_configuration("TransactionMessageRetryInterval", "0")
    await bench.session.change_configuration("TransactionMessageAttempts", "2")
    first = await charge_once(bench, 1)
    bench.csms.refuse_next["MeterValues"] = 2  # the next transaction's first sample
    await bench.session.change_configuration("MeterValueSampleInterval", "1")
    tx = await bench.start_local(2)
    # Refused twice (the CSMS counts those as received too), then the next sample arrives.
    for _ in range(3):
        await bench.session.wait_for(
            "MeterValues", lambda p: p["transactionId"] == tx, timeout=10
        )
    assert bench.csms.refuse_next["MeterValues"] == 0
    await bench.session.change_configuration("MeterValueSampleInterval", "0")
    assert (await bench.ctl("unplug", 2))["ok"]
    await bench.session.wait_for("StopTransaction", lambda p: p["transactionId"] == tx)
    database = bench.settings.storage.database
    dead = set_aside_rows(database)
    assert [action for action, _, _ in dead] == ["MeterValues"]
    assert "failed 2 time(s)" in dead[0][2]
    assert any(
        r.levelname == "ERROR" and "MeterValues of transaction" in r.getMessage()
        and "set aside" in r.getMessage()
        for r in caplog.records
    )
    assert (await bench.ctl("status"))["result"]["outbox"]["set_aside"] == 1
    assert first != tx
    assert_ledger_whole(bench, 2)


async def test_a_start_set_aside_takes_its_stop_along_but_not_the_next_transaction(
    bench_factory,
) -> None:
    """The stop of a start the CSMS never took is not sent under no id: set aside with it."""
    bench = await bench_factory()
    await bench.session.change_configuration("TransactionMessageRetryInterval", "0")
    await bench.session.change_configuration("TransactionMessageAttempts", "2")
    bench.csms.refuse_next["StartTransaction"] = 2
    assert (await bench.ctl("plug", 1))["ok"]
    await bench.status(1, "Preparing")
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
    await bench.status(1, "Charging", timeout=10)  # offline-style start, under its local id
    assert (await bench.ctl("unplug", 1))["ok"]
    await bench.status(1, "Available", timeout=10)
    tx = await charge_once(bench, 1)
    outbox = bench.service.charger.outbox
    await asyncio.wait_for(outbox.drained(), 10)
    dead = set_aside_rows(bench.settings.storage.database)
    assert [action for action, _, _ in dead] == ["StartTransaction", "StopTransaction"]
    assert tx == 1  # the CSMS gave exactly one id: nothing doubled
    assert_ledger_whole(bench, 1)


async def test_the_outbox_never_reads_a_row_before_its_commit(tmp_path: Path) -> None:
    """A reader on the same connection saw uncommitted rows: a stop rolled back had been sent."""
    store = await Store.open(tmp_path / "hilsim.db")
    try:
        local = await store.begin_transaction(1, TAG, 100, STAMP, '{"connectorId": 1}')
        await store.outbox_done((await store.outbox_head()).seq, transaction_id=1)  # type: ignore[union-attr]
        await store.keep_transaction_data(local, '{"kept": 1}')
        loop = asyncio.get_running_loop()
        inserted = asyncio.Event()
        # A real SQLite failure in the middle of the stop's transaction: its outbox row is in,
        # then the statement after it fails and the whole transaction is rolled back.
        db = store.database.connection

        def signal() -> None:  # runs in aiosqlite's thread, inside the INSERT
            loop.call_soon_threadsafe(inserted.set)

        await db.create_function("inserted", 0, signal)
        await db.execute(
            "CREATE TEMP TRIGGER seen AFTER INSERT ON outbox BEGIN SELECT inserted(); END"
        )
        with sqlite3.connect(tmp_path / "hilsim.db") as other:
            other.execute(
                "CREATE TRIGGER failing AFTER DELETE ON transaction_data "
                "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )
        writer = asyncio.create_task(store.end_transaction(local, 1, 160.0, STAMP, "{}"))
        await inserted.wait()
        head = await store.outbox_head()
        with pytest.raises(StoreError, match="disk I/O error"):
            await writer
        assert head is None, "the outbox saw a row that was never committed"
        assert await store.outbox_size() == 0
    finally:
        await store.close()


async def test_charging_after_an_outbox_fault_keeps_the_ledger_whole(
    csms, short_dir: Path
) -> None:
    """A failing outbox write (a real SQLite error) neither ends the service nor loses a stop."""
    settings = make_settings(short_dir, csms.url)
    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        bench = Bench(settings, service, csms, session, task)
        await bench.status(1, "Available")
        database = settings.storage.database
        with sqlite3.connect(database) as other:
            other.execute(
                "CREATE TRIGGER failing BEFORE DELETE ON outbox "
                "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )
        tx = await bench.start_local(1)  # confirmed, but its row cannot be removed
        with sqlite3.connect(database) as other:
            other.execute("DROP TRIGGER failing")
        assert (await bench.ctl("unplug", 1))["ok"]
        await session.wait_for("StopTransaction", lambda p: p["transactionId"] == tx, timeout=15)
        assert not task.done()
        await charge_once(bench, 2)
        assert_ledger_whole(bench, 2)
    finally:
        await stop_service(service, task)
