"""The demo page in a real browser: Debian's chromium, headless, driven by Playwright.

Against a real `hilsim run` (its own process, with `[web]` in its config) and the built-in CSMS:
the page loads, its buttons refuse until the password is given, a virtual plug and tag start a
transaction that the card and the message log show within a second, the colours follow the
status, a fault shows as Faulted, the emergency stop holds everything. A screenshot taken
mid-session is saved under test-artifacts/. Nothing here sleeps: every wait is on a condition
of the page or a message at the CSMS, with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from hilsim.csms import CentralSystem, ChargePointSession

from conftest import CP_ID, make_settings

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "demo-hall-42"
# This machine's network is closed: nothing in chromium may try to reach out.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The LED language's colours as the page's stylesheet paints them.
GREEN, AMBER, BLUE, RED = (
    "rgb(31, 157, 85)",
    "rgb(242, 165, 22)",
    "rgb(47, 111, 219)",
    "rgb(215, 38, 61)",
)
_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
)


# -- a real `hilsim run` --------------------------------------------------------------------------


@dataclass
class Running:
    process: asyncio.subprocess.Process
    url: str
    lines: list[str] = field(default_factory=list)


def _config(directory: Path, csms_url: str, web: str) -> Path:
    path = Path(make_settings(directory, csms_url).source)
    path.write_text(path.read_text() + f"[web]\n{web}")
    return path


@contextlib.asynccontextmanager
async def hilsim_run(directory: Path, csms: CentralSystem, web: str) -> AsyncIterator[Running]:
    config = _config(directory, csms.url, web)
    script = Path(sys.executable).with_name("hilsim")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "hilsim"]
    process = await asyncio.create_subprocess_exec(
        *command,
        "run",
        "--config",
        str(config),
        cwd=directory,
        env={k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARIABLES},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[str] = []
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def read() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            lines.append(text)
            match = re.search(r"demo page on (http://127\.0\.0\.1:\d+/)", text)
            if match and not found.done():
                found.set_result(match.group(1))
        if not found.done():
            found.set_exception(RuntimeError("hilsim run ended:\n" + "\n".join(lines)))

    reader = asyncio.get_running_loop().create_task(read())
    try:
        url = await asyncio.wait_for(found, 30)
        yield Running(process, url, lines)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C: transactions end, the page closes
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.wait_for(reader, 5)


@contextlib.asynccontextmanager
async def browser(directory: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(directory / "chromium-profile"),  # a fresh profile for every test
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


async def open_page(context: BrowserContext, url: str) -> Page:
    page = context.pages[0] if context.pages else await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    await page.wait_for_selector('#link[data-state="connected"]', timeout=10_000)
    assert errors == []
    return page


async def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.evaluate("window.scrollTo(0, 0)")  # the sticky header where it belongs
    await page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.asynccontextmanager
async def screenshot_on_failure(page: Page, name: str) -> AsyncIterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            await save_screenshot(page, f"failed-{name}.png")
        raise


def card(connector: int) -> str:
    return f'article.card[data-connector="{connector}"]'


async def band_colour(page: Page, connector: int) -> str:
    colour: str = await page.eval_on_selector(
        f"{card(connector)} .band", "el => getComputedStyle(el).backgroundColor"
    )
    return colour


async def wait_status(page: Page, connector: int, status: str, timeout: float = 5000) -> None:
    await page.wait_for_selector(f'{card(connector)}[data-status="{status}"]', timeout=timeout)


async def notice_says(page: Page, text: str) -> None:
    await page.wait_for_function(
        "text => !document.querySelector('#notice').hidden"
        " && document.querySelector('#notice').textContent.includes(text)",
        arg=text,
        timeout=5000,
    )


async def available(session: ChargePointSession) -> None:
    for connector in (1, 2):
        await session.wait_for(
            "StatusNotification",
            lambda p, c=connector: p["connectorId"] == c and p["status"] == "Available",
        )


# -- the tests ------------------------------------------------------------------------------------


async def test_a_charging_session_from_the_page(csms: CentralSystem, short_dir: Path) -> None:
    web = f'listen = "127.0.0.1:0"\npassword = "{PASSWORD}"\n'
    async with hilsim_run(short_dir, csms, web) as hilsim, browser(short_dir) as context:
        session = await csms.wait_for_charge_point(CP_ID, timeout=10)
        await available(session)
        page = await open_page(context, hilsim.url)
        async with screenshot_on_failure(page, "session"):
            await run_session(page, session, csms)


async def run_session(page: Page, session: ChargePointSession, csms: CentralSystem) -> None:
    # The page as it opens: two cards, green, the CSMS link and the identity.
    await wait_status(page, 1, "Available")
    await wait_status(page, 2, "Available")
    assert await band_colour(page, 1) == GREEN
    assert await page.text_content(f"{card(1)} .status") == "Available"
    assert await page.text_content("#cp-id") == CP_ID
    assert await page.text_content("#csms-state") == "connected"
    assert (await page.text_content("#csms-url") or "").endswith(f"/{CP_ID}")
    assert await page.is_visible(f"{card(1)} .plug")

    # Without the password the buttons refuse, and nothing reaches the charger.
    await page.click(f"{card(1)} .plug")
    await notice_says(page, "locked: enter the password first")
    await page.fill("#password", "not-the-password")
    await page.click("#unlock-button")
    await notice_says(page, "wrong password")
    assert await page.is_hidden("#lock-button")
    await page.click(f"{card(1)} .plug")
    await notice_says(page, "plug refused: locked")
    assert await page.get_attribute(card(1), "data-status") == "Available"
    assert not [
        m
        for m in session.received
        if m.action == "StatusNotification" and m.payload["status"] == "Preparing"
    ]

    # The right password unlocks them.
    await page.fill("#password", PASSWORD)
    await page.click("#unlock-button")
    await page.wait_for_selector("#lock-button", state="visible", timeout=5000)
    await session.change_configuration("MeterValueSampleInterval", "1")

    await page.click(f"{card(1)} .plug")
    await wait_status(page, 1, "Preparing")
    assert await band_colour(page, 1) == AMBER
    assert await page.text_content(f"{card(1)} .plug") == "Unplug"

    # Plug + tag: the transaction is on the card and in the log within a second.
    assert await page.input_value(f"{card(1)} .tag-list") == "04A2B3C4"
    clicked = time.monotonic()
    await page.click(f"{card(1)} .present")
    await page.wait_for_function(
        """() => {
            const card = document.querySelector('article.card[data-connector="1"]');
            const tx = card.querySelector('.transaction').textContent;
            return card.dataset.status === 'Charging' && /^[0-9]+$/.test(tx)
                && document.querySelector('#frames li[data-action="StartTransaction"]') !== null;
        }""",
        timeout=1000,
    )
    elapsed = time.monotonic() - clicked
    assert elapsed < 1.0
    start = await session.wait_for("StartTransaction", timeout=1)
    assert start["idTag"] == "04A2B3C4"
    tx_id = next(tx for tx, record in csms.ledger.items() if record.active)
    assert await page.text_content(f"{card(1)} .transaction") == str(tx_id)
    assert await page.text_content(f"{card(1)} .id-tag") == "04A2B3C4"
    # The status colour changed with the status: blue, energy flows.
    assert await band_colour(page, 1) == BLUE
    assert await page.get_attribute(f"{card(1)} .led", "data-pattern") == "pulse"
    await page.wait_for_function(
        "() => parseFloat(document.querySelector('article.card[data-connector=\"1\"] .power')"
        ".textContent) > 0",
        timeout=5000,
    )

    # The log: newest first, filterable, each frame opens to its JSON.
    await session.wait_for("MeterValues", timeout=5)
    await session.wait_for("MeterValues", timeout=5)
    await page.wait_for_selector('#frames li[data-action="MeterValues"]', timeout=5000)
    first = await page.get_attribute("#frames li:first-child", "data-seq")
    last = await page.get_attribute("#frames li:last-child", "data-seq")
    assert int(first or 0) > int(last or 0)
    await page.select_option("#filter-action", "StartTransaction")
    visible = page.locator("#frames li:visible")
    assert await visible.count() == 2  # the CALL and its .conf
    names = await page.locator("#frames li:visible .action").all_text_contents()
    assert names == ["StartTransaction.conf", "StartTransaction"]
    await page.click("#frames li:visible >> nth=1 >> summary")
    # The JSON is rendered when the frame is opened: wait for it rather than read at once.
    await expect(page.locator("#frames li:visible >> nth=1 >> pre")).to_contain_text(
        '"idTag": "04A2B3C4"', timeout=5000
    )
    await page.select_option("#filter-action", "")
    await page.select_option("#filter-connector", "2")
    connectors = await page.locator("#frames li:visible").evaluate_all(
        "items => items.map(li => li.dataset.connector)"
    )
    assert connectors and set(connectors) == {"2"}
    await page.select_option("#filter-connector", "")

    # Mid-session: the screenshot for the record.
    shot = await save_screenshot(page, "demo-page.png")
    assert shot.stat().st_size > 10_000

    # A fault shows as Faulted, in red, and ends the transaction.
    await page.click(f"{card(1)} .fault")
    await wait_status(page, 1, "Faulted")
    assert await band_colour(page, 1) == RED
    assert await page.text_content(f"{card(1)} .error") == "OtherError"
    stop = await session.wait_for("StopTransaction", timeout=5)
    assert stop["reason"] == "Other"
    await page.click(f"{card(1)} .fault")  # now "Clear fault"
    await page.wait_for_function(
        "() => document.querySelector('article.card[data-connector=\"1\"]').dataset.status"
        " !== 'Faulted'",
        timeout=5000,
    )

    # The emergency stop holds every connector Faulted until it is pressed again.
    await page.click("#estop")
    await wait_status(page, 1, "Faulted")
    await wait_status(page, 2, "Faulted")
    assert await page.is_visible("#estop-banner")
    assert await page.text_content("#estop") == "Release emergency stop"
    await page.click(f"{card(2)} .fault")  # "Clear fault" is refused while it is engaged
    await notice_says(page, "the emergency stop is engaged")
    await page.click("#estop")
    await wait_status(page, 2, "Available")
    assert await page.is_hidden("#estop-banner")


async def test_read_only_without_a_password(csms: CentralSystem, short_dir: Path) -> None:
    async with (
        hilsim_run(short_dir, csms, 'listen = "127.0.0.1:0"\n') as hilsim,
        browser(short_dir) as context,
    ):
        session = await csms.wait_for_charge_point(CP_ID, timeout=10)
        await available(session)
        page = await open_page(context, hilsim.url)
        async with screenshot_on_failure(page, "read-only"):
            await wait_status(page, 1, "Available")
            assert await page.is_visible("#read-only")
            assert await page.is_hidden("#controls")
            assert await page.is_hidden("#estop")
            assert await page.locator(".buttons:visible").count() == 0
            # Still a live view: a `ctl` press shows up at once.
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hilsim",
                "ctl",
                "--config",
                str(short_dir / "hilsim.toml"),
                "plug",
                "2",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            assert await asyncio.wait_for(process.wait(), 30) == 0
            await wait_status(page, 2, "Preparing")


async def test_phone_and_laptop_screens(csms: CentralSystem, short_dir: Path) -> None:
    web = f'listen = "127.0.0.1:0"\npassword = "{PASSWORD}"\n'
    async with hilsim_run(short_dir, csms, web) as hilsim, browser(short_dir) as context:
        session = await csms.wait_for_charge_point(CP_ID, timeout=10)
        await available(session)
        page = await open_page(context, hilsim.url)
        async with screenshot_on_failure(page, "screens"):
            await wait_status(page, 2, "Available")
            # A laptop: the connectors side by side.
            boxes = [await page.locator(card(c)).bounding_box() for c in (1, 2)]
            assert boxes[0] and boxes[1] and boxes[0]["y"] == boxes[1]["y"]
            # A phone: one column, nothing wider than the screen, the status still large.
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.wait_for_function(
                "() => document.documentElement.scrollWidth <= window.innerWidth", timeout=5000
            )
            boxes = [await page.locator(card(c)).bounding_box() for c in (1, 2)]
            assert boxes[0] and boxes[1] and boxes[1]["y"] > boxes[0]["y"] + boxes[0]["height"] - 1
            size = await page.eval_on_selector(
                f"{card(1)} .status", "el => parseFloat(getComputedStyle(el).fontSize)"
            )
            assert size >= 32  # readable from a metre away
            for selector in (f"{card(1)} .plug", "#estop", "#unlock-button"):
                box = await page.locator(selector).bounding_box()
                assert box and box["height"] >= 40 and box["x"] + box["width"] <= 390
            await save_screenshot(page, "demo-page-phone.png")


async def test_an_open_page_follows_a_restart(csms: CentralSystem, short_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    web = f'listen = "127.0.0.1:{port}"\npassword = "{PASSWORD}"\n'
    async with browser(short_dir) as context:
        async with hilsim_run(short_dir, csms, web) as hilsim:
            await available(await csms.wait_for_charge_point(CP_ID, timeout=10))
            page = await open_page(context, hilsim.url)
            await page.fill("#password", PASSWORD)
            await page.click("#unlock-button")
            await page.wait_for_selector("#lock-button", state="visible", timeout=5000)
        async with screenshot_on_failure(page, "restart"):
            await page.wait_for_selector('#link[data-state="offline"]', timeout=10_000)
            assert "reconnecting" in (await page.text_content("#link-text") or "")
            async with hilsim_run(short_dir, csms, web):
                # Back by itself, still unlocked (the password stays in the tab's memory).
                await page.wait_for_selector('#link[data-state="connected"]', timeout=20_000)
                await page.wait_for_selector("#lock-button", state="visible", timeout=5000)
                await page.click(f"{card(1)} .plug")
                await wait_status(page, 1, "Preparing")
