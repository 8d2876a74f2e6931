"""A TCP forwarder on 127.0.0.1 that can be cut and restored: one host's own way to the
remote's sshd, so a test can partition that host alone. Cutting closes the listener and
every connection through it (ssh's shared connection too); restoring listens again on the
same port."""

from __future__ import annotations

import socket
import threading

from sshd import free_port


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def start(self) -> Proxy:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, set()
            ls, self._listener = self._listener, None
        for s in [*socks, *([ls] if ls else [])]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not ls:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._socks |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            self._socks.discard(src)
        src.close()  # the other direction's thread closes dst, its own src
