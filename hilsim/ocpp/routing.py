"""The mark that routes a CSMS CALL to its handler, `@on(action)`, and what a handler returns.

In their own module so that the client and every handler mixin (one per feature profile) share
them without importing one another. The client's router reads the attribute `on` sets.

A handler returns its CALLRESULT payload, or a `Reply`: the payload and the step to run once
that payload is on the wire (the StatusNotification, StopTransaction or reconnection the answer
sets in motion). The router hands each handler's result to that after-step itself, so nothing is
parked between the two in a dict keyed by the CALL's unique id. A handler that must answer with
a CALLERROR instead raises `CallErrorReply`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Reply(NamedTuple):
    """A CALLRESULT payload and what follows it once it is on the wire (None: nothing)."""

    payload: dict[str, Any]
    then: Callable[[], object] | None = None


class CallErrorReply(Exception):
    """Raised by a handler whose CALL is answered with a CALLERROR rather than a CALLRESULT
    (OCPP 2.0.1 B06.FR.16: a GetVariables of more items than the charge point takes is an
    OccurrenceConstraintViolation). ``code`` in either version's spelling: the router answers
    in its own."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


def on(action: str, *, raw: bool = False) -> Callable[[F], F]:
    """Mark a method as the handler of a CALL the CSMS sends.

    It returns the CALLRESULT payload or a `Reply`; it may be a coroutine. It is called with the
    payload's fields as snake_case keyword arguments, or, ``raw``, with the payload itself as
    one argument, as on the wire (OCPP 2.0.1 DataTransfer: its ``data`` is any JSON, whose keys
    are the vendor's, not to be renamed).
    """

    def mark(method: F) -> F:
        method.__ocpp_on__ = action  # type: ignore[attr-defined]
        if raw:
            method.__ocpp_raw__ = True  # type: ignore[attr-defined]
        return method

    return mark


class Handler(NamedTuple):
    """One `@on` method of a class: its action, its name, and how the router calls it."""

    action: str
    name: str
    wants_id: bool  # takes the CALL's unique id as ``call_unique_id``
    raw: bool  # takes the payload as it came (``@on(action, raw=True)``)


@functools.cache
def handlers(cls: type) -> tuple[Handler, ...]:
    """Every `@on` method of ``cls``.

    The same for every instance, so it is read once per class: inspect.signature takes ~0.4 ms
    for the 1.6 client's handlers, and a client is made for every connection (the client binds
    its routes when the first CALL arrives, so none of it delays a BootNotification).
    """
    found = []
    for name in dir(cls):
        member = getattr(cls, name, None)
        if (action := getattr(member, "__ocpp_on__", None)) is not None:
            wants_id = "call_unique_id" in inspect.signature(member).parameters
            found.append(Handler(action, name, wants_id, getattr(member, "__ocpp_raw__", False)))
    return tuple(found)
