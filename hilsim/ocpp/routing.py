"""The marks that route a CSMS CALL to its handler: `@on(action)` and `@after(action)`.

In their own module so that the client and every handler mixin (one per feature profile) share
them without importing one another. The client's router reads the two attributes they set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def on(action: str) -> Callable[[F], F]:
    """Mark a method as the handler of a CALL the CSMS sends. It returns the CALLRESULT payload."""

    def mark(method: F) -> F:
        method.__ocpp_on__ = action  # type: ignore[attr-defined]
        return method

    return mark


def after(action: str) -> Callable[[F], F]:
    """Mark a method to run once the CALLRESULT of ``action`` is on the wire."""

    def mark(method: F) -> F:
        method.__ocpp_after__ = action  # type: ignore[attr-defined]
        return method

    return mark
