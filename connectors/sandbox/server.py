"""A small HTTP framework for the sandbox emulators (stdlib only, real sockets).

One server hosts every emulator under its own prefix: ``/<prefix>/...`` (e.g. ``/commercetools/...``,
``/wair/...``). Each emulator keeps its state in memory behind a lock and has switches for latency and
injected faults. Control endpoints (used by the demo seeder, tests and benchmarks):

  GET  /_sandbox/health
  POST /_sandbox/reset                         all emulators back to empty, faults off
  GET  /_sandbox/<prefix>/faults               current fault switches
  POST /_sandbox/<prefix>/faults               merge switches, e.g. {"latency_ms": 50, "error_rate": 0.1,
                                               "timeout_rate": 0.05, "rate_limit_per_second": 20,
                                               "fail_next": [409, 503]}
  GET  /_sandbox/<prefix>/stats                request / 429 / fault counters
  POST /_sandbox/<prefix>/<action>             emulator specific control (seed, set stock, dispatch …)
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("sandbox")


# --- request / response -------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str  # path below the emulator prefix, starting with '/'
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route regex

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError(
                400,
                {
                    "statusCode": 400,
                    "message": f"Malformed JSON: {exc}",
                    "errors": [{"code": "InvalidJsonInput", "message": str(exc)}],
                },
            ) from exc

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name: str, default: str = "") -> str:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return default


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class HttpError(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


# --- faults ----------------------------------------------------------------------------------------
@dataclass
class Faults:
    latency_ms: float = 0.0  # added to every request
    error_rate: float = 0.0  # fraction answered 503
    timeout_rate: float = 0.0  # fraction that hang for hang_seconds (client times out)
    hang_seconds: float = 5.0
    rate_limit_per_second: float = 0.0  # 0 = unlimited; beyond it: 429 with Retry-After
    rate_limit_burst: int = 0  # defaults to the rate (one second's worth)
    conflict_rate: float = 0.0  # fraction of versioned writes answered 409 (emulators opt in)
    fail_next: list[int] = field(default_factory=list)  # statuses to answer, in order, before anything else


@dataclass
class Stats:
    requests: int = 0
    rate_limited: int = 0
    injected_errors: int = 0
    injected_timeouts: int = 0
    conflicts: int = 0
    by_route: dict[str, int] = field(default_factory=dict)


class Bucket:
    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = None
        self.ts = time.monotonic()

    def take(self, rate: float, burst: int) -> float:
        """0 if allowed, else seconds until a token is available."""
        with self.lock:
            now = time.monotonic()
            cap = max(1, burst or int(rate) or 1)
            if self.tokens is None:
                self.tokens = float(cap)
            self.tokens = min(cap, self.tokens + (now - self.ts) * rate)
            self.ts = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / rate


# --- emulator base -----------------------------------------------------------------------------------
Handler = Callable[[Request], Response]


def route(method: str, pattern: str):
    """Decorator: ``@route("GET", r"/(?P<project>[^/]+)/inventory")`` on an Emulator method."""

    def deco(fn):
        fn._routes = getattr(fn, "_routes", []) + [(method.upper(), re.compile(f"^{pattern}$"))]
        return fn

    return deco


class Emulator:
    """Base class: subclasses set ``prefix``, decorate handlers with :func:`route`, implement
    :meth:`reset` and may expose control actions via ``control_<action>(payload) -> Any``."""

    prefix = ""
    # Routes exempt from rate limiting / fault injection (e.g. OAuth token endpoint stays reachable).
    exempt_patterns: tuple[str, ...] = ()

    def __init__(self):
        self.lock = threading.RLock()
        self.faults = Faults()
        self.stats = Stats()
        self.bucket = Bucket()
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        for name in dir(type(self)):
            fn = getattr(type(self), name, None)
            for method, rx in getattr(fn, "_routes", []):
                self.routes.append((method, rx, getattr(self, name)))
        self.reset()

    def reset(self) -> None:  # pragma: no cover - subclasses
        pass

    def reset_all(self) -> None:
        with self.lock:
            self.faults = Faults()
            self.stats = Stats()
            self.bucket = Bucket()
            self.reset()

    # error body shape; emulators override to match their API
    def error_body(self, status: int, message: str, code: str = "") -> Any:
        return {"statusCode": status, "message": message, "errors": [{"code": code or str(status), "message": message}]}

    def _inject(self, req: Request) -> Response | None:
        f = self.faults
        if f.latency_ms:
            time.sleep(f.latency_ms / 1000.0)
        with self.lock:
            if f.fail_next:
                status = f.fail_next.pop(0)
                self.stats.injected_errors += 1
                if status == 429:
                    self.stats.rate_limited += 1  # rate_limited counts every 429 served
                headers = {"Retry-After": "1"} if status in (429, 503) else {}
                return Response(status, self.error_body(status, "injected fault", "Injected"), headers)
        if f.timeout_rate and random.random() < f.timeout_rate:
            self.stats.injected_timeouts += 1
            time.sleep(f.hang_seconds)
            return Response(504, self.error_body(504, "injected timeout", "Timeout"))
        if f.error_rate and random.random() < f.error_rate:
            self.stats.injected_errors += 1
            return Response(
                503, self.error_body(503, "injected server error", "ServiceUnavailable"), {"Retry-After": "0"}
            )
        if f.rate_limit_per_second:
            wait = self.bucket.take(f.rate_limit_per_second, f.rate_limit_burst)
            if wait > 0:
                self.stats.rate_limited += 1
                retry_after = max(1, int(wait + 0.999))
                return Response(
                    429, self.error_body(429, "Too many requests", "TooManyRequests"), {"Retry-After": str(retry_after)}
                )
        return None

    def maybe_conflict(self) -> bool:
        """Versioned-write handlers call this to inject a 409 at ``conflict_rate``."""
        rate = self.faults.conflict_rate
        if rate and random.random() < rate:
            self.stats.conflicts += 1
            return True
        return False

    def dispatch(self, req: Request) -> Response:
        for method, rx, handler in self.routes:
            m = rx.match(req.path)
            if m and method == req.method:
                exempt = any(re.match(p, req.path) for p in self.exempt_patterns)
                with self.lock:
                    self.stats.requests += 1
                    key = f"{method} {rx.pattern}"
                    self.stats.by_route[key] = self.stats.by_route.get(key, 0) + 1
                if not exempt:
                    injected = self._inject(req)
                    if injected is not None:
                        return injected
                req.params = m.groupdict()
                return handler(req)
        allowed = [method for method, rx, _ in self.routes if rx.match(req.path)]
        if allowed:
            return Response(405, self.error_body(405, f"Method {req.method} not allowed", "MethodNotAllowed"))
        return Response(404, self.error_body(404, f"No route for {req.path}", "ResourceNotFound"))

    def control(self, action: str, payload: Any) -> Any:
        fn = getattr(self, f"control_{action.replace('-', '_')}", None)
        if fn is None:
            raise HttpError(404, {"message": f"unknown control action {action!r}"})
        return fn(payload or {})


# --- the server ----------------------------------------------------------------------------------------
class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, emulators: list[Emulator], host: str = "127.0.0.1", port: int = 8765):
        self.emulators = {e.prefix: e for e in emulators}
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="sandbox", daemon=True)
        t.start()
        return t

    def handle_control(self, req: Request, parts: list[str]) -> Response:
        if parts == ["health"]:
            return Response(200, {"status": "ok", "emulators": sorted(self.emulators)})
        if parts == ["reset"] and req.method == "POST":
            for e in self.emulators.values():
                e.reset_all()
            return Response(200, {"reset": sorted(self.emulators)})
        if len(parts) == 2 and parts[0] in self.emulators:
            emulator, action = self.emulators[parts[0]], parts[1]
            if action == "faults":
                if req.method == "POST":
                    data = req.json() or {}
                    with emulator.lock:
                        for k, v in data.items():
                            if not hasattr(emulator.faults, k):
                                raise HttpError(400, {"message": f"unknown fault switch {k!r}"})
                            setattr(emulator.faults, k, list(v) if k == "fail_next" else v)
                        if "rate_limit_per_second" in data or "rate_limit_burst" in data:
                            emulator.bucket = Bucket()
                return Response(200, asdict(emulator.faults))
            if action == "stats":
                if req.method == "POST":
                    emulator.stats = Stats()
                return Response(200, asdict(emulator.stats))
            return Response(200, emulator.control(action, req.json() if req.method == "POST" else None))
        return Response(404, {"message": "unknown control endpoint"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxServer

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms
        # to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # quiet by default; the server logger has DEBUG output
        log.debug("%s " + fmt, self.address_string(), *args)

    def _handle(self):
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = [p for p in split.path.split("/") if p]
        req = Request(self.command, "", parse_qs(split.query, keep_blank_values=True), dict(self.headers.items()), body)
        try:
            if parts and parts[0] == "_sandbox":
                resp = self.server.handle_control(req, parts[1:])
            elif parts and parts[0] in self.server.emulators:
                req.path = "/" + "/".join(parts[1:])
                resp = self.server.emulators[parts[0]].dispatch(req)
            else:
                resp = Response(404, {"message": f"no emulator at {split.path}"})
        except HttpError as exc:
            resp = Response(exc.status, exc.body, exc.headers)
        except Exception as exc:  # an emulator bug must show as a 500, not kill the server
            log.exception("sandbox handler failed")
            resp = Response(500, {"statusCode": 500, "message": f"sandbox error: {exc}"})
        self._send(resp)

    def _send(self, resp: Response):
        if isinstance(resp.body, (bytes, bytearray)):
            payload = bytes(resp.body)
        elif resp.body is None:
            payload = b""
        elif isinstance(resp.body, str) and resp.content_type != "application/json":
            payload = resp.body.encode()
        else:
            payload = json.dumps(resp.body, default=str).encode()
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            if (self.headers.get("Connection") or "").lower() == "close":  # say so when closing (RFC 9112 §9.6)
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle
