"""`hilsim csms send` and `hilsim csms list` against a running `hilsim csms` subprocess.

The CSMS is the real command (its control socket, its trace); the charge point is the real
service connected to it; every command is a real `hilsim` subprocess whose stdout and exit status
are what a tester at the bench sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.typing import Subprotocol

from hilsim.csms.console import CSMS_ACTIONS, BadCall, parse_payload
from hilsim.service import Service
from tests.conftest import CP_ID, TAG, make_settings, start_service, stop_service


@dataclass
class Done:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def hilsim(*argv: str, timeout: float = 60) -> Done:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hilsim", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


@dataclass
class Console:
    socket: Path
    url: str
    trace: list[str]
    log: list[str]
    service: Service
    more: asyncio.Condition

    async def printed(self, text: str, times: int) -> list[str]:
        """The trace lines with ``text`` once there are ``times`` of them (10 s at most)."""

        def found() -> list[str]:
            return [line for line in self.trace if text in line]

        async with self.more:
            await asyncio.wait_for(self.more.wait_for(lambda: len(found()) >= times), 10)
        return found()

    async def send(self, *words: str) -> Done:
        return await hilsim("csms", "send", "--socket", str(self.socket), CP_ID, *words)


async def _until_line(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> str:
    while line := (await stream.readline()).decode():
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"`hilsim csms` ended before printing {pattern!r}: {''.join(seen)}")


@pytest.fixture
async def console(short_dir: Path) -> AsyncIterator[Console]:
    socket = short_dir / "csms.sock"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hilsim", "csms", "--port", "0", "--socket", str(socket),
        "--config", str(short_dir / "absent.toml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    trace: list[str] = []
    try:
        listening = await asyncio.wait_for(_until_line(process.stdout, r"listening on", trace), 30)
        url = re.search(r"(ws://[\d.]+:\d+)", listening)
        assert url is not None
        await asyncio.wait_for(_until_line(process.stdout, r"console on", trace), 10)
        (short_dir / "cp").mkdir()
        service, task = await start_service(make_settings(short_dir / "cp", url.group(1)))
        await asyncio.wait_for(
            _until_line(process.stdout, r"StatusNotification\s.*\"connectorId\":2", trace), 30
        )
        more = asyncio.Condition()
        log: list[str] = []
        assert process.stderr is not None
        readers = [
            asyncio.create_task(_drain(process.stdout, trace, more)),
            asyncio.create_task(_drain(process.stderr, log, more)),
        ]
        try:
            yield Console(socket, url.group(1), trace, log, service, more)
        finally:
            await stop_service(service, task)
            for reader in readers:
                reader.cancel()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def _drain(stream: asyncio.StreamReader, seen: list[str], more: asyncio.Condition) -> None:
    while line := await stream.readline():
        async with more:
            seen.append(line.decode())
            more.notify_all()


async def test_a_session_driven_from_the_command_line(console: Console) -> None:
    listed = await hilsim("csms", "list", "--socket", str(console.socket))
    assert listed.status == 0, listed.err
    (charge_point,) = listed.json()
    assert charge_point["id"] == CP_ID
    assert charge_point["connectors"]["1"] == {"status": "Available", "errorCode": "NoError"}
    assert charge_point["transactions"] == []

    started = await console.send("RemoteStartTransaction", f"idTag={TAG}", "connectorId=1")
    assert (started.status, started.json()) == (0, {"status": "Accepted"}), started.err
    plugged = await hilsim(
        "ctl", "plug", "1", "--config", str(console.socket.parent / "cp" / "hilsim.toml")
    )
    assert plugged.status == 0, plugged.err

    async def charging() -> dict[str, Any]:
        # Asked again after each frame `hilsim csms` prints: it answers every CALL after taking
        # it in, so once the last one is in, one more line (its answer) wakes this up.
        while True:
            seen = len(console.trace)
            listed = (await hilsim("csms", "list", "--socket", str(console.socket))).json()[0]
            if listed["connectors"]["1"]["status"] == "Charging" and listed["transactions"]:
                return dict(listed)
            await console.printed("", seen + 1)

    listed_charging = await asyncio.wait_for(charging(), 30)
    (transaction,) = listed_charging["transactions"]
    assert transaction["connectorId"] == 1 and transaction["idTag"] == TAG

    limited = await console.send(
        "SetChargingProfile",
        "connectorId=1",
        "csChargingProfiles.chargingProfileId=7",
        "csChargingProfiles.stackLevel=0",
        "csChargingProfiles.chargingProfilePurpose=TxDefaultProfile",
        "csChargingProfiles.chargingProfileKind=Relative",
        'csChargingProfiles.chargingSchedule={"chargingRateUnit": "W", '
        '"chargingSchedulePeriod": [{"startPeriod": 0, "limit": 3680}]}',
    )
    assert (limited.status, limited.json()) == (0, {"status": "Accepted"}), limited.err
    charger = console.service.charger
    assert charger is not None and charger.connectors[1].limit_W == 3680

    stopped = await console.send(
        "RemoteStopTransaction", json.dumps({"transactionId": transaction["transactionId"]})
    )
    assert (stopped.status, stopped.json()) == (0, {"status": "Accepted"}), stopped.err
    # Every frame printed once by `hilsim csms` (the trace), not a second time by the log.
    assert len(await console.printed("RemoteStopTransaction", 2)) == 2  # CALL and CALLRESULT
    assert not any("RemoteStopTransaction" in line for line in console.log)
    # nor what the trace says about listening and (dis)connections; the log keeps the rest
    # (the ledger's transaction lines, warnings)
    for said in ("listening on", "connected from", "connection open", "connection closed"):
        assert not any(said in line for line in console.log), said


async def test_exit_status_says_what_came_back(console: Console) -> None:
    refused = await console.send("UnlockConnector", "connectorId=9")  # no connector 9
    assert (refused.status, refused.json()) == (0, {"status": "NotSupported"})
    unknown_key = await console.send("GetConfiguration", 'key=["NoSuchKey"]')
    assert unknown_key.status == 0
    assert unknown_key.json()["unknownKey"] == ["NoSuchKey"]

    missing = await console.send("Reset")
    assert (missing.status, missing.out) == (2, "")
    assert "Reset.req: payload: 'type' is a required property" in missing.err
    wrong = await console.send("Reset", "type=Warm")
    assert wrong.status == 2 and "type: 'Warm' is not one of: Hard, Soft" in wrong.err
    typo = await console.send("RemoteStartTransaction", "idTag=04A2B3C4", "connectorID=1")
    assert typo.status == 2 and "'connectorID' was unexpected" in typo.err
    not_an_action = await console.send("BootNotification")
    assert not_an_action.status == 2 and "RemoteStartTransaction" in not_an_action.err
    other_version = await console.send(  # valid for 2.0.1, so the CSMS is asked
        "GetBaseReport", "requestId=1", "reportBase=FullInventory"
    )
    assert other_version.status == 2
    assert "not a CSMS-to-charge-point OCPP 1.6 action (CP-TEST speaks OCPP 1.6)" in (
        other_version.err
    )

    nobody = await hilsim(
        "csms", "send", "--socket", str(console.socket), "CP-NOBODY", "ClearCache"
    )
    assert nobody.status == 1 and "'CP-NOBODY' is not connected" in nobody.err
    too_late = await console.send("ClearCache", "--timeout", "0")
    assert too_late.status == 1 and "within 0 s" in too_late.err


async def test_a_callerror_prints_it_as_json_and_exits_1(console: Console) -> None:
    # The `ocpp` library's own ChargePoint, with no handlers: it answers every CALL with a
    # CALLERROR (NotImplemented), as a charge point lacking a feature does.
    from ocpp.v16 import ChargePoint
    from websockets.asyncio.client import connect

    async with connect(f"{console.url}/CP-LIB", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        library_cp = ChargePoint("CP-LIB", ws)
        task = asyncio.create_task(library_cp.start())
        try:
            answer = await hilsim(
                "csms", "send", "--socket", str(console.socket), "CP-LIB", "ClearCache"
            )
        finally:
            task.cancel()
    assert answer.status == 1
    error = answer.json()
    assert error["errorCode"] == "NotImplemented"
    assert "CP-LIB answered ClearCache with CALLERROR NotImplemented" in answer.err


async def test_no_running_csms_is_one_line_and_exit_1(short_dir: Path) -> None:
    done = await hilsim("csms", "list", "--socket", str(short_dir / "none.sock"))
    assert done.status == 1
    assert done.err.strip() == (
        f"hilsim: hilsim csms is not running (no service listening on {short_dir}/none.sock)"
    )


def test_key_value_words_become_the_payload() -> None:
    payload = parse_payload(
        "SetChargingProfile",
        [
            '{"connectorId": 2}',
            "connectorId=1",
            "csChargingProfiles.stackLevel=0",
            "csChargingProfiles.chargingSchedule.chargingRateUnit=A",
        ],
    )
    assert payload == {
        "connectorId": 1,
        "csChargingProfiles": {"stackLevel": 0, "chargingSchedule": {"chargingRateUnit": "A"}},
    }
    # a string field stays the text typed, even when it looks like a number
    assert parse_payload("RemoteStartTransaction", ["idTag=1234"]) == {"idTag": "1234"}
    assert parse_payload("ChangeConfiguration", ["key=X", "value=true"]) == {
        "key": "X",
        "value": "true",
    }
    with pytest.raises(BadCall, match="expected a JSON object or KEY=VALUE"):
        parse_payload("Reset", ["Soft"])


async def test_send_help_lists_every_action() -> None:
    done = await hilsim("csms", "send", "--help")
    assert done.status == 0
    for action in CSMS_ACTIONS:
        assert action in done.out
    assert len(CSMS_ACTIONS) == 19


def readme_commands(section: str, prefix: str) -> list[list[str]]:
    """The shell lines starting with ``prefix`` in a README section's first ```sh block."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[: len(prefix.split())] == prefix.split():
            commands.append(words)
    return commands


async def test_the_readme_examples_run_as_shown(console: Console) -> None:
    commands = readme_commands("CSMS console", "hilsim csms")
    assert len(commands) >= 6
    for words in commands:
        argv = [CP_ID if word == "CP1" else word for word in words[1:]]
        argv[2:2] = ["--socket", str(console.socket)]
        done = await hilsim(*argv)
        assert done.status == 0, (words, done.err)
        json.loads(done.out)


def test_the_readme_examples_for_2_0_1_are_valid_2_0_1_calls() -> None:
    """The second ```sh block of "CSMS console": what `send` makes of each line passes the
    official 2.0.1 schema (tests above send such calls to a 2.0.1 charge point for real)."""
    from hilsim.csms.console import checked

    text = (Path(__file__).parent.parent / "README.md").read_text()
    body = text.split("## CSMS console\n", 1)[1].split("```sh\n", 3)[2].split("```", 1)[0]
    lines = [shlex.split(line, comments=True) for line in body.replace("\\\n", " ").splitlines()]
    assert len(lines) >= 5
    for words in lines:
        assert words[:4] == ["hilsim", "csms", "send", "CP201"], words
        payload = parse_payload(words[4], words[5:], "2.0.1")
        checked(words[4], payload, "2.0.1", "CP201")


async def test_a_stopped_csms_starts_again_at_the_same_address() -> None:
    from hilsim.csms import CentralSystem

    central = CentralSystem("127.0.0.1", 0)
    await central.start()
    url = central.url
    await central.stop()
    await central.start()  # scenario files' `link = "up"`: the charge point's URL still works
    try:
        assert central.url == url
    finally:
        await central.stop()


@pytest.fixture
async def console201(short_dir: Path) -> AsyncIterator[tuple[Path, Any, Console]]:
    """A running `hilsim csms` with the `ocpp` library's 2.0.1 charge point "CP201" connected."""
    from ocpp.v201 import call
    from websockets.asyncio.client import connect

    from tests.test_csms201 import STATION, Station

    socket = short_dir / "csms.sock"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hilsim", "csms", "--port", "0", "--socket", str(socket),
        "--config", str(short_dir / "absent.toml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    trace: list[str] = []
    try:
        listening = await asyncio.wait_for(_until_line(process.stdout, r"listening on", trace), 30)
        assert "(OCPP 1.6J and 2.0.1)" in listening
        url = re.search(r"(ws://[\d.]+:\d+)", listening)
        assert url is not None
        await asyncio.wait_for(_until_line(process.stdout, r"console on", trace), 10)
        more = asyncio.Condition()
        drain = asyncio.create_task(_drain(process.stdout, trace, more))
        offered = [Subprotocol("ocpp2.0.1")]
        async with connect(f"{url.group(1)}/CP201", subprotocols=offered) as ws:
            station = Station("CP201", ws)
            reader = asyncio.create_task(station.start())
            try:
                await station.call(
                    call.BootNotification(charging_station=STATION, reason="PowerUp"),
                    suppress=False,
                )
                watch = Console(socket, url.group(1), trace, [], None, more)  # type: ignore[arg-type]
                yield socket, station, watch
            finally:
                reader.cancel()
                drain.cancel()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def test_a_2_0_1_charge_point_driven_from_the_command_line(
    console201: tuple[Path, Any, Console],
) -> None:
    from ocpp.v201 import call

    from hilsim.csms.commands import utc_now

    socket, station, watch = console201

    async def send(*words: str) -> Done:
        return await hilsim("csms", "send", "--socket", str(socket), "CP201", *words)

    await station.call(
        call.StatusNotification(
            timestamp=utc_now(), connector_status="Occupied", evse_id=1, connector_id=1
        ),
        suppress=False,
    )
    await station.call(
        call.TransactionEvent(
            event_type="Started", timestamp=utc_now(), trigger_reason="Authorized", seq_no=0,
            transaction_info={"transactionId": "tx-1", "chargingState": "Charging"},
            id_token={"idToken": TAG, "type": "ISO14443"}, evse={"id": 1, "connectorId": 1},
        ),
        suppress=False,
    )  # fmt: skip
    listed = await hilsim("csms", "list", "--socket", str(socket))
    assert listed.status == 0, listed.err
    (charge_point,) = listed.json()
    assert charge_point["ocppVersion"] == "2.0.1"
    assert charge_point["evses"] == {"1": {"1": "Occupied"}}
    assert charge_point["transactions"] == [
        {
            "transactionId": "tx-1", "evseId": 1, "connectorId": 1, "idToken": TAG,
            "startTimestamp": charge_point["transactions"][0]["startTimestamp"],
            "chargingState": "Charging", "seqNo": 0, "seqNoMissing": [],
        }
    ]  # fmt: skip

    got = await send(
        "GetVariables",
        'getVariableData=[{"component": {"name": "OCPPCommCtrlr"}, '
        '"variable": {"name": "HeartbeatInterval"}}]',
    )
    assert got.status == 0, got.err
    (result,) = got.json()["getVariableResult"]
    assert (result["attributeStatus"], result["attributeValue"]) == ("Accepted", "60")
    started = await send(
        "requeststarttransaction", "remoteStartId=3", "evseId=1",
        f"idToken.idToken={TAG}", "idToken.type=ISO14443",
    )  # fmt: skip
    assert (started.status, started.json()) == (0, {"status": "Accepted"}), started.err

    wrong = await send("Reset", "type=Soft")  # a 1.6 value, checked by the 2.0.1 schema
    assert (wrong.status, wrong.out) == (2, "")
    assert "ResetRequest: type: 'Soft' is not one of: Immediate, OnIdle" in wrong.err
    missing = await send("GetVariables")
    assert missing.status == 2
    assert "GetVariablesRequest: payload: 'getVariableData' is a required property" in missing.err
    old = await send("RemoteStartTransaction", f"idTag={TAG}")
    assert old.status == 2
    assert "not a CSMS-to-charge-point OCPP 2.0.1 action (CP201 speaks OCPP 2.0.1)" in old.err

    refused = await send("Reset", "type=OnIdle")  # the library station has no Reset handler
    assert refused.status == 1
    assert refused.json()["errorCode"] in ("NotImplemented", "NotSupported")
    assert "CP201 answered Reset with CALLERROR" in refused.err
    # the trace names the version and 2.0.1 results as 2.0.1 does
    (connected,) = await watch.printed("CP201 connected from", 1)
    assert connected.rstrip().endswith("(OCPP 2.0.1)")
    await watch.printed("GetVariablesResponse", 1)
