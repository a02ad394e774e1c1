"""The configuration keys as the CSMS and `hilsim config set` see them: one path for a change,
validated -> persisted -> applied -> notified (`ConfigurationKeys.set`, whose subscribers are
the services a key concerns), and GetConfiguration's report of them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hilsim.keys import Change, ChangeStatus, ConfigurationKeys
from hilsim.ocpp.ports import ConfigurationEntry
from hilsim.store import Store
from hilsim.stored_keys import save_key
from hilsim.tasks import TaskSet

log = logging.getLogger(__name__)


class Configuration:
    """ChangeConfiguration, GetConfiguration, `hilsim config set` and the boot's interval."""

    def __init__(self, keys: ConfigurationKeys, store: Store, tasks: TaskSet) -> None:
        self.keys = keys
        self.store = store
        self._tasks = tasks
        self._reported: tuple[list[Any], list[ConfigurationEntry]] = ([], [])  # get_configuration

    def adopt_heartbeat_interval(self, seconds: int) -> None:
        """The interval a BootNotification answer gives becomes HeartbeatInterval (persisted)."""
        if seconds != self.keys.get("HeartbeatInterval"):
            status, spec, value = self.keys.change("HeartbeatInterval", str(seconds))
            if status == ChangeStatus.accepted and spec is not None:
                self._tasks.spawn(self.store.save_key(spec.name, spec.format(value)), "save-key")

    def get_configuration(
        self, keys: Sequence[str] | None
    ) -> tuple[list[ConfigurationEntry], list[str]]:
        known, unknown = self.keys.report(keys)
        # A CSMS polls every key over and over: while the values read the same, so do the entries
        # (and the OCPP client reuses its answer for the same entries).
        if known != self._reported[0]:
            entries = [ConfigurationEntry(s.name, s.readonly, text) for s, text in known]
            self._reported = (known, entries)
        return self._reported[1], unknown

    async def change_configuration(self, key: str, value: str) -> str:
        return str((await self.configure(key, value)).status)

    async def configure(self, key: str, value: str) -> Change:
        """ChangeConfiguration and `hilsim config set`: validated, persisted (committed before
        the answer, so Accepted survives a power cut), then applied (`ConfigurationKeys.set`)."""
        change = await self.keys.set(key, value, save_key(self.store))
        spec = change.spec
        if change.status == ChangeStatus.accepted and spec is not None:
            assert change.value is not None
            log.info("configuration %s = %s", spec.name, spec.shown(change.value))
        else:
            shown = "(not shown)" if spec is not None and spec.writeonly else repr(value)
            log.info("configuration %s = %s refused: %s (%s)", key, shown, change.status,
                     change.why)  # fmt: skip
        return change
