"""Outbound HTTP for media and Label Studio calls: a total wall-clock deadline per call, and no
connection to link-local or cloud-metadata addresses unless the operator names the host.

requests' ``timeout`` bounds each socket operation only: a server sending one byte every half second
keeps a download (or its headers) going for as long as it likes. Here every socket a call opens or
reuses is registered with the deadlines active in the calling thread; when one passes, a timer shuts
those sockets down, which wakes the blocked read with an error at once.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

# link-local (where clouds serve instance metadata and credentials) and the metadata addresses outside it
REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "::ffff:169.254.0.0/112")
)

_active = threading.local()


class RefusedAddress(ValueError):
    """A connection to a link-local or metadata address that the operator did not allow."""


def refused_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in network for network in REFUSED_NETWORKS)


class Deadline:
    """``with Deadline(seconds):`` every outbound socket of this thread is shut down when it passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._ends = 0.0

    def remaining(self) -> float:
        return max(0.0, self._ends - time.monotonic())

    def __enter__(self) -> Deadline:
        self._ends = time.monotonic() + self.seconds
        _scopes().append(self)
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._timer.cancel()
        _scopes().remove(self)
        with self._lock:
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)


def _scopes() -> list[Deadline]:
    scopes = getattr(_active, "scopes", None)
    if scopes is None:
        scopes = _active.scopes = []
    return scopes


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _watched(sock: Any) -> None:
    for scope in _scopes():
        scope.watch(sock)


def _guarded_connection(base: Any, allowed_hosts: frozenset[str]) -> Any:
    class Guarded(base):  # type: ignore[misc, valid-type]
        def _refuse(self, address: str) -> None:
            if refused_address(address) and (self.host or "").lower().strip("[]") not in allowed_hosts:
                raise RefusedAddress(
                    f"{self.host} is a link-local or cloud-metadata address ({address}): refused "
                    "(name the host in MEDIA_ALLOWED_HOSTS to allow it)"
                )

        def _new_conn(self) -> socket.socket:
            try:  # before any packet goes out ...
                for *_, address in socket.getaddrinfo(self._dns_host, self.port, type=socket.SOCK_STREAM):
                    self._refuse(str(address[0]))
            except socket.gaierror:
                pass  # the connect below reports it
            sock = super()._new_conn()
            try:  # ... and the address connected to, should the name resolve elsewhere the second time
                self._refuse(sock.getpeername()[0])
            except RefusedAddress:
                sock.close()
                raise
            _watched(sock)  # the TLS handshake and the first request
            return sock

        def getresponse(self) -> Any:
            _watched(self.sock)  # a kept-alive connection reused by this call
            return super().getresponse()

    return Guarded


def guarded_session(allowed_hosts: Iterable[str] = ()) -> requests.Session:
    """A requests session whose sockets obey :class:`Deadline` and refuse metadata addresses (hosts in
    ``allowed_hosts`` excepted). It ignores proxy settings from the environment."""
    import requests
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    allowed = frozenset(h.lower() for h in allowed_hosts)

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = _guarded_connection(HTTPConnection, allowed)

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _guarded_connection(HTTPSConnection, allowed)

    class Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", Adapter())
    session.mount("https://", Adapter())
    return session
