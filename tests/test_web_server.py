"""The demo page's HTTP and WebSocket endpoints, driven without a browser.

A real service with its real web server on 127.0.0.1 and the built-in CSMS; the page's side is a
real `websockets` client speaking the page's protocol. The browser itself is in test_web_page.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from hilsim.config import Settings, parse_settings
from hilsim.control import request
from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.evse import events
from hilsim.ocpp.wire import Frame
from hilsim.service import Service
from hilsim.web import WebServer
from hilsim.web.auth import Guard
from hilsim.web.frames import HIDDEN, FrameLog, power_samples

from conftest import CP_ID, TAG, make_settings, start_service, stop_service

PASSWORD = "web-secret-7"
WEB = f'listen = "127.0.0.1:0"\npassword = "{PASSWORD}"\n'


# -- a page's side of the protocol ----------------------------------------------------------------


class Page:
    """One open page: what the server pushed, and requests with their answers."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self.backlog: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    async def next(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5
    ) -> dict[str, Any]:
        """The first message (already received or still to come) that matches.

        An update's events and frames also count as messages of their own ("event", "frame"),
        after the update that carried them.
        """
        for n, message in enumerate(self.backlog):
            if predicate(message):
                del self.backlog[n]
                return message
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                self.backlog += [
                    message,
                    *({"type": "event", **e} for e in message.get("events", ())),
                    *({"type": "frame", "entry": f} for f in message.get("frames", ())),
                ]
                for n, candidate in enumerate(self.backlog):
                    if predicate(candidate):
                        del self.backlog[n]
                        return candidate

    async def ask(self, kind: str, **fields: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self.ws.send(json.dumps({"type": kind, "id": ident, **fields}))
        return await self.next(lambda m: m["type"] == "answer" and m["id"] == ident)

    async def status(self, connector: int, status: str) -> dict[str, Any]:
        """The next update in which the connector shows `status`."""
        return await self.next(
            lambda m: (
                m["type"] == "update"
                and any(c["id"] == connector and c["status"] == status for c in m["connectors"])
            )
        )


@dataclass
class WebBench:
    service: Service
    session: ChargePointSession
    csms: CentralSystem
    socket: Path
    pages: list[ClientConnection] = field(default_factory=list)

    @property
    def web(self) -> WebServer:
        assert self.service.web is not None
        return self.service.web

    @property
    def port(self) -> int:
        assert self.web.port is not None
        return self.web.port

    async def open_page(self, **kwargs: Any) -> Page:
        ws = await connect(
            f"ws://127.0.0.1:{self.port}/ws",
            origin=Origin(f"http://127.0.0.1:{self.port}"),
            **kwargs,
        )
        self.pages.append(ws)
        page = Page(ws)
        page.hello = await page.next(lambda m: m["type"] == "hello")
        return page

    async def ctl(self, cmd: str, **fields: Any) -> dict[str, Any]:
        return await request(self.socket, {"cmd": cmd, **fields})

    async def get(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return status, headers, body


def web_settings(directory: Path, csms_url: str, web: str, gpio: str = "") -> Settings:
    """The tests' usual config (conftest's) with a [web] table and extra [gpio] keys."""
    path = Path(make_settings(directory, csms_url).source)
    text = path.read_text().replace(
        '[gpio]\nbackend = "mock"\n', f'[gpio]\nbackend = "mock"\n{gpio}'
    )
    text += f"[web]\n{web}"
    path.write_text(text)
    return parse_settings(text, str(path))


@contextlib.asynccontextmanager
async def web_service(
    csms: CentralSystem,
    directory: Path,
    *,
    web: str = WEB,
    gpio: str = "",
    csms_url: str | None = None,
) -> AsyncIterator[WebBench]:
    service, task = await start_service(web_settings(directory, csms_url or csms.url, web, gpio))
    bench = None
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        for connector in (1, 2):
            await session.wait_for(
                "StatusNotification",
                lambda p, c=connector: p["connectorId"] == c and p["status"] == "Available",
                timeout=5,
            )
        bench = WebBench(service, session, csms, directory / "ctl.sock")
        yield bench
    finally:
        for ws in bench.pages if bench else ():
            await ws.close()
        await stop_service(service, task)
    assert session.violations == []


@pytest.fixture
async def bench(csms: CentralSystem, short_dir: Path) -> AsyncIterator[WebBench]:
    async with web_service(csms, short_dir) as bench:
        yield bench


async def start_charging(bench: WebBench, connector: int = 1) -> None:
    assert (await bench.ctl("plug", connector=connector))["ok"]
    assert (await bench.ctl("tag", connector=connector, id_tag=TAG))["ok"]
    await bench.session.wait_for("StartTransaction", lambda p: p["connectorId"] == connector)
    await bench.session.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == connector and p["status"] == "Charging"
    )


# -- HTTP -----------------------------------------------------------------------------------------


async def test_the_page_and_its_assets_are_served_locally(bench: WebBench) -> None:
    status, headers, body = await bench.get("/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    html = body.decode()
    assert '<script src="/static/app.js"' in html
    assert '<link rel="stylesheet" href="/static/style.css">' in html
    assets = {"/static/app.js": "text/javascript", "/static/style.css": "text/css"}
    for path, kind in assets.items():
        status, headers, asset = await bench.get(path)
        assert status == 200
        assert headers["content-type"].startswith(kind)
        assert headers["x-content-type-options"] == "nosniff"
        # Nothing is fetched from anywhere else: a demo hall often has no internet.
        assert not re.search(rb"https?://", asset), path
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    status, headers, _ = await bench.get("/static/icon.svg")
    assert (status, headers["content-type"]) == (200, "image/svg+xml")


async def test_wrong_paths_and_methods(bench: WebBench) -> None:
    assert (await bench.get("/nothing-here"))[0] == 404
    assert (await bench.get("/static/../config.py"))[0] == 404
    status, headers, _ = await bench.get("/", method="POST")
    assert status == 405
    assert headers["allow"] == "GET"
    assert (await bench.get("/ws"))[0] == 426  # a WebSocket endpoint, not a page


async def test_state_has_identity_connectors_and_no_secrets(
    csms: CentralSystem, short_dir: Path
) -> None:
    url = csms.url.replace("ws://", "ws://bench:hunter2@") + "/ocpp?token=tok-123"
    async with web_service(csms, short_dir, csms_url=url) as bench:
        key = "00112233445566778899aabbccddeeff"
        await bench.session.change_configuration("AuthorizationKey", key)
        status, headers, body = await bench.get("/api/state")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    state = json.loads(body)
    assert state["identity"]["id"] == CP_ID
    assert state["identity"]["vendor"] == "hilsim"
    assert state["identity"]["firmware_version"] == "9.9.9"
    update = state["update"]
    assert [c["id"] for c in update["connectors"]] == [1, 2]
    first = update["connectors"][0]
    assert (first["status"], first["led"]) == (
        "Available",
        {"colour": "green", "pattern": "steady"},
    )
    assert first["max_power_W"] == 11000
    assert update["csms"]["state"] == "connected"
    assert update["csms"]["url"] == f"{csms.url}/ocpp/{CP_ID}?…"
    assert state["controls"] == {
        "buttons": True,
        "id_tags": ["04A2B3C4", "DEADBEEF"],
        "fault_codes": {"1": "OtherError", "2": "OtherError"},
    }
    change = [f for f in state["frames"] if f["name"] == "ChangeConfiguration"]
    assert change and change[0]["frame"][3] == {"key": "AuthorizationKey", "value": HIDDEN}
    text = body.decode()
    for secret in (key, PASSWORD, "hunter2", "tok-123"):
        assert secret not in text


async def test_a_foreign_origin_cannot_open_the_websocket(bench: WebBench) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(f"ws://127.0.0.1:{bench.port}/ws", origin=Origin("http://evil.example"))
    assert info.value.response.status_code == 403
    page = await bench.open_page()  # the page's own origin is fine
    assert page.hello["identity"]["id"] == CP_ID


# -- live updates ---------------------------------------------------------------------------------


async def test_hello_then_live_events_updates_and_frames(bench: WebBench) -> None:
    page = await bench.open_page()
    hello = page.hello
    assert hello["update"]["emergency_stop"] == {"engaged": False, "web": False, "panel": False}
    names = [f["name"] for f in hello["frames"]]
    assert names[:2] == ["BootNotification", "BootNotification.conf"]
    assert hello["frames"][0]["dir"] == "out" and hello["frames"][1]["dir"] == "in"
    assert (await bench.ctl("plug", connector=1))["ok"]
    event = await page.next(lambda m: m["type"] == "event")
    assert (event["connector"], event["event"], event["refused"]) == (1, "PlugIn", None)
    update = await page.status(1, "Preparing")
    assert update["connectors"][0]["led"] == {"colour": "amber", "pattern": "blink"}
    sent = await page.next(
        lambda m: (
            m["type"] == "frame"
            and m["entry"]["name"] == "StatusNotification"
            and m["entry"]["frame"][3]["status"] == "Preparing"
        )
    )
    entry = sent["entry"]
    assert (entry["dir"], entry["connector"], entry["kind"]) == ("out", 1, "CALL")
    assert entry["frame"][3]["status"] == "Preparing"
    answer = await page.next(lambda m: m["type"] == "frame" and m["entry"]["uid"] == entry["uid"])
    assert answer["entry"]["name"] == "StatusNotification.conf"
    assert answer["entry"]["connector"] == 1 and answer["entry"]["dir"] == "in"
    # Power and energy once a second while a page is open, with the chart's next point.
    tick = await page.next(lambda m: m["type"] == "update" and "samples" in m)
    assert set(tick["samples"]) == {"1", "2"}


async def test_log_names_results_and_gives_stop_transaction_its_connector(bench: WebBench) -> None:
    await start_charging(bench, 2)
    page = await bench.open_page()
    tx = bench.service.charger.transaction_id(2) if bench.service.charger else None
    assert tx is not None
    assert (await bench.ctl("unplug", connector=2))["ok"]
    stop = await page.next(
        lambda m: m["type"] == "frame" and m["entry"]["name"] == "StopTransaction"
    )
    assert stop["entry"]["connector"] == 2
    assert stop["entry"]["frame"][3]["transactionId"] == tx
    conf = await page.next(
        lambda m: m["type"] == "frame" and m["entry"]["name"] == "StopTransaction.conf"
    )
    assert conf["entry"]["connector"] == 2
    replayed = [f["name"] for f in page.hello["frames"]]
    assert "StartTransaction.conf" in replayed and "Authorize.conf" in replayed


async def test_a_malformed_frame_is_shown_as_such(bench: WebBench) -> None:
    page = await bench.open_page()
    await bench.session.send_raw("this is not OCPP")
    entry = (await page.next(lambda m: m["type"] == "frame" and m["entry"]["kind"] == "malformed"))[
        "entry"
    ]
    assert (entry["kind"], entry["text"], entry["frame"]) == ("malformed", "this is not OCPP", None)


async def test_nothing_is_done_while_no_page_is_open(bench: WebBench) -> None:
    web = bench.web
    await bench.session.change_configuration("MeterValueSampleInterval", "1")
    await start_charging(bench)
    for _ in range(2):
        await bench.session.wait_for("MeterValues")
    # A whole session went by: no message built, no timer, no frame decoded; the ring has them.
    assert web.messages_built == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "web-ticker"]
    assert not web.frames.watched
    assert len(web.frames.frames) > 10
    page = await bench.open_page()
    assert any(t.get_name() == "web-ticker" for t in asyncio.all_tasks())
    names = [f["name"] for f in page.hello["frames"]]
    assert "StartTransaction.conf" in names and "MeterValues" in names
    # The chart starts with what the MeterValues said while nobody was looking.
    assert any(watts > 0 for _, watts in page.hello["history"]["1"])
    await bench.pages.pop().close()
    await web.wait_idle(5)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "web-ticker"]
    assert not web.frames.watched
    built = web.messages_built
    assert (await bench.ctl("plug", connector=2))["ok"]
    await bench.session.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == 2 and p["status"] == "Preparing"
    )
    assert web.messages_built == built


async def test_five_pages_are_told_the_same_thing_serialised_once(bench: WebBench) -> None:
    pages = [await bench.open_page() for _ in range(5)]
    assert bench.web.clients == 5
    assert (await bench.ctl("plug", connector=1))["ok"]
    events_seen = [await p.next(lambda m: m["type"] == "event") for p in pages]
    assert all(e == events_seen[0] for e in events_seen)
    for page in pages:
        await page.status(1, "Preparing")
    built = bench.web.messages_built
    bench.web.push.broadcast({"type": "probe"})  # one serialisation however many pages
    assert bench.web.messages_built == built + 1
    for page in pages:
        assert (await page.next(lambda m: m["type"] == "probe")) == {"type": "probe"}


async def test_stopping_the_service_closes_open_pages(csms: CentralSystem, short_dir: Path) -> None:
    async with web_service(csms, short_dir) as bench:
        page = await bench.open_page()
        ws = bench.pages.pop()
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    assert page.hello


# -- buttons --------------------------------------------------------------------------------------


async def test_buttons_are_off_without_a_password(csms: CentralSystem, short_dir: Path) -> None:
    async with web_service(csms, short_dir, web='listen = "127.0.0.1:0"\n') as bench:
        page = await bench.open_page()
        assert page.hello["controls"]["buttons"] is False
        unlock = await page.ask("unlock", password="anything")
        assert unlock == {
            "type": "answer",
            "id": 1,
            "ok": False,
            "error": "the buttons are off: no [web] password in the config",
        }
        plug = await page.ask("command", cmd="plug", connector=1)
        assert plug["ok"] is False and "no [web] password" in plug["error"]
        estop = await page.ask("estop", engage=True)
        assert estop["ok"] is False
        assert bench.service.charger is not None
        assert str(bench.service.charger.connectors[1].machine.status) == "Available"


async def test_buttons_refuse_until_unlocked_and_wrong_passwords_are_rate_limited(
    bench: WebBench,
) -> None:
    page = await bench.open_page()
    assert page.hello["controls"]["buttons"] is True
    locked = await page.ask("command", cmd="plug", connector=1)
    assert (locked["ok"], locked["error"]) == (False, "locked: enter the password first")
    for _ in range(5):
        wrong = await page.ask("unlock", password="guess")
        assert (wrong["ok"], wrong["error"]) == (False, "wrong password")
    assert (await page.ask("command", cmd="plug", connector=1))["ok"] is False
    # Six tries a minute from one address: even the right password is not looked at now.
    limited = await page.ask("unlock", password=PASSWORD)
    assert limited["ok"] is False
    assert limited["error"].startswith("too many wrong passwords from 127.0.0.1; try again in")
    assert 1 <= limited["retry_after_s"] <= 60
    # Another address is not punished for it.
    other = await bench.open_page(local_addr=("127.0.0.2", 0))
    assert (await other.ask("unlock", password=PASSWORD))["ok"] is True
    assert bench.service.charger is not None
    assert str(bench.service.charger.connectors[1].machine.status) == "Available"


async def test_unlocked_buttons_inject_the_ctl_events(bench: WebBench) -> None:
    page = await bench.open_page()
    assert (await page.ask("unlock", password=PASSWORD))["ok"]
    plugged = await page.ask("command", cmd="plug", connector=1)
    assert plugged["ok"] and plugged["result"] == {"status": "Preparing"}
    again = await page.ask("command", cmd="plug", connector=1)
    assert again == {
        "type": "answer",
        "id": 3,
        "ok": False,
        "error": "connector 1: already plugged in",
    }
    tag = await page.ask("command", cmd="tag", connector=1, id_tag=" DEADBEEF ")
    assert tag["ok"]
    start = await bench.session.wait_for("StartTransaction", lambda p: p["connectorId"] == 1)
    assert start["idTag"] == "DEADBEEF"
    update = await page.status(1, "Charging")
    charging = update["connectors"][0]
    assert charging["id_tag"] == "DEADBEEF"
    assert charging["transaction_id"] == next(iter(bench.csms.ledger))
    assert charging["led"] == {"colour": "blue", "pattern": "pulse"}
    fault = await page.ask("command", cmd="fault", connector=1)
    assert fault["ok"] and fault["result"] == {"status": "Faulted"}
    await bench.session.wait_for(
        "StatusNotification",
        lambda p: (
            p["connectorId"] == 1 and p["status"] == "Faulted" and p["errorCode"] == "OtherError"
        ),
    )
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["reason"] == "Other"
    faulted = (await page.status(1, "Faulted"))["connectors"][0]
    assert faulted["led"] == {"colour": "red", "pattern": "fast blink"}
    assert (await page.ask("command", cmd="clear", connector=1))["ok"]
    bad_tag = await page.ask("command", cmd="tag", connector=2, id_tag="X" * 21)
    assert bad_tag["ok"] is False and "1 to 20 characters" in bad_tag["error"]
    nowhere = await page.ask("command", cmd="plug", connector=9)
    assert nowhere["error"] == "no connector 9 (have 1, 2)"


@pytest.mark.parametrize(
    "request_",
    [
        {"cmd": "config-set", "key": "AuthorizationKey", "value": "x"},
        {"cmd": "config-get"},
        {"cmd": "debug-block-loop", "seconds": 1},
        {"cmd": "press", "pin": 17},
        {"cmd": "status"},
    ],
)
async def test_only_button_commands_are_reachable(
    bench: WebBench, request_: dict[str, Any]
) -> None:
    page = await bench.open_page()
    assert (await page.ask("unlock", password=PASSWORD))["ok"]
    answer = await page.ask("command", connector=1, **request_)
    assert answer["ok"] is False
    assert answer["error"].startswith(f"no button {request_['cmd']!r}")


async def test_page_requests_that_make_no_sense(bench: WebBench) -> None:
    page = await bench.open_page()
    await page.ws.send("not json")
    assert (await page.next(lambda m: m["type"] == "answer"))["error"] == "not JSON"
    await page.ws.send("[1, 2]")
    assert (await page.next(lambda m: m["type"] == "answer"))["error"] == "expected a JSON object"
    assert (await page.ask("reboot"))["error"] == "unknown request type 'reboot'"
    assert (await page.ask("unlock", password=PASSWORD))["ok"]
    assert (await page.ask("command", cmd="plug", connector="1"))["error"] == (
        "plug: expected a connector number"
    )
    assert (await page.ask("lock"))["ok"]
    assert (await page.ask("command", cmd="plug", connector=1))["error"] == (
        "locked: enter the password first"
    )


@pytest.mark.parametrize("engage", ["no", "false", 0, 1, None, [], {"engage": True}])
async def test_emergency_stop_wants_a_json_boolean(bench: WebBench, engage: Any) -> None:
    """'no' is truthy: a guess would engage the stop on a request that meant to release it."""
    page = await bench.open_page()
    assert (await page.ask("unlock", password=PASSWORD))["ok"]
    refused = await page.ask("estop", engage=engage)
    assert refused["ok"] is False
    assert refused["error"] == (
        f"estop: engage must be true or false (a JSON boolean), not {json.dumps(engage)}"
    )
    assert (await page.ask("command", cmd="plug", connector=1))["ok"]  # not engaged: it charges
    assert bench.service.charger is not None
    assert not any(rt.machine.state.error_code for rt in bench.service.charger.connectors.values())
    assert (await page.ask("command", cmd="tag", connector=1, id_tag=TAG))["ok"]
    start = await bench.session.wait_for("StartTransaction", lambda p: p["connectorId"] == 1)
    assert (await page.ask("command", cmd="unplug", connector=1))["ok"]
    stop = await bench.session.wait_for("StopTransaction")
    record = bench.csms.ledger[stop["transactionId"]]
    assert (record.id_tag, record.start_timestamp) == (TAG, start["timestamp"])
    assert len(bench.csms.ledger) == 1 and not record.active


async def test_emergency_stop_from_the_page(bench: WebBench) -> None:
    await start_charging(bench, 1)
    assert (await bench.ctl("fault", connector=2, error_code="GroundFailure"))["ok"]
    page = await bench.open_page()
    assert (await page.ask("unlock", password=PASSWORD))["ok"]
    engaged = await page.ask("estop", engage=True)
    assert engaged["ok"] and engaged["result"] == {"emergency_stop": "engaged", "changed": True}
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["reason"] == "EmergencyStop"
    update = await page.next(
        lambda m: m["type"] == "update" and m["emergency_stop"]["engaged"] is True
    )
    assert update["emergency_stop"] == {"engaged": True, "web": True, "panel": False}
    assert [c["status"] for c in update["connectors"]] == ["Faulted", "Faulted"]
    held = await page.ask("command", cmd="clear", connector=1)
    assert held["error"] == "connector 1: the emergency stop is engaged"
    released = await page.ask("estop", engage=False)
    assert released["ok"] and released["result"]["changed"] is True
    await bench.session.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] != "Faulted"
    )
    assert bench.service.charger is not None
    connectors = bench.service.charger.connectors
    assert connectors[1].machine.state.error_code is None
    # Connector 2 was faulted by its own fault before the stop: it stays faulted.
    assert str(connectors[2].machine.state.error_code) == "GroundFailure"


async def test_the_panels_emergency_stop_is_not_undone_from_the_page(
    csms: CentralSystem, short_dir: Path
) -> None:
    async with web_service(csms, short_dir, gpio="emergency_stop = 21\n") as bench:
        page = await bench.open_page()
        assert (await page.ask("unlock", password=PASSWORD))["ok"]
        assert (await bench.ctl("press", pin=21))["ok"]  # the mushroom on the panel
        assert (await bench.ctl("release", pin=21))["ok"]
        update = await page.next(
            lambda m: m["type"] == "update" and m["emergency_stop"]["panel"] is True
        )
        assert update["emergency_stop"]["engaged"] is True
        assert [c["status"] for c in update["connectors"]] == ["Faulted", "Faulted"]
        refused = await page.ask("estop", engage=False)
        assert (
            refused["error"] == "the emergency stop on the panel is engaged: release it there first"
        )
        clear = await page.ask("command", cmd="clear", connector=2)
        assert clear["error"] == "connector 2: the emergency stop is engaged"
        assert (await bench.ctl("press", pin=21))["ok"]  # pressed again: released
        await page.next(
            lambda m: (
                m["type"] == "update"
                and m["emergency_stop"]["engaged"] is False
                and all(c["status"] == "Available" for c in m["connectors"])
            )
        )


# -- the parts on their own -----------------------------------------------------------------------


def test_guard_compares_and_rate_limits_per_address() -> None:
    now = [1000.0]
    guard = Guard("pw", failures_allowed=3, window_s=60, clock=lambda: now[0])
    assert guard.check("10.0.0.1", "pw").ok
    for _ in range(3):
        assert guard.check("10.0.0.1", "nope").error == "wrong password"
    locked = guard.check("10.0.0.1", "pw")
    assert not locked.ok and locked.retry_after_s == 60
    assert guard.check("10.0.0.2", "pw").ok
    now[0] += 59.0
    assert not guard.check("10.0.0.1", "pw").ok
    now[0] += 1.0
    assert guard.check("10.0.0.1", "pw").ok  # the window passed
    assert guard.check("10.0.0.1", None).error == "wrong password"  # not a string: just wrong
    assert guard.check("10.0.0.1", "pw").ok  # and a success forgets the failures
    assert not Guard(None).enabled
    assert Guard(None).check("10.0.0.1", "").error == (
        "the buttons are off: no [web] password in the config"
    )


def _frame(sent: bool, message: list[Any], at: float = 1.0) -> Frame:
    return Frame(sent=sent, text=json.dumps(message), at=at)


def test_frame_log_is_a_ring_decoded_only_while_watched() -> None:
    log = FrameLog(lambda tx: None, size=3)
    for n in range(5):
        log.record(_frame(True, [2, f"u{n}", "Heartbeat", {}]))
    assert [seq for seq, _ in log.frames] == [3, 4, 5]
    assert log.take() == []  # nobody watches: nothing was decoded
    entries = log.watch()
    assert [e["seq"] for e in entries] == [3, 4, 5]
    log.record(_frame(False, [3, "u4", {"currentTime": "2025-01-01T00:00:00Z"}]))
    assert [e["seq"] for e in log.watch()] == [3, 4, 5]  # not yet taken
    (live,) = log.take()
    assert live["name"] == "Heartbeat.conf"
    assert [e["seq"] for e in log.watch()] == [4, 5, 6]
    assert log.take() == []
    log.unwatch()
    log.record(_frame(True, [2, "u9", "Heartbeat", {}]))
    assert not log.watched and log.take() == []
    assert [e["seq"] for e in log.decoded()] == [5, 6, 7]  # a one-off: still not watched
    assert not log.watched


def test_frame_log_attributes_connectors_and_hides_secrets() -> None:
    log = FrameLog(lambda tx: 7 if tx == 99 else None)
    log.watch()

    def record(frame: Frame) -> dict[str, Any]:
        log.record(frame)
        (entry,) = log.take()
        return entry

    start = {"connectorId": 2, "idTag": "T", "meterStart": 0, "timestamp": "x"}
    record(_frame(True, [2, "s", "StartTransaction", start]))
    conf = record(_frame(False, [3, "s", {"transactionId": 41, "idTagInfo": {}}]))
    assert conf is not None and (conf["name"], conf["connector"]) == ("StartTransaction.conf", 2)
    stop = record(_frame(True, [2, "t", "StopTransaction", {"transactionId": 41}]))
    assert stop is not None and stop["connector"] == 2
    remote = record(_frame(False, [2, "r", "RemoteStopTransaction", {"transactionId": 99}]))
    assert remote is not None and remote["connector"] == 7  # learnt before the page opened
    change = record(
        _frame(False, [2, "c", "ChangeConfiguration", {"key": "authorizationKEY", "value": "s3"}])
    )
    assert change is not None and change["frame"][3] == {"key": "authorizationKEY", "value": HIDDEN}
    record(_frame(True, [2, "g", "GetConfiguration", {}]))
    keys = {
        "configurationKey": [
            {"key": "AuthorizationKey", "readonly": False, "value": "s3"},
            {"key": "HeartbeatInterval", "readonly": False, "value": "60"},
        ]
    }
    got = record(_frame(False, [3, "g", keys]))
    assert got is not None and "s3" not in json.dumps(got)
    assert got["frame"][2]["configurationKey"][1]["value"] == "60"
    error = record(_frame(False, [4, "s2", "NotImplemented", "no", {}]))
    assert error is not None and (error["kind"], error["name"]) == ("CALLERROR", "?.error")
    long = record(_frame(True, [2, "d", "DataTransfer", {"vendorId": "v", "data": "x" * 20000}]))
    assert long is not None and long["frame"] is None and long["text"].endswith("…")


def test_frame_log_attributes_2_0_1_frames_to_their_evse() -> None:
    """An EVSE is the connector of the same id (its connectorId is always 1); a transaction is
    named by the UUID its first event gave with its EVSE."""
    log = FrameLog(lambda tx: None)
    log.watch()

    def record(frame: Frame) -> dict[str, Any]:
        log.record(frame)
        (entry,) = log.take()
        return entry

    status = {"timestamp": "x", "connectorStatus": "Occupied", "evseId": 2, "connectorId": 1}
    assert record(_frame(True, [2, "a", "StatusNotification", status]))["connector"] == 2
    tx = "6f1c1e4e-0c55-4a39-9d3c-0a7c6bd1e8a5"
    started = {"eventType": "Started", "evse": {"id": 2, "connectorId": 1},
               "transactionInfo": {"transactionId": tx}}  # fmt: skip
    assert record(_frame(True, [2, "b", "TransactionEvent", started]))["connector"] == 2
    assert record(_frame(False, [3, "b", {}]))["connector"] == 2
    updated = {"eventType": "Updated", "transactionInfo": {"transactionId": tx}}
    assert record(_frame(True, [2, "c", "TransactionEvent", updated]))["connector"] == 2
    stop = record(_frame(False, [2, "d", "RequestStopTransaction", {"transactionId": tx}]))
    assert stop["connector"] == 2
    unknown = {"transactionId": "not-one-of-ours"}
    assert record(_frame(False, [2, "e", "GetTransactionStatus", unknown]))["connector"] is None
    trigger = {"requestedMessage": "MeterValues", "evse": {"id": 1}}
    assert record(_frame(False, [2, "f", "TriggerMessage", trigger]))["connector"] == 1


def test_power_history_from_2_0_1_transaction_events() -> None:
    log = FrameLog(lambda tx: None)
    log.watch()
    sampled = [
        {"value": 1000.0, "measurand": "Energy.Active.Import.Register",
         "unitOfMeasure": {"unit": "Wh"}},
        {"value": 7.4, "measurand": "Power.Active.Import",
         "unitOfMeasure": {"unit": "kW"}},
    ]  # fmt: skip
    event = {
        "eventType": "Updated",
        "evse": {"id": 2, "connectorId": 1},
        "transactionInfo": {"transactionId": "t"},
        "meterValue": [{"timestamp": "2025-01-01T00:00:00Z", "sampledValue": sampled}],
    }
    log.record(_frame(True, [2, "m", "TransactionEvent", event], at=5.0))
    scaled = [{"value": 3.7, "measurand": "Power.Active.Import",
               "unitOfMeasure": {"unit": "W", "multiplier": 3}}]  # fmt: skip
    meter = {"evseId": 1, "meterValue": [{"timestamp": "2025-01-01T00:00:01Z",
                                          "sampledValue": scaled}]}  # fmt: skip
    log.record(_frame(True, [2, "n", "MeterValues", meter], at=6.0))
    assert power_samples(log.take()) == [(2, 1735689600.0, 7400.0), (1, 1735689601.0, 3700.0)]


def test_power_history_from_meter_values() -> None:
    log = FrameLog(lambda tx: None)
    log.watch()
    sampled = [
        {"value": "1000.0", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "3.5", "measurand": "Power.Active.Import", "unit": "kW", "phase": "L1"},
        {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
    ]
    meter = {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2025-01-01T00:00:00Z", "sampledValue": sampled}],
    }
    log.record(_frame(True, [2, "m", "MeterValues", meter], at=5.0))
    log.record(_frame(False, [3, "m", {}]))
    assert power_samples(log.take()) == [(1, 1735689600.0, 7400.0)]


async def test_events_from_the_page_are_those_of_ctl(bench: WebBench) -> None:
    charger = bench.service.charger
    assert charger is not None
    seen: list[tuple[int, Any]] = []
    charger.event_listeners.append(lambda cid, event, outcome: seen.append((cid, event)))
    page = await bench.open_page()
    assert (await page.ask("unlock", password=PASSWORD))["ok"]
    for cmd in ("plug", "unplug", "fault", "clear"):
        assert (await page.ask("command", cmd=cmd, connector=2))["ok"]
        assert (await bench.ctl(cmd, connector=1))["ok"]
    assert (await page.ask("command", cmd="tag", connector=2, id_tag="AB"))["ok"] is True
    assert (await bench.ctl("tag", connector=1, id_tag="AB"))["ok"]
    from_page = [e for cid, e in seen if cid == 2 and not isinstance(e, events.Tick)]
    from_ctl = [e for cid, e in seen if cid == 1 and not isinstance(e, events.Tick)]
    assert from_page[:5] == from_ctl[:5]
    assert [type(e).__name__ for e in from_page[:5]] == [
        "PlugIn",
        "Unplug",
        "Fault",
        "ClearFault",
        "PresentTag",
    ]


async def test_hilsim_demo_turns_the_page_on_read_only_and_prints_its_url() -> None:
    from hilsim.demo import play

    lines: list[str] = []
    announced: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def out(line: str) -> None:
        lines.append(line)
        match = re.search(r"demo page \(live, read-only\): (http://127\.0\.0\.1:(\d+)/)", line)
        if match and not announced.done():
            announced.set_result(match.group(2))

    demo = asyncio.create_task(play(trace=False, out=out))
    port = await asyncio.wait_for(announced, 10)
    async with connect(
        f"ws://127.0.0.1:{port}/ws", origin=Origin(f"http://127.0.0.1:{port}")
    ) as ws:
        page = Page(ws)
        hello = await page.next(lambda m: m["type"] == "hello")
        assert hello["identity"]["id"] == "HILSIM-DEMO"
        assert hello["controls"]["buttons"] is False  # the demo presses the buttons itself
        # The demo's session shows on the page as it happens.
        charging = await page.next(
            lambda m: (
                m["type"] == "update"
                and m["connectors"][0]["status"] == "Charging"
                and m["connectors"][0]["transaction_id"] is not None
            ),
            timeout=15,
        )
        assert charging["connectors"][0]["id_tag"] == "04A2B3C4"
        assert (await page.ask("command", cmd="plug", connector=2))["ok"] is False
    assert await asyncio.wait_for(demo, 60) == 0, "\n".join(lines)


async def test_one_info_line_per_request_none_for_the_page_and_its_files(
    bench: WebBench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    def info_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]

    for path in ("/", "/static/app.js", "/static/style.css", "/static/icon.svg"):
        caplog.clear()
        assert (await bench.get(path))[0] == 200
        assert info_lines() == [], path
    for path, status in (("/api/state", 200), ("/nothing-here", 404)):
        caplog.clear()
        assert (await bench.get(path))[0] == status
        (line,) = info_lines()
        assert line == f"web: GET {path} -> {status} from 127.0.0.1"
