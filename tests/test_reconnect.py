"""The link comes back by itself: a CSMS down at start, and a CSMS restarted mid-session."""

from __future__ import annotations

import random
import socket

from hilsim.control import request
from hilsim.csms import CentralSystem
from hilsim.ocpp.transport import Backoff

from conftest import CP_ID, TAG, make_settings, start_service, stop_service


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_csms_down_at_start_is_retried(short_dir) -> None:
    port = free_port()
    settings = make_settings(short_dir, f"ws://127.0.0.1:{port}")
    service, task = await start_service(settings)
    try:
        # Nothing listens yet: the charge point keeps retrying without crashing.
        assert service.link is not None and service.link.state != "connected"
        async with CentralSystem("127.0.0.1", port) as csms:
            session = await csms.wait_for_charge_point(CP_ID, timeout=5)
            await session.wait_for("BootNotification")
            await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
            assert session.violations == []
    finally:
        await stop_service(service, task)


async def test_csms_restart_mid_session(short_dir) -> None:
    port = free_port()
    settings = make_settings(short_dir, f"ws://127.0.0.1:{port}")
    async with CentralSystem("127.0.0.1", port) as csms:
        service, task = await start_service(settings)
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        await session.change_configuration("MeterValueSampleInterval", "1")
        control = settings.control.socket
        await request(control, {"cmd": "plug", "connector": 1})
        await request(control, {"cmd": "tag", "connector": 1, "id_tag": TAG})
        await session.wait_for("StatusNotification", lambda p: p["status"] == "Charging")
        tx = service.charger.transaction_id(1)
    try:
        # The CSMS is gone; the charge point notices and retries.
        async with CentralSystem("127.0.0.1", port) as restarted:
            session = await restarted.wait_for_charge_point(CP_ID, timeout=10)
            await session.wait_for("BootNotification")
            # The current status of every connector is sent again after the new boot.
            charging = await session.wait_for(
                "StatusNotification", lambda p: p["connectorId"] == 1, timeout=5
            )
            assert charging["status"] == "Charging"
            await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
            # The transaction carries on: its samples reach the new CSMS under the same id.
            sample = await session.wait_for("MeterValues", timeout=5)
            assert sample["transactionId"] == tx
            assert service.link is not None and service.link.connections == 2
            assert session.violations == []
    finally:
        await stop_service(service, task)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    delays = Backoff(initial_s=1, factor=2, cap_s=8).delays(random.Random(1))
    values = [next(delays) for _ in range(8)]
    steps = [1, 2, 4, 8, 8, 8, 8, 8]
    for value, step in zip(values, steps, strict=True):
        assert step / 2 <= value <= step
    assert len(set(values)) == len(values)  # jittered, not lockstep
