"""A background step that fails is logged and turned into a state change, never left hanging.

Issue 14, item 5: the faults are real SQLite failures, caused from a second connection to the
service's database file (a trigger that raises, a table renamed away), as a failing SD card or a
full disk would cause them. After each one the charge point charges again and the CSMS ledger
has every transaction once.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from test_outbox_faults import assert_ledger_whole, charge_once

from hilsim.errors import CsmsError
from hilsim.evse import events
from hilsim.tasks import TaskSet

from conftest import TAG, Bench


def sql(bench: Bench, statement: str) -> None:
    with sqlite3.connect(bench.settings.storage.database) as other:
        other.execute(statement)


async def test_a_failing_authorization_cache_write_does_not_wedge_the_connector(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """Today: the Authorize task died on the cache write; C1 stayed Preparing for good."""
    sql(
        bench,
        "CREATE TRIGGER failing BEFORE INSERT ON authorization_cache "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
    )
    await charge_once(bench, 1)  # the CSMS's Accepted stands; only the cache misses it
    assert any(
        r.levelname == "ERROR" and "authorization cache not updated" in r.getMessage()
        for r in caplog.records
    )
    sql(bench, "DROP TRIGGER failing")
    await charge_once(bench, 1)
    assert_ledger_whole(bench, 2)


async def test_an_authorize_that_fails_leaves_the_connector_usable(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """The task fails outright (its cache read): the tag is refused, logged, C1 usable again."""
    sql(bench, "ALTER TABLE authorization_cache RENAME TO authorization_cache_gone")
    refused = bench.next_event(events.AuthorizeResult, 1)
    assert (await bench.ctl("plug", 1))["ok"]
    await bench.status(1, "Preparing")
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
    outcome = await refused
    assert outcome.state.authorization is None  # not "idTag ... is already waiting"
    failure = [r for r in caplog.records if "background task charger-authorize-C1" in r.message]
    assert failure and failure[0].levelname == "ERROR" and failure[0].exc_info
    assert (await bench.ctl("unplug", 1))["ok"]
    await bench.status(1, "Available")
    sql(bench, "ALTER TABLE authorization_cache_gone RENAME TO authorization_cache")
    await charge_once(bench, 1)
    assert_ledger_whole(bench, 1)


async def test_a_stop_that_cannot_be_written_faults_the_connector_until_it_is(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """Today: the stop was lost until a restart ended it as PowerLoss, the error unseen."""
    sql(
        bench,
        "CREATE TRIGGER failing BEFORE INSERT ON outbox WHEN NEW.action = 'StopTransaction' "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
    )
    tx = await bench.start_local(1)
    assert (await bench.ctl("unplug", 1))["ok"]
    faulted = await bench.status(1, "Faulted", timeout=10)
    assert faulted["errorCode"] == "InternalError"
    assert any(
        r.levelname == "ERROR" and "its stop is not recorded" in r.getMessage()
        for r in caplog.records
    )
    # No new transaction while a stop cannot be written.
    assert (await bench.ctl("plug", 1))["ok"]
    assert not (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
    assert (await bench.ctl("unplug", 1))["ok"]
    sql(bench, "DROP TRIGGER failing")
    stop = await bench.session.wait_for(
        "StopTransaction", lambda p: p["transactionId"] == tx, timeout=15
    )
    assert stop["reason"] == "EVDisconnected"
    await bench.status(1, "Available", timeout=10)
    await charge_once(bench, 1)
    assert_ledger_whole(bench, 2)


async def test_every_failure_is_logged_and_handed_to_the_hook(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[BaseException] = []
    both = asyncio.Event()
    tasks = TaskSet("test")

    def hook(exc: BaseException) -> None:
        seen.append(exc)
        if len(seen) == 2:
            both.set()

    async def broken() -> None:
        raise OSError(28, "No space left on device")

    async def link_gone() -> None:
        raise CsmsError("link to the CSMS lost")

    tasks.spawn(broken(), "write", hook)
    tasks.spawn(link_gone(), "send", hook)
    await asyncio.wait_for(both.wait(), 5)
    assert [type(exc) for exc in seen] == [OSError, CsmsError]
    records = {r.message.split(":")[0]: r for r in caplog.records}
    assert records["background task test-write failed"].levelname == "ERROR"
    assert records["background task test-write failed"].exc_info
    assert records["test-send"].levelname == "WARNING"
    assert len(tasks) == 0
