"""What the security whitepaper adds to the client's handlers: reconnecting after a change.

A new SecurityProfile or AuthorizationKey takes effect by connecting again, which must wait until
the ChangeConfiguration answer is on the wire (the CSMS must hear Accepted first); the client
runs ``@after`` hooks exactly then. The rules themselves live in `hilsim.security`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


# The client's router reads this attribute; repeated here because client.py imports this module
# to use it as a base class (as hilsim.ocpp.core_handlers does).
def after(action: str) -> Callable[[F], F]:
    """Mark a method to run once the CALLRESULT of ``action`` is on the wire."""

    def mark(method: F) -> F:
        method.__ocpp_after__ = action  # type: ignore[attr-defined]
        return method

    return mark


class SecurityHandlers:
    charger: Any  # provided by ChargePointClient

    @after("ChangeConfiguration")
    def after_change_configuration(self, **_: Any) -> None:
        security = getattr(getattr(self.charger, "link", None), "security", None)
        if security is not None:
            security.after_change()
