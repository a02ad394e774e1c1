"""`hilsim config get/set` for a 2.0.1 charge point's variables, named `Component.Variable`.

A bench engineer prepares a test before any CSMS is connected: TxCtrlr.TxStartPoint has no 1.6
key, so the key-only `hilsim config set` could not reach it. The operator names a variable as the
README's table and a CSMS's GetVariables do (`TxCtrlr.TxStartPoint`, case-insensitive, an
instance in brackets: `Component.Variable[instance]`); the change takes the same path as a
SetVariables (checked, committed to SQLite, applied, told to the CSMS by NotifyEvent since the
CSMS did not make it). Only charge-point-wide components are named this way: an EVSE's
variables are the charger's wiring, not settings.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from hilsim.device_model.service import DeviceModel, GetStatus, Outcome, SetStatus
from hilsim.device_model.variables import Component, Mutability, Variable

log = logging.getLogger(__name__)

_NAME = re.compile(r"(?P<component>[A-Za-z0-9_-]+)\.(?P<variable>[A-Za-z0-9_-]+)"
                   r"(?:\[(?P<instance>[A-Za-z0-9_.-]+)\])?")  # fmt: skip


def _find(model: DeviceModel, name: str) -> Variable | dict[str, Any]:
    """The variable ``name`` names, or the answer saying why there is none."""
    parsed = _NAME.fullmatch(name)
    found: Variable | str = GetStatus.unknown_variable
    if parsed is not None:
        found = model.find(Component(parsed["component"]), parsed["variable"], parsed["instance"])
    if isinstance(found, Variable):
        return found
    return {
        "ok": False,
        "error": f"{found}: no variable {name} (expected Component.Variable, e.g. "
        "TxCtrlr.TxStartPoint; `hilsim config get` lists them)",
    }


def readable(model: DeviceModel) -> dict[str, str]:
    """Every charge-point-wide variable that has no 1.6 key and can be read, with its value:
    what `hilsim config get` adds to the keys for a 2.0.1 charge point."""
    found: dict[str, str] = {}
    for variable in model.catalogue:
        if variable.key is not None or variable.component.evse is not None:
            continue
        if variable.mutability == Mutability.write_only:
            continue
        value = model.value(variable)
        if value is not None:
            found[variable.label()] = value
    return found


def get_variable(model: DeviceModel, name: str) -> dict[str, Any]:
    """The control socket's answer to `hilsim config get Component.Variable`."""
    found = _find(model, name)
    if not isinstance(found, Variable):
        return found
    outcome = model.get(found.component, found.name, found.instance)
    if outcome.status != GetStatus.accepted:
        return {"ok": False, "error": _why(found, outcome)}
    return {"ok": True, "result": {found.label(): outcome.value}}


async def set_variable(model: DeviceModel, name: str, value: str) -> dict[str, Any]:
    """The control socket's answer to `hilsim config set Component.Variable VALUE`."""
    found = _find(model, name)
    if not isinstance(found, Variable):
        return found
    outcome = await model.set(found.component, found.name, value, found.instance, by_csms=False)
    result = {"status": outcome.status}
    if outcome.status in (SetStatus.accepted, SetStatus.reboot_required):
        log.info("%s set by the operator: %s", found.label(), outcome.status)
        return {"ok": True, "result": result}
    return {"ok": False, "result": result, "error": _why(found, outcome)}


def _why(variable: Variable, outcome: Outcome) -> str:
    info = outcome.info or outcome.reason or ""
    return f"{outcome.status}: {info}" if info else f"{outcome.status}: {variable.label()}"
