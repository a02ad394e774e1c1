"""The control socket behind `hilsim ctl`: one JSON request per line, one JSON answer per line.

A Unix socket rather than TCP so that only local users with file permission can press virtual
buttons on a headless Pi. Commands inject exactly the events a physical button would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hilsim.errors import ControlError

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

MAX_REQUEST = 64 * 1024


class ControlServer:
    """Serves requests on a Unix socket; a stale socket left by a crash is replaced."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ControlError(f"{self.path.parent}: cannot create ({exc.strerror})") from None
        if self.path.exists() or self.path.is_symlink():
            if _someone_listening(self.path):
                raise ControlError(f"{self.path}: another hilsim is already running here")
            log.info("removing stale control socket %s", self.path)
            self.path.unlink()
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        except OSError as exc:
            raise ControlError(f"{self.path}: cannot listen ({exc.strerror})") from None
        os.chmod(self.path, 0o660)
        log.info("control socket %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await self._answer(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": "request must be an object with a 'cmd' string"}
        try:
            return await self.handler(request)
        except Exception as exc:
            log.exception("control command %s failed", request.get("cmd"))
            return {"ok": False, "error": f"internal error: {exc}"}


def _someone_listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        return False
    else:
        return True
    finally:
        probe.close()


async def request(
    path: Path, payload: dict[str, Any], timeout: float = 10.0, *, service: str = "hilsim"
) -> dict[str, Any]:
    """Send one request to a running service (named ``service`` in errors); return its answer."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError(f"{service} is not running (no service listening on {path})") from None
    except PermissionError:
        raise ControlError(f"{path}: permission denied (are you in the hilsim group?)") from None
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    try:
        writer.write(json.dumps(payload).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not line:
        raise ControlError(f"{path}: the service closed the connection without answering")
    answer: dict[str, Any] = json.loads(line)
    return answer
