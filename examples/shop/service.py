"""A small "shop" HTTP service that misbehaves on purpose, to demonstrate the locust-c performance gate.

Standard library only. Run it with ``python examples/shop/service.py --port 8080``.

Endpoints:
    GET  /api/products        fast
    GET  /api/products/<id>   fast; 404 for an unknown id
    GET  /api/search          fast, with a slow tail when --search-tail-ratio is set
    POST /api/login           {"user": NAME}: sets the ``session`` cookie (one session per user name)
    GET  /api/cart            the session's cart; 401 without a session
    POST /api/cart            {"product": ID, "quantity": N} into the session's cart; 401 without a session
    POST /api/orders          checkout: the session's cart (or the body's product without a session); slow
                              (--order-min-ms..--order-max-ms); answers {"order_id": N, ...}
    GET  /health/ready        {"status": "starting"} for the first --warmup seconds, then {"status": "ready"}

Every request does 2-6 ms of work (--work-min-ms, --work-max-ms), as a service with a database does: its
latencies are those of a real service, not of a loopback echo, and they vary little from run to run. With its
defaults the shop is healthy: the performance lab's clean run passes ``examples/slas.yml``. Each of its
misbehaviours is a switch, off by default, and each is caught by a gate:

    --search-tail-ratio R      a share R of searches takes --search-tail-ms (SLA: p95 of GET /api/search)
    --order-min-ms/-max-ms     slow checkouts (SLA: p95 of POST /api/orders)
    --order-error-ratio R      a share R of checkouts answers 500 (SLA: error_rate of POST /api/orders)
    --order-no-id-ratio R      a share R of checkouts answers 200 without an order_id, which only a locustfile
                               that reads the answer sees (catch_response; SLA: error_rate of POST /api/orders)
    --stall-every S --stall-for MS
                               the whole shop stalls for the last MS milliseconds of every S seconds (as the C test
                               server does): a request that arrives then waits for its end (SLA: p99 everywhere)
    --leak-kb-per-request N    every request keeps N KB in a list never emptied (the leak hunter)
    --warmup S                 /health/ready says "starting" for S seconds (the readiness gate)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import threading
import time
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PRODUCTS = [{"id": i, "name": f"product {i}", "price": round(1.5 * i, 2)} for i in range(1, 21)]
MAX_SESSIONS = 1000  # the oldest session is forgotten beyond this: a long run must not look like a leak
MAX_CART_ITEMS = 100


class ShopHandler(BaseHTTPRequestHandler):
    """Routes the shop's requests; its knobs live on the server object."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: without this a keep-alive client waits
    server: ShopServer

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: a load test makes thousands of requests."""

    def send_json(self, status: int, body: object, cookie: str | None = None) -> None:
        """Send ``body`` as a JSON answer with the given status (and a ``session`` cookie)."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if cookie:
            self.send_header("Set-Cookie", f"session={cookie}; Path=/; HttpOnly")
        self.end_headers()
        self.wfile.write(data)

    def cart(self) -> list[dict] | None:
        """The cart of the ``session`` cookie's session, when the shop knows it."""
        cookies = SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        session = cookies.get("session")
        return self.server.carts.get(session.value) if session is not None else None

    def read_json(self) -> dict:
        """The request's JSON object body ({} when there is none or it is not an object)."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

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
        elif path == "/api/cart":
            cart = self.cart()
            if cart is None:
                self.send_json(401, {"error": "log in first"})
            else:
                self.send_json(200, {"items": cart})
        elif path == "/health/ready":
            ready = time.monotonic() - self.server.started >= self.server.warmup
            self.send_json(200, {"status": "ready" if ready else "starting"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        """Log in, fill the cart, check out (slowly, misbehaving as the switches say)."""
        self.server.on_request()
        body = self.read_json()
        path = self.path.split("?", 1)[0]
        if path == "/api/login":
            user = str(body.get("user") or "guest")
            self.send_json(200, {"user": user}, cookie=self.server.log_in(user))
        elif path == "/api/cart":
            cart = self.cart()
            product = body.get("product")
            if cart is None:
                self.send_json(401, {"error": "log in first"})
            elif not any(p["id"] == product for p in PRODUCTS):
                self.send_json(404, {"error": "no such product"})
            else:
                if len(cart) < MAX_CART_ITEMS:
                    cart.append({"product": product, "quantity": body.get("quantity", 1)})
                self.send_json(200, {"items": len(cart)})
        elif path == "/api/orders":
            self.check_out(self.cart(), body)
        else:
            self.send_json(404, {"error": "not found"})

    def check_out(self, cart: list[dict] | None, body: dict) -> None:
        """Turn the session's cart (or, without a session, the body's product) into an order."""
        server = self.server
        items = list(cart) if cart is not None else [body]
        if not items:
            self.send_json(400, {"error": "the cart is empty"})
            return
        time.sleep(random.uniform(server.order_min_ms, server.order_max_ms) / 1000)
        draw = random.random()
        if draw < server.order_error_ratio:
            self.send_json(500, {"error": "payment backend unavailable"})
        elif draw < server.order_error_ratio + server.order_no_id_ratio:
            self.send_json(200, {"status": "queued"})  # a 200 that is no order: only its body says so
        else:
            if cart is not None:
                cart.clear()
            self.send_json(200, {"order_id": random.randrange(1, 1_000_000), "items": len(items),
                                 "status": "accepted"})


class ShopServer(ThreadingHTTPServer):
    """The HTTP server plus the misbehaviour knobs the handler reads."""

    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections when many users start at once

    def __init__(self, address: tuple[str, int], options: argparse.Namespace) -> None:
        super().__init__(address, ShopHandler)
        self.started = time.monotonic()
        self.warmup = options.warmup
        self.order_min_ms, self.order_max_ms = options.order_min_ms, options.order_max_ms
        self.work_min_ms, self.work_max_ms = options.work_min_ms, options.work_max_ms
        self.order_error_ratio, self.order_no_id_ratio = options.order_error_ratio, options.order_no_id_ratio
        self.search_tail_ratio, self.search_tail_ms = options.search_tail_ratio, options.search_tail_ms
        self.leak_bytes = int(options.leak_kb_per_request * 1024)
        self.stall_every, self.stall_for = options.stall_every, options.stall_for / 1000
        self.leaked: list[bytes] = []  # appended to from the handler threads; list.append is atomic
        self.carts: dict[str, list[dict]] = {}  # session token -> cart, in the order of the sessions' creation
        self.sessions_lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer (the end of a load test) is no error worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def log_in(self, user: str) -> str:
        """The session token of ``user`` (one per user name, so that memory stays bounded), its cart kept."""
        token = hashlib.sha256(user.encode()).hexdigest()[:32]
        with self.sessions_lock:
            if token not in self.carts:
                while len(self.carts) >= MAX_SESSIONS:
                    del self.carts[next(iter(self.carts))]
                self.carts[token] = []
        return token

    def on_request(self) -> None:
        """Do the request's work, wait out a stall, and keep ``--leak-kb-per-request`` KB forever (written to, so
        the pages really are resident)."""
        if self.work_max_ms:
            time.sleep(random.uniform(self.work_min_ms, self.work_max_ms) / 1000)
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
    parser.add_argument("--work-min-ms", type=float, default=2, help="shortest work of any request (default 2)")
    parser.add_argument("--work-max-ms", type=float, default=6, help="longest work of any request (default 6)")
    parser.add_argument("--order-min-ms", type=float, default=50, help="shortest POST /api/orders (default 50)")
    parser.add_argument("--order-max-ms", type=float, default=150, help="longest POST /api/orders (default 150)")
    parser.add_argument(
        "--order-error-ratio", type=float, default=0.0, help="share of orders answered 500 (default 0)"
    )
    parser.add_argument(
        "--order-no-id-ratio", type=float, default=0.0,
        help="share of orders answered 200 without an order_id (default 0)"
    )
    parser.add_argument(
        "--search-tail-ratio", type=float, default=0.0, help="share of searches that are slow (default 0)"
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
