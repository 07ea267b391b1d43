"""A server that answers each request with a script of raw bytes: the misbehaving services of the fault tests.

It runs in the test's own process on gevent (the engine's requests run in its native thread, so the hub is free
to serve them). A script is a list of steps, played in order after the request has been read:

* ``bytes``: sent as they are;
* a ``float``: a pause of that many seconds;
* ``RESET``: the connection is reset (RST, SO_LINGER 0) and the script ends;
* ``FOREVER(chunk)``: ``chunk`` is sent again and again until the client goes away.

After the last step the server closes the connection, unless the script ends with ``KEEP``, which waits for
the next request on it. Requests name their script by path: ``GET /<name>``.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.server import StreamServer

RESET = "reset"
KEEP = "keep"


@dataclass(frozen=True)
class FOREVER:  # noqa: N801  (reads as a step in a script)
    chunk: bytes


class RawServer:
    """Scripts by name, served on a loopback port; ``requests[name]`` counts the requests each one received."""

    def __init__(self, scripts: dict[str, list[Any]] | None = None) -> None:
        self.scripts: dict[str, list[Any]] = dict(scripts or {})
        self.requests: Counter[str] = Counter()
        self._server = StreamServer(("127.0.0.1", 0), self._handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> RawServer:
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop(timeout=1)

    def _handle(self, sock: socket.socket, _peer: Any) -> None:
        rfile = sock.makefile("rb")
        try:
            while True:
                name = self._read_request(rfile)
                if name is None:
                    return
                self.requests[name] += 1
                if not self._play(sock, self.scripts[name]):
                    return
        except OSError:
            pass  # the client went away: nothing to clean up but the socket
        finally:
            rfile.close()
            sock.close()

    @staticmethod
    def _read_request(rfile: Any) -> str | None:
        line = rfile.readline(65536)
        if not line:
            return None
        length = 0
        while True:
            header = rfile.readline(65536)
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            rfile.read(length)
        return line.split()[1].decode().lstrip("/")

    @staticmethod
    def _play(sock: socket.socket, script: list[Any]) -> bool:
        """Plays one script; True when the connection stays open for another request."""
        for step in script:
            if isinstance(step, bytes):
                sock.sendall(step)
            elif isinstance(step, float):
                gevent.sleep(step)
            elif isinstance(step, FOREVER):
                while True:
                    sock.sendall(step.chunk)
            elif step == RESET:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
            elif step == KEEP:
                return True
        return False
