"""The C HTTP/1.1 test server of locust-c, for tests and benchmarks.

Run it from a shell::

    python -m locust_c.testserver --host 127.0.0.1 --port 8089

or from Python, in a subprocess that is always cleaned up::

    with TestServer() as server:
        ...  # aim a load test at server.url
        print(server.stats()["requests"])

The server itself (``locust_c._testserver``, csrc/testserver.c) is a single-threaded libuv loop that answers
HTTP/1.1 with keep-alive and pipelining. Every response carries ``X-Connection-Id``, a number unique to the TCP
connection. Routes (any method; HEAD gets the headers only):

==============================  ==========================================================================
``/``                           200 "ok"
``/delay/<ms>``                 200 "ok" after <ms> milliseconds
``/status/<code>``              that status (200..599)
``/bytes/<n>``                  n bytes of "x" (up to 64 MiB), application/octet-stream
``/echo``, ``/echo/<any>``      JSON: method, path, query, headers, cookies, body, body_length, connection_id
``/redirect/<n>``               302 to /redirect/<n-1>; /redirect/0 is 200 "redirected"
``/absolute-redirect/<n>``      the same with an absolute http://host:port Location
``/cookies/set?a=1&b=2``        one ``Set-Cookie: name=value; Path=/`` per pair
``/cookies``                    JSON of the cookies received
``/basic-auth/<user>/<pass>``   200 with the right Basic credentials, else 401 with WWW-Authenticate
``/chunked/<n>``                n chunks "chunk<i>\\n" with Transfer-Encoding: chunked
``/json``                       {"ok": true, "items": [1, 2, 3]}
``/headers/<name>/<value>``     200 with that response header (value percent-decoded)
``/fault/reset``                the connection is reset (RST), no answer
``/fault/close-mid-body``       Content-Length: 1000, 10 bytes, then close
``/fault/never``                no answer, ever; the connection stays open until the client closes it
``/fault/garbage``              "GARBAGE NOT HTTP\\r\\n\\r\\n", then close
``/fault/empty``                close without a byte
``/__stats``                    JSON counters (see ``TestServer.stats()``); not counted themselves
``/__stats/reset``              zero the counters; peaks restart from the current values
==============================  ==========================================================================

``--stall-every S --stall-for MS`` (``TestServer(stall_every=S, stall_for_ms=MS)``) makes the whole server stall for
the last MS milliseconds of every S seconds: a request that arrives during a stall waits for its end.

Malformed requests get 400 and a close; a header block over 64 KiB gets 431, a body over 16 MiB 413.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

READY_PREFIX = "locust-c test server listening on "
"""The start of the line printed once the server accepts connections; the URL follows it."""

_STOP_TIMEOUT = 5.0


def _native_start_new_thread() -> Callable[..., int]:
    """Return a ``start_new_thread`` that makes an OS thread even when gevent has patched ``_thread``.

    Importing ``locust_c`` imports Locust, which monkey-patches with gevent: a patched thread is a greenlet and
    would never run while ``serve()`` blocks the main thread in C.
    """
    if "gevent.monkey" in sys.modules:
        from gevent import monkey

        return monkey.get_original("_thread", "start_new_thread")  # type: ignore[no-any-return]
    import _thread

    return _thread.start_new_thread


def _format_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _exit_on_stdin_eof() -> None:
    """SIGTERM this process once standard input reaches EOF.

    TestServer gives the server a pipe as stdin and never writes to it: EOF means the parent is gone, even if
    it was killed without a chance to stop the server, and the server then stops cleanly instead of lingering.
    """
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        return
    os.kill(os.getpid(), signal.SIGTERM)


def serve(host: str = "127.0.0.1", port: int = 0, exit_on_stdin_eof: bool = False, stall_every: float = 0.0,
          stall_for_ms: int = 0) -> None:
    """Run the server in this thread until SIGINT or SIGTERM, printing the ready line once it is bound.

    ``stall_every`` seconds (0: never), the server stalls for its last ``stall_for_ms`` milliseconds: a request
    that arrives then (``/__stats`` too) waits for the stall's end, as behind a garbage collector's pause or a
    blocked event loop. The first stall ends the first period after the start."""
    from locust_c._testserver import serve as c_serve

    read_fd, write_fd = os.pipe()

    def announce() -> None:
        # serve() writes the bound port, then a newline, to write_fd; EOF means it failed before binding.
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = os.read(read_fd, 64)
                if not chunk:
                    return
                data += chunk
            print(READY_PREFIX + _format_url(host, int(data)), flush=True)
        finally:
            os.close(read_fd)

    start_new_thread = _native_start_new_thread()
    start_new_thread(announce, ())
    if exit_on_stdin_eof:
        start_new_thread(_exit_on_stdin_eof, ())
    try:
        c_serve(host, port, write_fd, round(stall_every * 1000), stall_for_ms)
    finally:
        os.close(write_fd)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m locust_c.testserver [--host HOST] [--port PORT]``."""
    parser = argparse.ArgumentParser(prog="python -m locust_c.testserver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)")
    parser.add_argument("--stall-every", type=float, default=0.0, metavar="S",
                        help="stall the whole server once every S seconds (default: never)")
    parser.add_argument("--stall-for", type=int, default=0, metavar="MS",
                        help="for the last MS milliseconds of each period: requests wait for its end")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="stop when standard input is closed (TestServer uses it so the server dies with it)")
    args = parser.parse_args(argv)
    if bool(args.stall_every) != bool(args.stall_for) or not 0 <= args.stall_for <= args.stall_every * 1000:
        parser.error("--stall-every S and --stall-for MS go together, the stall no longer than its period")
    try:
        serve(args.host, args.port, args.exit_on_stdin_eof, args.stall_every, args.stall_for)
    except OSError as exc:
        print(f"locust-c test server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _http_get(host: str, port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """One GET on a fresh connection with a plain socket; returns (status, body).

    A plain socket rather than urllib or requests: tests run under gevent monkey-patching and a proxy setting
    or a patched pool must not get in the way of looking at the server.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("ascii"))
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"incomplete response to GET {path}: {raw[:200]!r}")
    status_line = head.split(b"\r\n", 1)[0].split()
    return int(status_line[1]), body


def _terminate(proc: subprocess.Popen[bytes]) -> int:
    """Stop the server process: SIGTERM, then SIGKILL if it has not exited after a few seconds.

    Returns its exit code (0 after a clean stop, negative for a signal).
    """
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    return proc.wait()


class TestServer:
    """The C test server in a subprocess, as a context manager.

    ``TestServer(port=0)`` picks a free port; ``cpu=N`` pins the server to that CPU (with ``taskset`` when it
    is installed) so a benchmark can keep the load generator off the server's core. The process is stopped by
    ``stop()``, by leaving the ``with`` block, or at the latest when the object is garbage-collected or the
    interpreter exits.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, host: str = "127.0.0.1", port: int = 0, cpu: int | None = None,
                 ready_timeout: float = 30.0, stall_every: float = 0.0, stall_for_ms: int = 0) -> None:
        self.host = host
        self.stall_every = stall_every
        self.stall_for_ms = stall_for_ms
        self.port = port
        self.cpu = cpu
        self.ready_timeout = ready_timeout
        self.returncode: int | None = None
        """The server's exit code once stopped: 0 for a clean stop."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``."""
        return _format_url(self.host, self.port)

    @property
    def pid(self) -> int | None:
        """The server's process id, or None when it is not running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> TestServer:
        """Start the server and wait until it accepts connections; returns self."""
        if self._proc is not None:
            raise RuntimeError("TestServer already started")
        cmd = [sys.executable, "-m", "locust_c.testserver", "--host", self.host, "--port", str(self.port),
               "--exit-on-stdin-eof"]
        if self.stall_every:
            cmd += ["--stall-every", f"{self.stall_every:g}", "--stall-for", str(self.stall_for_ms)]
        taskset = shutil.which("taskset") if self.cpu is not None else None
        if taskset is not None:
            cmd = [taskset, "-c", str(self.cpu), *cmd]
        # The child must import this very locust_c even when it is not installed and the cwd is elsewhere.
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        # stdin is a pipe that is never written: the server stops by itself when it closes (see
        # _exit_on_stdin_eof), so even a SIGKILLed test run leaves no server behind.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._proc = proc
        self._finalizer = weakref.finalize(self, _terminate, proc)
        try:
            if self.cpu is not None and taskset is None:
                os.sched_setaffinity(proc.pid, {self.cpu})
            self.port = self._wait_ready(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> int:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.ready_timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"test server not ready after {self.ready_timeout} s")
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                code = proc.wait()
                raise RuntimeError(f"test server exited with code {code} before it was ready (see its stderr)")
            line += chunk
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith(READY_PREFIX):
            raise RuntimeError(f"unexpected first line from the test server: {text!r}")
        return int(text.rsplit(":", 1)[1])

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 5 s). Safe to call more than once."""
        if self._finalizer is not None:
            # Runs _terminate once, and detaches it from garbage collection and interpreter exit.
            self.returncode = self._finalizer()
            self._finalizer = None
        self._proc = None

    def stats(self, timeout: float = 10.0) -> dict[str, int]:
        """The server's counters (``GET /__stats``): requests, open_requests, peak_open_requests,
        connections_total, connections_open, peak_connections_open."""
        return self._get_json("/__stats", timeout)

    def reset_stats(self, timeout: float = 10.0) -> dict[str, int]:
        """Zero the counters and restart the peaks from the current values; returns the stats after it."""
        return self._get_json("/__stats/reset", timeout)

    def _get_json(self, path: str, timeout: float) -> dict[str, Any]:
        if self._proc is None:
            raise RuntimeError("TestServer is not running")
        status, body = _http_get(self.host, self.port, path, timeout)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        result: dict[str, Any] = json.loads(body)
        return result

    def __enter__(self) -> TestServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.pid is not None else "stopped"
        return f"<TestServer {self.url} {state}>"


if __name__ == "__main__":
    sys.exit(main())
