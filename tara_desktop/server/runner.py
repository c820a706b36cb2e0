"""Running the API: uvicorn on a socket bound here, in a background thread, stoppable.

The same :class:`ApiServer` runs behind ``tara serve`` and the Settings page switch. The socket is bound
before uvicorn starts, so a port in use is a clear error at once and ``port=0`` picks a free port.
Binding to anything but loopback needs ``allow_remote=True`` and logs a warning.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from tara_desktop.errors import TaraError
from tara_desktop.server.log import RequestLog

if TYPE_CHECKING:
    from collections.abc import Callable

    import uvicorn

    from tara_desktop.assistant import Assistant
    from tara_desktop.jobs import JobState
    from tara_desktop.server.app import Limits

log = logging.getLogger("tara_desktop.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
PORT_KEY = "server.port"  # the port the Settings page last used (profile setting)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_warning(host: str) -> str:
    return (f"warning: serving on {host}, which is reachable from other computers; anyone who has the token "
            "can use TARA's models and, where allowed, its history. Prefer 127.0.0.1.")


def check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise TaraError(f"port {port!r} is not a port number; choose one between 1024 and 65535 (0: any free port)")
    return port


class ApiServer:
    """The OpenAI-compatible API for one assistant, served from a background thread.

    ``start()`` binds and serves; ``stop()`` cancels running turns and stops (it is also the context
    manager's exit). ``token_hook`` is passed to :class:`~tara_desktop.server.app.ApiService` (tests).
    """

    def __init__(
        self,
        assistant: Assistant,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        allow_remote: bool = False,
        limits: Limits | None = None,
        request_log: RequestLog | None = None,
        token_hook: Callable[[int, JobState], None] | None = None,
    ) -> None:
        from tara_desktop.server.app import ApiService, build_app
        from tara_desktop.server.token import api_token

        if not is_loopback(host) and not allow_remote:
            raise TaraError(f"{host} is not a loopback address; TARA serves only this computer unless you add "
                            "--allow-remote (and then anyone on the network with the token can use it)")
        self.host = host
        self.requested_port = check_port(port)
        self.service = ApiService(assistant, api_token(assistant.profile.store), limits=limits,
                                  request_log=request_log, token_hook=token_hook)
        self.app = build_app(self.service)
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.error: str | None = None

    @property
    def token(self) -> str:
        return self.service.token

    @property
    def log(self) -> RequestLog:
        return self.service.log

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError as exc:
            sock.close()
            reason = "it is in use by another program" if exc.errno in (98, 10048) else exc.strerror
            raise TaraError(f"cannot serve on {self.host}:{self.requested_port}: {reason}; "
                            "choose another port with --port") from None
        sock.listen(64)
        sock.setblocking(False)
        return sock

    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve in a daemon thread; returns once uvicorn accepts connections."""
        import uvicorn

        if self.running:
            return
        if not is_loopback(self.host):
            log.warning("%s", remote_warning(self.host))
        sock = self._bind()
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,  # the request log (content-free) is ours
            lifespan="off",
            timeout_graceful_shutdown=3,
            server_header=False,
            date_header=True,
        )
        server = uvicorn.Server(config)
        self._server = server

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by start()/status, never a traceback
                self.error = f"{exc.__class__.__name__}: {exc}"
                log.error("the API server stopped: %s", exc.__class__.__name__)

        self._thread = threading.Thread(target=run, name="tara-api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            self.stop()
            raise TaraError(f"the API server did not start ({self.error or 'timed out'})")
        log.info("serving the OpenAI-compatible API on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel running turns, stop serving and wait for the thread (at most ``timeout`` s)."""
        self.service.cancel_all()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        self._server = None

    def wait(self, timeout: float | None = None) -> None:
        """Block until the server thread ends (``tara serve`` waits here until Ctrl+C)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
