"""The WebSocket link to the CSMS: connect, back off, translate errors.

The only module of the charge point that imports `websockets`, so a change of library or of its
API touches one file, and every failure leaves here as a `CsmsError` with a readable cause.
"""

from __future__ import annotations

import logging
import random
import ssl as ssl_module
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from hilsim.errors import CsmsError
from hilsim.security import RedactingLogger

log = logging.getLogger(__name__)
#: websockets logs handshake headers and frames at DEBUG; a Basic auth header or a frame that sets
#: the AuthorizationKey must not reach the log that way.
_library_log = RedactingLogger(logging.getLogger("websockets.client"), {})

SUBPROTOCOL = "ocpp1.6"

__all__ = [
    "SUBPROTOCOL",
    "Backoff",
    "ClientConnection",
    "ConnectionClosed",
    "HandshakeRefused",
    "TlsFailure",
    "open_link",
]

#: OpenSSL reasons that say the two ends share no TLS version (the client wants 1.2 or later).
_VERSION_REASONS = frozenset(
    {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE"}
)
#: ... and no cipher suite.
_CIPHER_REASONS = frozenset({"NO_CIPHERS_AVAILABLE", "NO_SHARED_CIPHER", "NO_CIPHER_MATCH"})


class HandshakeRefused(CsmsError):
    """The CSMS answered the WebSocket handshake with an HTTP error status.

    Told apart from a network error because 401/403 means the CSMS refused our credentials (a
    security event in OCPP 2.0.1), not that it could not be reached.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def credentials_refused(self) -> bool:
        return self.status in (401, 403)


class TlsFailure(CsmsError):
    """The TLS handshake failed; ``kind`` says why, as far as OpenSSL tells: "certificate" (the
    CSMS's certificate did not verify), "version" (no TLS version in common), "cipher" (no
    cipher suite in common) or "other"."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def tls_failure_kind(exc: ssl_module.SSLError) -> str:
    """Why a TLS handshake failed, from OpenSSL's reason."""
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return "certificate"
    reason = str(exc.reason or "")
    if reason in _VERSION_REASONS:
        return "version"
    if reason in _CIPHER_REASONS:
        return "cipher"
    return "other"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, capped.

    Jitter matters on a bench with several Pis: after the CSMS restarts they must not all knock
    at the same instant. Each delay is drawn between half and all of the exponential step.
    """

    initial_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 60.0

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rng = rng or random.Random()
        step = self.initial_s
        while True:
            yield rng.uniform(step / 2, step)
            step = min(self.cap_s, step * self.factor)


async def open_link(
    url: str,
    *,
    open_timeout: float = 10.0,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    ssl: ssl_module.SSLContext | None = None,
    subprotocol: str = SUBPROTOCOL,
) -> ClientConnection:
    """Open the OCPP-J WebSocket, insisting on ``subprotocol`` (ocpp1.6, or ocpp2.0.1).

    ``headers``: extra handshake headers (HTTP Basic auth, security profiles 1-2); ``ssl``: the
    TLS context for a wss:// URL (profiles 2-3: the CSMS's CA, the client certificate).
    """
    try:
        ws = await connect(
            url,
            subprotocols=[subprotocol],  # type: ignore[list-item]
            additional_headers=dict(headers) if headers else None,
            logger=_library_log,
            **({"ssl": ssl} if ssl is not None else {}),
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            # A CSMS that does not finish the closing handshake within this is gone anyway;
            # waiting websockets' default 10 s only delays the reconnection.
            close_timeout=5.0,
            max_size=2**20,
            compression=None,
        )
    except InvalidURI as exc:
        raise CsmsError(f"{url}: not a valid WebSocket URL ({exc})") from None
    except InvalidStatus as exc:
        code = exc.response.status_code
        raise HandshakeRefused(
            f"{url}: CSMS refused the WebSocket handshake (HTTP {code})", code
        ) from None
    except InvalidHandshake as exc:
        raise CsmsError(f"{url}: WebSocket handshake failed ({exc})") from None
    except TimeoutError:
        raise CsmsError(f"{url}: no answer within {open_timeout:g} s") from None
    except ssl_module.SSLError as exc:
        why = getattr(exc, "verify_message", None) or exc.reason or exc
        raise TlsFailure(f"{url}: TLS handshake failed ({why})", tls_failure_kind(exc)) from None
    except OSError as exc:
        raise CsmsError(f"{url}: {exc.strerror or exc}") from None
    if ws.subprotocol != subprotocol:
        await ws.close()
        raise CsmsError(f"{url}: CSMS did not agree to the {subprotocol} subprotocol")
    return ws
