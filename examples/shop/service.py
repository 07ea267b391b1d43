"""A small "shop" HTTP service that misbehaves on purpose, to demonstrate the locust-c performance gate.

Standard library only. Run it with ``python examples/shop/service.py --port 8080``.

Endpoints:
    GET  /api/products        fast
    GET  /api/products/<id>   fast; 404 for an unknown id
    POST /api/orders          slow (sleeps --order-min-ms..--order-max-ms) and fails with 500 now and then
    GET  /api/search          usually fast, with a slow tail
    GET  /health/ready        {"status": "starting"} for the first --warmup seconds, then {"status": "ready"}

With ``--leak-kb-per-request N`` every request keeps N KB in a list that is never emptied, for the leak hunter demo.
With ``--stall-every S --stall-for MS`` the whole shop stalls for the last MS milliseconds of every S seconds (as the
C test server does): a request that arrives then waits for the stall's end, for the open-model demo.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PRODUCTS = [{"id": i, "name": f"product {i}", "price": round(1.5 * i, 2)} for i in range(1, 21)]


class ShopHandler(BaseHTTPRequestHandler):
    """Routes the shop's requests; its knobs live on the server object."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: without this a keep-alive client waits
    server: ShopServer

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: a load test makes thousands of requests."""

    def send_json(self, status: int, body: object) -> None:
        """Send ``body`` as a JSON answer with the given status."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Serve products, search and readiness."""
        self.server.on_request()
        path = self.path.split("?", 1)[0]
        if path == "/api/products":
            self.send_json(200, PRODUCTS)
        elif path.startswith("/api/products/"):
            item = path.rsplit("/", 1)[1]
            product = next((p for p in PRODUCTS if str(p["id"]) == item), None)
            self.send_json(200, product) if product else self.send_json(404, {"error": "no such product"})
        elif path == "/api/search":
            if random.random() < self.server.search_tail_ratio:
                time.sleep(self.server.search_tail_ms / 1000)
            self.send_json(200, PRODUCTS[:5])
        elif path == "/health/ready":
            ready = time.monotonic() - self.server.started >= self.server.warmup
            self.send_json(200, {"status": "ready" if ready else "starting"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        """Take an order, slowly, failing now and then."""
        self.server.on_request()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?", 1)[0] != "/api/orders":
            self.send_json(404, {"error": "not found"})
            return
        time.sleep(random.uniform(self.server.order_min_ms, self.server.order_max_ms) / 1000)
        if random.random() < self.server.order_error_ratio:
            self.send_json(500, {"error": "payment backend unavailable"})
        else:
            self.send_json(201, {"order": random.randrange(1_000_000), "status": "accepted"})


class ShopServer(ThreadingHTTPServer):
    """The HTTP server plus the misbehaviour knobs the handler reads."""

    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections when many users start at once

    def __init__(self, address: tuple[str, int], options: argparse.Namespace) -> None:
        super().__init__(address, ShopHandler)
        self.started = time.monotonic()
        self.warmup = options.warmup
        self.order_min_ms, self.order_max_ms = options.order_min_ms, options.order_max_ms
        self.order_error_ratio = options.order_error_ratio
        self.search_tail_ratio, self.search_tail_ms = options.search_tail_ratio, options.search_tail_ms
        self.leak_bytes = int(options.leak_kb_per_request * 1024)
        self.stall_every, self.stall_for = options.stall_every, options.stall_for / 1000
        self.leaked: list[bytes] = []  # appended to from the handler threads; list.append is atomic

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer (the end of a load test) is no error worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def on_request(self) -> None:
        """Wait out a stall, and keep ``--leak-kb-per-request`` KB forever (written to, so the pages really are
        resident)."""
        if self.stall_every:
            phase = (time.monotonic() - self.started) % self.stall_every
            if phase >= self.stall_every - self.stall_for:
                time.sleep(self.stall_every - phase)
        if self.leak_bytes:
            self.leaked.append(b"L" * self.leak_bytes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The service's command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 picks a free one)")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds /health/ready says 'starting' (default 0)")
    parser.add_argument("--order-min-ms", type=float, default=50, help="shortest POST /api/orders (default 50)")
    parser.add_argument("--order-max-ms", type=float, default=150, help="longest POST /api/orders (default 150)")
    parser.add_argument(
        "--order-error-ratio", type=float, default=0.02, help="share of orders answered 500 (default 0.02)"
    )
    parser.add_argument(
        "--search-tail-ratio", type=float, default=0.1, help="share of searches that are slow (default 0.1)"
    )
    parser.add_argument("--search-tail-ms", type=float, default=300, help="how slow they are (default 300)")
    parser.add_argument(
        "--leak-kb-per-request", type=float, default=0, help="KB kept forever per request (default 0: no leak)"
    )
    parser.add_argument("--stall-every", type=float, default=0.0, metavar="S",
                        help="stall the whole shop once every S seconds (default: never)")
    parser.add_argument("--stall-for", type=float, default=0.0, metavar="MS",
                        help="for the last MS milliseconds of each period: requests wait for its end")
    options = parser.parse_args(argv)
    if bool(options.stall_every) != bool(options.stall_for) or \
            not 0 <= options.stall_for <= options.stall_every * 1000:
        parser.error("--stall-every S and --stall-for MS go together, the stall no longer than its period")
    return options


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted; prints the address it listens on once it does."""
    options = parse_args(argv)
    with ShopServer((options.host, options.port), options) as server:
        host, port = server.server_address[:2]
        print(f"shop listening on http://{host}:{port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
