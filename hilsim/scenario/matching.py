"""What a scenario step compares and fills in: dotted field paths, expected fields, ``${saved}``.

Shared by the file checks (a payload with ``${...}`` is checked when it runs) and the runner.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from hilsim.errors import HilsimError

log = logging.getLogger(__name__)

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: The keys of an expected value that compare rather than equal (``{min = 1, max = 5}``).
COMPARISONS = frozenset({"min", "max", "not"})
#: What `field_at` returns for a path that leads nowhere (None is a value a field may have).
MISSING = object()


class StepFailed(HilsimError):
    """A step did not get what it expected; the message says what came instead."""


def field_at(data: Any, path: str) -> Any:
    """The value at a dotted path; a number in a list of objects with "id" picks by id first.

    So ``connectors.1.status`` is connector 1's status in `hilsim ctl status`, and
    ``meterValue.0.sampledValue.0.value`` the first sample of a MeterValues.req.
    """
    node = data
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part, MISSING)
        elif isinstance(node, list) and re.fullmatch(r"-?\d+", part):
            index = int(part)
            by_id = [item for item in node if isinstance(item, dict) and item.get("id") == index]
            if by_id:
                node = by_id[0]
            elif -len(node) <= index < len(node):
                node = node[index]
            else:
                return MISSING
        else:
            return MISSING
        if node is MISSING:
            return MISSING
    return node


def mismatch(data: Any, expected: Mapping[str, Any]) -> str | None:
    """Why ``data`` does not have the expected fields (None: it has them all)."""
    for path, want in expected.items():
        have = field_at(data, path)
        if have is MISSING:
            if isinstance(want, dict) and set(want) == {"not"}:
                continue
            return f"{path} is missing"
        if isinstance(want, dict) and want and set(want) <= COMPARISONS:
            if "not" in want and have == want["not"]:
                return f"{path} is {json.dumps(have)}, expected anything else"
            if not set(want) & {"min", "max"}:
                continue
            try:
                number = float(have)
            except (TypeError, ValueError):
                return f"{path} is {have!r}, not a number"
            if "min" in want and number < want["min"]:
                return f"{path} is {have!r}, expected at least {want['min']}"
            if "max" in want and number > want["max"]:
                return f"{path} is {have!r}, expected at most {want['max']}"
        elif have != want or isinstance(have, bool) != isinstance(want, bool):
            return f"{path} is {json.dumps(have)}, expected {json.dumps(want)}"
    return None


def substitute(value: Any, saved: Mapping[str, Any]) -> Any:
    """``"${tx}"`` becomes the saved value itself (a number stays one); inside text, its text."""

    def one(text: str) -> Any:
        whole = VARIABLE.fullmatch(text)
        if whole:
            return lookup(whole.group(1))
        return VARIABLE.sub(lambda m: str(lookup(m.group(1))), text)

    def lookup(name: str) -> Any:
        if name not in saved:
            known = ", ".join(sorted(saved)) or "none yet"
            raise StepFailed(f"${{{name}}} was not saved by an earlier step (saved: {known})")
        return saved[name]

    if isinstance(value, str):
        return one(value)
    if isinstance(value, dict):
        return {key: substitute(item, saved) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, saved) for item in value]
    return value
