"""Who may connect to the built-in central system: TLS and Basic auth for security profiles 1-3.

The options of `hilsim csms` become a TLS context and a password table here, and each handshake
is checked against them; the server only says no with the reason found here.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from hilsim.errors import CsmsError

__all__ = ["credentials_problem", "security_options"]


def security_options(
    cert: Path | None, key: Path | None, client_ca: Path | None, passwords: Sequence[str]
) -> tuple[ssl.SSLContext | None, dict[str, bytes] | None]:
    """`hilsim csms`'s TLS context and Basic auth passwords from its options (CsmsError)."""
    from hilsim.security import password_from_text

    context = None
    if cert is not None or key is not None or client_ca is not None:
        if cert is None or key is None:
            raise CsmsError("--tls-cert and --tls-key go together")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
            if client_ca is not None:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise CsmsError(f"cannot load the TLS certificate, key or CA: {exc}") from None
    table: dict[str, bytes] | None = None
    for entry in passwords:
        charge_point_id, equals, file = entry.partition("=")
        if not equals or not charge_point_id or not file:
            raise CsmsError(f"--password {entry!r}: expected CHARGE_POINT_ID=FILE")
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CsmsError(f"--password {entry}: cannot read {file}: {exc.strerror}") from None
        table = table or {}
        table[charge_point_id] = password_from_text(text)
    return context, table


def credentials_problem(
    ssl_context: ssl.SSLContext | None,
    passwords: Mapping[str, bytes | str] | None,
    connection: ServerConnection,
    request: Request,
    charge_point_id: str,
) -> str | None:
    """Why a handshake's credentials do not let ``charge_point_id`` in (security profiles 2 and 3:
    the client certificate's common name; 1 and 2: the Basic auth password), or None."""
    if ssl_context is not None and ssl_context.verify_mode == ssl.CERT_REQUIRED:
        cert = connection.transport.get_extra_info("peercert") or {}
        names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        if charge_point_id not in names:
            return f"client certificate is for {', '.join(names) or 'nobody'}, not this id"
    if passwords is None:
        return None
    header = request.headers.get("Authorization")
    if header is None:
        return "no Basic auth credentials"
    scheme, _, token = header.partition(" ")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    user, colon, password = decoded.partition(b":")
    if scheme.lower() != "basic" or not colon:
        return "malformed Basic auth credentials"
    if user.decode("utf-8", "replace") != charge_point_id:
        return "Basic auth user name is not the charge point id"
    expected = passwords.get(charge_point_id)
    if expected is None:
        return "unknown charge point"
    wanted = expected.encode("utf-8") if isinstance(expected, str) else expected
    if not hmac.compare_digest(password, wanted):
        return "wrong password"
    return None
