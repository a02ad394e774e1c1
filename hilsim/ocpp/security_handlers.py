"""What the security whitepaper adds to the client's handlers: reconnecting after a change.

A new SecurityProfile or AuthorizationKey takes effect by connecting again, which must wait until
the ChangeConfiguration answer is on the wire (the CSMS must hear Accepted first); the client
runs ``@after`` hooks exactly then. The rules themselves live in `hilsim.security`.
"""

from __future__ import annotations

from typing import Any

from hilsim.ocpp.routing import after


class SecurityHandlers:
    charger: Any  # provided by ChargePointClient

    @after("ChangeConfiguration")
    def after_change_configuration(self, **_: Any) -> None:
        security = getattr(getattr(self.charger, "link", None), "security", None)
        if security is not None:
            security.after_change()
