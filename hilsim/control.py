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
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hilsim.errors import ConfigError, ControlError

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

MAX_REQUEST = 64 * 1024

#: sun_path is 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107

#: The config key every start-up failure of the control socket names.
KEY = "control.socket"


def check_socket_path(path: Path, source: str, *, database: Path | None = None) -> None:
    """Refuse a `[control] socket` no retry can make work, before the service touches anything.

    Too long for a Unix socket, or an existing path that is not a socket (the database, the
    config file, a directory): that is a typo in the config, never a stale socket to remove.
    `database`: the `[storage] database`, whose files the socket must not be even before they
    exist (on a first start).
    """
    if database is not None:
        own = {database.name + suffix for suffix in ("", "-wal", "-shm", ".lock")}
        if path.parent.absolute() == database.parent.absolute() and path.name in own:
            raise ConfigError(source, KEY, f"{path} is a file of [storage] database {database}")
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise ConfigError(
            source, KEY, f"{path} is {size} bytes; a Unix socket path has at most {MAX_SOCKET_PATH}"
        )
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError as exc:  # what ControlServer.start's mkdir would run into
        raise ConfigError(
            source, KEY, f"cannot create directory {path.parent} ({exc.strerror})"
        ) from None
    except OSError as exc:
        raise ConfigError(source, KEY, f"{path}: cannot check it ({exc.strerror})") from None
    if not stat.S_ISSOCK(mode):
        raise ConfigError(
            source,
            KEY,
            f"{path} exists and is not a socket ({stat.filemode(mode)}); hilsim only ever "
            "replaces a stale socket, so choose a path of its own",
        )


class ControlServer:
    """Serves requests on a Unix socket; a stale socket left by a crash is replaced."""

    def __init__(self, path: Path, handler: Handler, source: str = "") -> None:
        """`source`: the config file whose `[control] socket` this is, for its error messages."""
        self.path = Path(path)
        self.handler = handler
        self.source = source or str(self.path)
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen; every failure is a ConfigError (exit 2): restarting would only fail again."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                self.source, KEY, f"cannot create directory {self.path.parent} ({exc.strerror})"
            ) from None
        check_socket_path(self.path, self.source)
        if self.path.is_socket():  # lstat is not needed: check_socket_path refused a symlink
            if _someone_listening(self.path):
                raise ConfigError(
                    self.source, KEY, f"{self.path}: another hilsim is already running here"
                )
            log.info("removing stale control socket %s", self.path)
            self.path.unlink()
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        except OSError as exc:
            raise ConfigError(
                self.source, KEY, f"{self.path}: cannot listen ({exc.strerror})"
            ) from None
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
