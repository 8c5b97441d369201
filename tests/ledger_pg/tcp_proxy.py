"""A loopback TCP proxy that can cut every connection and refuse new ones, then serve again."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """127.0.0.1:<port> -> target. While down, connections are accepted and closed at once, so a
    client sees the server vanish (`server closed the connection unexpectedly`). While hung,
    they are accepted and never answered, like a host that stopped responding."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._serving = True
        self._hung = False
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self.connections = 0  # accepted while up
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def down(self) -> None:
        with self._lock:
            self._serving = False
            socks, self._socks = self._socks, set()
        for s in socks:
            _kill(s)

    def up(self) -> None:
        with self._lock:
            self._serving, self._hung = True, False
            socks, self._socks = self._socks, set()
        for s in socks:  # the silent ones, if it was hung
            _kill(s)

    def hang(self) -> None:
        self.down()
        with self._lock:
            self._hung = True

    def close(self) -> None:
        self.down()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._hung:  # hold it open, say nothing
                    self._socks.add(client)
                    continue
            if not self._serving:
                _kill(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _kill(client)
                continue
            for s in (client, upstream):  # no Nagle delay: the driver pipelines small messages
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if not self._serving:  # went down while we connected
                    _kill(client)
                    _kill(upstream)
                    continue
                self._socks.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._socks.discard(src)
                self._socks.discard(dst)
            _kill(src)
            _kill(dst)


def _kill(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
