"""A small TCP fault proxy: the roles reach MariaDB (or anything) through it, and a test cuts it.

`cut()` drops every open connection and refuses new ones (the server is "unreachable": a network
partition or a restart, as the clients see it) until `restore()`; the server itself never stops.
"""

from __future__ import annotations

import socket
import threading

from sqlalchemy.engine import make_url


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1", port: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self.refused = 0  # connections refused while cut
        self.url: str | None = None  # for_database: the database URL through this proxy
        self._stopping = False
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    @classmethod
    def for_database(cls, database_url: str) -> FaultProxy:
        """A proxy in front of the database server of `database_url`; `url` reaches it through the proxy."""
        url = make_url(database_url)
        proxy = cls(url.host, url.port or 3306)
        proxy.url = url.set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)
        return proxy

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:
                    self.refused += 1
                    client.close()  # the client sees its connection closed at once
                    continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                self._close(s)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            doomed = list(self._open)
        for sock in doomed:
            self._close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def stop(self) -> None:
        self._stopping = True
        self.cut()
        self._listener.close()
