"""Test helper: judge recorded OCPP-J frames by the official OCPP 1.6 schemas.

Pairs each CALL with the CALLRESULT of the same unique id, then checks both payloads with
:mod:`hilsim.csms.strict`, the way a strict central system (or charge point) would::

    frames = []                                    # filled by a TracedConnection listener
    ...
    assert_strictly_valid(frames)                  # every CALL and CALLRESULT, both directions
    assert_strictly_valid(frames, sent=True)       # only what this side sent
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from hilsim.csms import strict
from hilsim.ocpp.wire import CALL, CALLRESULT, Frame


def _parse(frame: Frame | str) -> tuple[bool | None, Any]:
    if isinstance(frame, Frame):
        return frame.sent, frame.parsed()
    try:
        return None, json.loads(frame)
    except ValueError:
        return None, None


def frame_violations(frames: Iterable[Frame | str], *, sent: bool | None = None) -> list[str]:
    """Every strict-schema violation in these frames (only sent/received ones if ``sent`` given).

    Plain strings count as both directions; CALLRESULTs are matched to CALLs by unique id
    across directions.
    """
    actions: dict[str, str] = {}
    found: list[str] = []
    for frame in frames:
        direction, msg = _parse(frame)
        mine = sent is None or direction is None or direction == sent
        if not isinstance(msg, list) or len(msg) < 3:
            if mine:
                found.append(f"not an OCPP-J frame: {frame!s:.200}")
            continue
        if msg[0] == CALL and len(msg) == 4:
            actions[str(msg[1])] = str(msg[2])
            if mine:
                found.extend(strict.validate(str(msg[2]), msg[3], response=False))
        elif msg[0] == CALLRESULT:
            action = actions.pop(str(msg[1]), None)
            if mine and action is not None:
                found.extend(strict.validate(action, msg[2], response=True))
    return found


def assert_strictly_valid(frames: Iterable[Frame | str], *, sent: bool | None = None) -> None:
    found = frame_violations(frames, sent=sent)
    assert not found, "payloads a strict OCPP 1.6 peer rejects:\n  " + "\n  ".join(found)
