"""A real HTTP server on 127.0.0.1 for firmware downloads and diagnostics uploads.

`http.server` in a thread: it serves the bytes put in `files`, records every request, takes
PUT and POST uploads, and can be told to answer a path with an error (`fail`) or to refuse PUT
on it (`no_put`, 405) the way servers that only take form uploads do.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Upload:
    method: str
    path: str
    content_type: str
    body: bytes


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    no_put: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FileServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _record(self) -> int | None:
                owner.requests.append((self.command, self.path))
                return owner.fail.get(self.path)

            def do_GET(self) -> None:
                code = self._record()
                data = owner.files.get(self.path)
                if code is not None or data is None:
                    self.send_error(code or 404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _upload(self) -> None:
                code = self._record()
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                prefix = self.path.rsplit("/", 1)[0] + "/"
                if self.command == "PUT" and (self.path in owner.no_put or prefix in owner.no_put):
                    self.send_error(405)
                    return
                if code is not None:
                    self.send_error(code)
                    return
                owner.uploads.append(
                    Upload(self.command, self.path, self.headers.get("Content-Type", ""), body)
                )
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = _upload
            do_POST = _upload

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for as long as the block runs.

    The socket stays bound but never listens: a connection gets ECONNREFUSED at once, and
    because the port stays taken the kernel can neither give it to another server nor pick it
    as a client's own source port (a TCP self-connect to a free ephemeral port "succeeds" and
    then hangs on its own request, a rare flake a released port allowed).
    """
    with contextlib.closing(socket.socket()) as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


class FtpServer:
    """A real FTP server (pyftpdlib) on 127.0.0.1, user ``cp`` / ``secret``, home ``root``."""

    user = "cp"
    password = "secret"

    def __init__(self, root: Any) -> None:
        self.root = root
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.port = 0

    def __enter__(self) -> FtpServer:
        with warnings.catch_warnings():
            # On Python 3.11 pyftpdlib still imports asyncore, which warns that it is deprecated.
            warnings.simplefilter("ignore", DeprecationWarning)
            from pyftpdlib.authorizers import DummyAuthorizer
            from pyftpdlib.handlers import FTPHandler
            from pyftpdlib.servers import FTPServer

        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self.password, str(self.root), perm="elradfmw")
        handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
        server = FTPServer(("127.0.0.1", 0), handler)
        self.port = server.address[1]

        def run() -> None:
            # The loop runs and closes in this one thread (pyftpdlib is not thread-safe).
            try:
                while not self._stop.is_set():
                    server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
            finally:
                server.close_all()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"ftp://{self.user}:{self.password}@127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(5)
