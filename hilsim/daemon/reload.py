"""SIGHUP (`systemctl reload hilsim`): what of a changed config file can apply without a restart.

The rule, chosen so a reload never disturbs a running transaction or the hardware:

* applied at once: `[log] level`;
* applied at the next connection to the CSMS: everything in `[charge_point]` (the CSMS URL,
  the charge point id, the BootNotification identity). The current connection is kept, so a
  transaction in progress finishes with the CSMS that started it; `systemctl restart hilsim`
  switches at once;
* needs a restart, and is logged as such: the connectors (their number and electrical limits are
  wired into the state machines and meters), `[storage]` (the open database), `[control]` (the
  listening socket), `[gpio]` (claimed pins) and any other table (meter, web, security, ...),
  whose owners read it once at start;
* ignored: `[csms]`, which only `hilsim csms` reads.

A file that no longer parses changes nothing: the error is logged and the service runs on.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hilsim.config import Settings
from hilsim.daemon.logs import configured_log_level

#: Tables whose changes apply without a restart, or that `hilsim run` does not read.
_RELOADABLE = ("charge_point", "log")
_IGNORED = ("csms",)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The settings to run with from now on, and what to tell the person who reloaded."""

    settings: Settings
    applied: tuple[str, ...]
    needs_restart: tuple[str, ...]
    log_level: str | None

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.needs_restart)


def plan_reload(current: Settings, new: Settings) -> ReloadPlan:
    """Compare the running settings with a freshly loaded file (raises ConfigError on `[log]`)."""
    old_level, new_level = configured_log_level(current), configured_log_level(new)
    applied: list[str] = []
    if old_level != new_level:
        applied.append(f"log.level = {new_level or 'INFO (default)'} (now)")
    old_cp, new_cp = current.charge_point, new.charge_point
    for field in dataclasses.fields(old_cp):
        before, after = getattr(old_cp, field.name), getattr(new_cp, field.name)
        if before != after:
            applied.append(
                f"charge_point.{field.name} = {after!r} (at the next connection to the CSMS)"
            )
    needs_restart = []
    # The parsed limits, and the raw tables for what other modules read from them (a connector's
    # [connector.gpio] pins, its [connector.meter]).
    if current.connectors != new.connectors or current.raw.get("connector") != new.raw.get(
        "connector"
    ):
        needs_restart.append("connector")
    if current.storage != new.storage:
        needs_restart.append("storage")
    if current.control != new.control:
        needs_restart.append("control")
    if current.gpio != new.gpio or current.raw.get("gpio") != new.raw.get("gpio"):
        needs_restart.append("gpio")
    known = {"connector", "storage", "control", "gpio", *_RELOADABLE, *_IGNORED}
    for table in sorted(set(current.raw) | set(new.raw)):
        if table not in known and current.raw.get(table) != new.raw.get(table):
            needs_restart.append(table)
    raw: dict[str, Any] = dict(current.raw)
    for table in _RELOADABLE:
        if table in new.raw:
            raw[table] = new.raw[table]
        else:
            raw.pop(table, None)
    settings = dataclasses.replace(current, charge_point=new_cp, raw=MappingProxyType(raw))
    return ReloadPlan(settings, tuple(applied), tuple(needs_restart), new_level)


def describe(plan: ReloadPlan) -> list[tuple[int, str]]:
    """(log level, line) pairs for a reload: what applied, then what waits for a restart."""
    if not plan.changed:
        return [(logging.INFO, "reload: configuration unchanged")]
    lines = [(logging.INFO, f"reload: {item}") for item in plan.applied]
    if plan.needs_restart:
        lines.append(
            (
                logging.WARNING,
                "reload: changed but needs `systemctl restart hilsim` to apply: "
                + ", ".join(plan.needs_restart),
            )
        )
    return lines
