"""Moving files for UpdateFirmware and GetDiagnostics: HTTP(S) and FTP, blocking, bounded.

Kept apart from `hilsim.firmware` so that urllib, ftplib and friends load only when the CSMS
actually asks for a transfer, not at every start of a Pi Zero. Run these in a worker thread.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

#: Firmware images larger than this are refused (the Pi's SD card is small).
MAX_IMAGE_BYTES = 64 * 1024 * 1024
NETWORK_TIMEOUT_S = 30.0


class TransferError(Exception):
    """One download or upload attempt failed; the message says why."""


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))


def download(location: str, target: Path, ca_file: Path | None = None) -> int:
    """Fetch ``location`` into ``target``; returns its size. TransferError on any failure."""
    parts = urlsplit(location)
    with _as_transfer_errors():
        if parts.scheme in ("http", "https"):
            context = _ssl_context(ca_file) if parts.scheme == "https" else None
            with (
                urllib.request.urlopen(location, timeout=NETWORK_TIMEOUT_S, context=context) as r,
                target.open("wb") as out,
            ):
                bounded = _Bounded(out)
                while chunk := r.read(65536):
                    bounded.write(chunk)
                return bounded.size
        if parts.scheme == "ftp":
            with _ftp(location) as (ftp, path), target.open("wb") as out:
                bounded = _Bounded(out)
                ftp.retrbinary(f"RETR {path}", bounded.write)
                return bounded.size
    raise _unsupported(parts.scheme)


class _Bounded:
    """Writes chunks to ``out`` until an image would exceed MAX_IMAGE_BYTES (TransferError)."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_IMAGE_BYTES:
            raise TransferError(f"larger than {MAX_IMAGE_BYTES} bytes")
        self.out.write(chunk)


@contextlib.contextmanager
def _as_transfer_errors() -> Iterator[None]:
    """What urllib and ftplib raise, as one TransferError line a person can act on."""
    try:
        yield
    except urllib.error.HTTPError as exc:
        raise TransferError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise TransferError(str(exc.reason)) from None
    except ftplib.all_errors as exc:
        raise TransferError(f"FTP: {exc}") from None


def _unsupported(scheme: str) -> TransferError:
    return TransferError(f"unsupported location scheme {scheme!r} (http, https or ftp)")


@contextlib.contextmanager
def _ftp(location: str) -> Iterator[tuple[ftplib.FTP, str]]:
    parts = urlsplit(location)
    ftp = ftplib.FTP(timeout=NETWORK_TIMEOUT_S)
    try:
        ftp.connect(parts.hostname or "", parts.port or 21)
        ftp.login(unquote(parts.username or "anonymous"), unquote(parts.password or ""))
        yield ftp, unquote(parts.path) or "/"
    finally:
        with contextlib.suppress(Exception):
            ftp.quit()
        ftp.close()


def upload(location: str, name: str, data: bytes, ca_file: Path | None = None) -> str:
    """Send ``data`` as ``name`` to ``location``; returns how. TransferError on failure."""
    parts = urlsplit(location)
    url = location + name if parts.path.endswith("/") or not parts.path else location
    with _as_transfer_errors():
        if parts.scheme in ("http", "https"):
            context = _ssl_context(ca_file) if parts.scheme == "https" else None
            try:
                _http_send(url, "PUT", data, "application/gzip", context)
                return "PUT"
            except urllib.error.HTTPError as exc:
                if exc.code not in (405, 501):
                    raise
            boundary = uuid.uuid4().hex
            body = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="{name}"\r\nContent-Type: application/gzip\r\n\r\n'
                ).encode()
                + data
                + f"\r\n--{boundary}--\r\n".encode()
            )
            _http_send(location, "POST", body, f"multipart/form-data; boundary={boundary}", context)
            return "POST"
        if parts.scheme == "ftp":
            with _ftp(location) as (ftp, path):
                target = path + name if path.endswith("/") else path
                ftp.storbinary(f"STOR {target}", io.BytesIO(data))
            return "FTP STOR"
    raise _unsupported(parts.scheme)


def _http_send(
    url: str, method: str, body: bytes, content_type: str, context: ssl.SSLContext | None
) -> None:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=NETWORK_TIMEOUT_S, context=context) as r:
        r.read()
