"""A scenario file read and checked: every step's kind, keys and values, before anything runs.

A bad file is refused naming the file, the step, the key and what was expected, as configuration
errors are (ConfigError, exit 2).
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilsim.config import OCPP_VERSIONS
from hilsim.errors import ConfigError
from hilsim.scenario.matching import COMPARISONS, VARIABLE

log = logging.getLogger(__name__)

#: What `hilsim ctl` offers, and which of its arguments each action takes.
CTL_ACTIONS: dict[str, tuple[str, ...]] = {
    "status": (),
    "plug": ("connector",),
    "unplug": ("connector",),
    "clear": ("connector",),
    "tag": ("connector", "id_tag"),
    "fault": ("connector", "error_code"),
    "press": ("pin",),
    "release": ("pin",),
}
DEFAULT_WITHIN_S = 5.0


@dataclass(frozen=True)
class Step:
    """One ``[[step]]`` table: its kind and its keys, checked when the file is loaded."""

    number: int
    kind: str  # ctl, csms, link, expect, state, wait
    table: dict[str, Any]

    @property
    def label(self) -> str:
        """What the pass/fail line calls this step: its ``name``, else a summary of its keys."""
        if "name" in self.table:
            return str(self.table["name"])
        t = self.table
        if self.kind == "ctl":
            args = [str(t[key]) for key in CTL_ACTIONS[t["ctl"]] if key in t]
            return " ".join(["ctl", t["ctl"], *args])
        if self.kind == "csms":
            payload = json.dumps(t.get("payload", {}), separators=(",", ":"))
            return f"csms {t['csms']} " + (payload if len(payload) <= 80 else payload[:77] + "...")
        if self.kind == "link":
            return f"CSMS {t['link']}"
        if self.kind == "wait":
            return f"wait {t['wait']:g} s"
        within = f" within {t.get('within', DEFAULT_WITHIN_S):g} s"
        if self.kind == "state":
            return f"state {_describe(t['state'])}{within}"
        where = f" {_describe(t['where'])}" if t.get("where") else ""
        return f"expect {t['expect']}{where}{within}"


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    description: str
    id_tags: tuple[str, ...] | None
    steps: tuple[Step, ...]
    #: the OCPP version the charge point speaks ("1.6", or "2.0.1": its steps name 2.0.1 actions)
    ocpp_version: str = "1.6"


_STEP_KEYS: dict[str, frozenset[str]] = {
    "ctl": frozenset({"ctl", "connector", "id_tag", "error_code", "pin", "refused", "result"}),
    "csms": frozenset({"csms", "payload", "result", "error", "timeout", "save"}),
    "link": frozenset({"link"}),
    "expect": frozenset({"expect", "where", "within", "save"}),
    "state": frozenset({"state", "within", "save"}),
    "wait": frozenset({"wait"}),
}
_TOP_KEYS = frozenset({"name", "description", "ocpp_version", "csms", "step"})


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; ConfigError (exit 2) naming the step and key if bad."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, None, "file not found; expected a TOML scenario file") from None
    except OSError as exc:
        raise ConfigError(source, None, f"cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, None, f"expected valid TOML: {exc}") from None
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(source, key, f"unknown key; expected one of {_listed(_TOP_KEYS)}")
    version = data.get("ocpp_version", "1.6")
    if version not in OCPP_VERSIONS:
        raise ConfigError(source, "ocpp_version", f'expected "1.6" or "2.0.1", got {version!r}')
    name = _text(source, "name", data.get("name", Path(path).stem))
    description = _text(source, "description", data.get("description", ""))
    id_tags: tuple[str, ...] | None = None
    csms = data.get("csms", {})
    if not isinstance(csms, dict) or set(csms) - {"id_tags"}:
        raise ConfigError(source, "csms", "expected a table with only id_tags")
    if "id_tags" in csms:
        tags = csms["id_tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise ConfigError(source, "csms.id_tags", "expected a list of idTag strings")
        id_tags = tuple(tags)
    tables = data.get("step")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(source, "step", "expected at least one [[step]] table")
    steps = tuple(
        _step(source, number, table, version) for number, table in enumerate(tables, 1)
    )
    return Scenario(Path(path), name, description, id_tags, steps, version)


def _listed(names: frozenset[str] | Mapping[str, Any] | tuple[str, ...]) -> str:
    return ", ".join(sorted(names))


def _text(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(source, key, f"expected a string, got {value!r}")
    return value


def _step(source: str, number: int, table: Any, version: str = "1.6") -> Step:
    where = f"step {number}"
    if not isinstance(table, dict):
        raise ConfigError(source, where, "expected a table")
    kinds = [kind for kind in _STEP_KEYS if kind in table]
    if len(kinds) != 1:
        raise ConfigError(
            source, where, f"expected exactly one of {_listed(_STEP_KEYS)}, got {kinds or 'none'}"
        )
    kind = kinds[0]
    for key in table:
        if key != "name" and key not in _STEP_KEYS[kind]:
            allowed = _listed(_STEP_KEYS[kind] | {"name"})
            raise ConfigError(
                source, f"{where}.{key}", f"unknown key for a {kind} step; expected {allowed}"
            )

    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(source, f"{where}.{key}", f"{expected}, got {table.get(key)!r}")

    if "name" in table and not isinstance(table["name"], str):
        raise bad("name", "expected a string")
    for key in ("within", "timeout", "wait"):
        if key in table and (
            isinstance(table[key], bool)
            or not isinstance(table[key], int | float)
            or not 0 <= table[key] <= 3600
        ):
            raise bad(key, "expected seconds, 0 to 3600")
    for key in ("where", "result", "save", "state"):
        if key in table and not isinstance(table[key], dict):
            raise bad(key, "expected a table")
    for key, path in table.get("save", {}).items():
        if not isinstance(path, str):
            raise ConfigError(source, f"{where}.save.{key}", "expected a dotted field path")
    if kind == "ctl":
        _check_ctl(table, bad)
    elif kind == "csms":
        _check_csms(table, bad, version)
    elif kind == "link" and table["link"] not in ("down", "up"):
        raise bad("link", 'expected "down" (the CSMS goes away) or "up" (it comes back)')
    elif kind == "expect":
        if table["expect"] not in _actions(version):
            raise bad("expect", f"expected an OCPP {version} action a charge point sends")
    elif kind == "state" and not table["state"]:
        raise bad("state", "expected at least one field")
    return Step(number, kind, table)


def _check_ctl(table: dict[str, Any], bad: Callable[[str, str], ConfigError]) -> None:
    action = table["ctl"]
    if action not in CTL_ACTIONS:
        raise bad("ctl", f"expected one of {_listed(CTL_ACTIONS)}")
    for key in CTL_ACTIONS[action]:
        if key not in table and key != "error_code":
            raise bad(key, f"ctl {action} needs {key}")
    for key in ("connector", "id_tag", "error_code", "pin"):
        if key in table and key not in CTL_ACTIONS[action]:
            raise bad(key, f"ctl {action} takes no {key}")
    if "connector" in table and (
        isinstance(table["connector"], bool) or not isinstance(table["connector"], int)
    ):
        raise bad("connector", "expected a connector number")
    for key in ("id_tag", "error_code"):
        if key in table and not isinstance(table[key], str):
            raise bad(key, "expected a string")
    if "refused" in table and not isinstance(table["refused"], bool):
        raise bad("refused", "expected true or false")


def _actions(version: str) -> frozenset[str]:
    """The actions of ``version`` with an official schema."""
    if version == "2.0.1":
        from hilsim.csms import strict201

        return strict201.actions()
    from hilsim.csms import strict

    return strict.actions()


def _check_csms(
    table: dict[str, Any], bad: Callable[[str, str], ConfigError], version: str
) -> None:
    from hilsim.csms.console import BadCall, action_named, problems

    try:
        table["csms"] = action_named(str(table["csms"]), version)
    except BadCall as exc:
        raise bad("csms", str(exc)) from None
    payload = table.setdefault("payload", {})
    if not isinstance(payload, dict):
        raise bad("payload", "expected a table (the CALL payload, camelCase)")
    if not VARIABLE.search(json.dumps(payload)):  # with ${...} it is checked when it runs
        found = problems(table["csms"], payload, version)
        if found:
            raise bad("payload", "; ".join(found))
    if "error" in table and not isinstance(table["error"], str):
        raise bad("error", "expected a CALLERROR errorCode string")
    if "error" in table and ("result" in table or "save" in table):
        raise bad("error", "a step expecting a CALLERROR has no result to check or save")


def _describe(fields: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={_shown(value)}" for key, value in fields.items())


def _shown(value: Any) -> str:
    if isinstance(value, dict) and value and set(value) <= COMPARISONS:
        return " ".join(f"{op} {limit}" for op, limit in value.items())
    return json.dumps(value, separators=(",", ":"))
