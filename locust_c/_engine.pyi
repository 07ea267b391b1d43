"""Type stubs for locust_c._engine, the C extension (csrc/py_*.c). Internal: FastCSession and locust_c.stats are
its only callers; the public API is locust_c's."""

from collections.abc import Sequence
from typing import Any, final

# A request's cookies, connect and read timeouts, certificate check, CA bundle, client certificate and key.
_Extras = tuple[str | None, float, float, int, str | None, str | None, str | None]

curl_version: str
uv_version: str
http2_supported: int
openssl_marker: int
HIST_COUNTS: int
MIN_TIMEOUT_MS: int
MAX_TIMEOUT_MS: int
MAX_REDIRECTS: int
MAX_RETRIES: int
MAX_CONNECTIONS: int

# submit() flags
FOLLOW_REDIRECTS: int
HEAD: int
GET: int
POST: int
BATCH_STATS: int
IDEMPOTENT: int
STREAM: int
COOKIES: int
METHOD_FLAGS: dict[str, int]  # each method's flags: GET, HEAD, POST, IDEMPOTENT

# Result.result values found by the engine itself (others are libcurl's CURLcode)
CANCELLED: int
HEAD_CUT: int
BODY_TOO_LARGE: int
HEAD_TOO_LARGE: int
NO_MEMORY: int
BAD_LENGTH: int
BAD_ENCODING: int

def hist_percentiles(values_us: list[int], percentiles: list[float]) -> list[int]: ...
def set_flush(callback: Any) -> None: ...
def set_request_path(waiter_type: type, response_class: type[Response], catch_class: type[Response],
                     valid_codes: frozenset[int], json_module: Any, json_dumps: Any, json_encoder: Any,
                     json_markers: dict[int, Any]) -> None: ...

@final
class Engine:
    running: bool
    pending: int
    def __init__(self, idle_seconds: float = ...) -> None: ...
    def fileno(self) -> int: ...
    def dispatch(self) -> int: ...
    def stop(self) -> list[tuple[Any, Any]]: ...
    def counters(self) -> dict[str, int]: ...

@final
class Client:
    closed: bool
    due: float  # when the iteration now running was due (UNIX seconds), 0 for none; submit() passes it on
    def __init__(self, engine: Engine, connect_timeout: float = ..., read_timeout: float = ..., timeout: float = ...,
                 max_redirects: int = ..., max_retries: int = ..., max_connections: int = ..., insecure: bool = ...,
                 http2: bool = ..., proxy: str | None = ..., user_agent: str | None = ..., ca_file: str | None = ...,
                 tls_sessions: bool = ..., max_response_bytes: int = ..., cert: str | None = ..., key: str | None = ...,
                 ciphers: str | None = ..., tls_min: int = ..., tls_max: int = ..., verify_host: bool = ...,
                 ssl_context: Any = ..., cookies: bool = ..., native: bool = ...) -> None: ...
    def submit(self, token: Any, method: str, url: str, headers: tuple[str, ...] | None, body: bytes | None,
               flags: int, endpoint: Endpoint | None,
               extras: _Extras | None = ...) -> int: ...
    def cancel(self, request_id: int) -> None: ...
    def close(self) -> None: ...
    def set_aside(self) -> None: ...

class Session:
    """The base of FastCSession: its hot state, and request(), get() and post() (csrc/py_session.c)."""
    _client: Client | None
    _handle: Any
    _due: float
    base_url: str
    request_name: str | None
    _headers: Any
    _lines: tuple[str, ...]
    _lines_version: int
    _names: frozenset[str]
    _jar: Any
    _reporter: Any
    def request(self, method: str, url: str, name: str | None = ..., data: Any = ..., catch_response: bool = ...,
                stream: bool = ..., headers: dict | None = ..., auth: Any = ..., json: Any = ...,
                allow_redirects: bool = ..., context: dict | None = ..., params: Any = ..., cookies: Any = ...,
                timeout: Any = ..., files: Any = ..., verify: bool | str | None = ..., cert: Any = ...) -> Any: ...
    def get(self, url: str, **kwargs: Any) -> Any: ...
    def post(self, url: str, data: Any = ..., json: Any = ..., **kwargs: Any) -> Any: ...

class Response:
    """The base of FastCResponse: its fields."""
    _result: Result | None
    _method: str
    _url: str
    _lines: tuple[str, ...] | None
    _body: str | bytes | None
    error: BaseException | None
    status_code: int
    def __init__(self, result: Result | None, method: str, url: str, lines: tuple[str, ...] | None,
                 body: str | bytes | None, error: BaseException | None) -> None: ...
    def _take(self, other: Response, /) -> None: ...

@final
class Result:
    status: int
    result: int
    os_errno: int
    response_time: float
    redirects: int
    recorded: int
    done_time: float
    content: bytes
    content_length: int
    head: bytes
    redirects_head: bytes
    effective_url: str | None
    error: str | None
    def stream_read(self, n: int) -> bytes: ...
    def stream_wait(self, waiter: Any) -> int: ...
    def stream_unwait(self) -> bool: ...
    def stream_end(self) -> tuple[int, str | None] | None: ...

@final
class Histogram:
    count: int
    min: int
    max: int
    sum: int
    def record(self, value_us: int, count: int = 1, /) -> None: ...
    def percentile(self, percentile: float) -> int: ...
    def sparse(self) -> tuple[int, int, int, int, list[int]]: ...
    def add_sparse(self, sparse: tuple[int, int, int, int, list[int]]) -> None: ...
    def merge(self, other: Histogram) -> None: ...
    def subtract(self, other: Histogram) -> None: ...
    def copy(self) -> Histogram: ...
    def cumulative(self, bounds_us: Sequence[int]) -> list[int]: ...
    def stddev(self) -> float: ...
    def reset(self) -> None: ...

@final
class Endpoint:
    method: str
    name: str
    target: Any
    dirty: bool
    hist: Histogram
    unsent: Histogram | None
    corrected: Histogram  # the latencies from each request's due time to its last byte (arrival_rate's requests)
    corrected_unsent: Histogram | None
    def __init__(self, method: str, name: str, target: Any = ...) -> None: ...
    def take(self) -> tuple[Any, ...] | None: ...
    def track_unsent(self) -> None: ...
