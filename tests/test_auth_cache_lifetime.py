"""AuthCacheCtrlr.LifeTime (OCPP 2.0.1 C10): a cached idToken lasts that long after the CSMS
last confirmed it, or until the CSMS's own cacheExpiryDateTime if sooner; 1.6 has no lifetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hilsim.authorization import Authorizer
from hilsim.clock import Clock, parse_iso
from hilsim.control import request
from hilsim.ocpp.session import LinkState
from hilsim.store import Store
from hilsim.stored_keys import load_configuration, save_key

from conftest import TAG, serving


async def test_a_tag_authorized_over_the_wire_is_cached_for_the_lifetime(short_dir: Path) -> None:
    async with serving(short_dir, "2.0.1") as served:
        lifetime = {"component": {"name": "AuthCacheCtrlr"}, "variable": {"name": "LifeTime"},
                    "attributeValue": "600"}  # fmt: skip
        answer = await served.session.call_action("SetVariables", {"setVariableData": [lifetime]})
        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
        socket = served.settings.control.socket
        assert (await request(socket, {"cmd": "plug", "connector": 1}))["ok"]
        tagged = await request(socket, {"cmd": "tag", "connector": 1, "id_tag": TAG})
        assert tagged["result"]["authorization"]["status"] == "Accepted"
        charger = served.service.charger
        assert charger is not None
        cached = await charger.store.cached_id_tag(TAG)
        assert cached is not None and cached.expiry_date is not None
        left = parse_iso(cached.expiry_date) - charger.wall.now()
        assert timedelta(seconds=590) < left <= timedelta(seconds=600)


async def offline_authorizer(
    tmp_path: Path, system: list[datetime]
) -> tuple[Authorizer, Store]:
    store = await Store.open(tmp_path / "hilsim.db")
    keys = await load_configuration(store)
    assert (await keys.set("LocalAuthorizeOffline", "true", save_key(store))).status == "Accepted"
    link: Any = SimpleNamespace(state=LinkState.DISCONNECTED)  # the CSMS is out of reach
    clock = Clock(synchronized=lambda: True, system_now=lambda: system[0])
    return Authorizer(store, keys, link, clock), store


async def test_offline_the_cache_answers_until_the_lifetime_ends(tmp_path: Path) -> None:
    system = [datetime(2027, 3, 1, 12, 0, tzinfo=UTC)]
    authorizer, store = await offline_authorizer(tmp_path, system)
    try:
        authorizer.cache_lifetime_s = lambda: 60.0
        await authorizer.remember("LATER", {"status": "Accepted",
                                            "expiry_date": "2027-03-02T00:00:00Z"})  # fmt: skip
        await authorizer.remember("SOONER", {"status": "Accepted",
                                             "expiry_date": "2027-03-01T12:00:30Z"})  # fmt: skip
        assert (await authorizer.authorize("LATER")).status == "Accepted"
        system[0] += timedelta(seconds=45)
        assert (await authorizer.authorize("LATER")).status == "Accepted"
        assert (await authorizer.authorize("SOONER")).status == "Expired"  # the CSMS's is sooner
        system[0] += timedelta(seconds=16)
        assert (await authorizer.authorize("LATER")).status == "Expired"  # 61 s: lifetime over
        # The CSMS confirming it again starts a new lifetime.
        await authorizer.remember("LATER", {"status": "Accepted"})
        assert (await authorizer.authorize("LATER")).status == "Accepted"
        # 1.6: no lifetime, only the CSMS's expiry.
        authorizer.cache_lifetime_s = None
        await authorizer.remember("OLD", {"status": "Accepted"})
        system[0] += timedelta(days=365)
        assert (await authorizer.authorize("OLD")).status == "Accepted"
    finally:
        await store.close()
