"""The simulated Canvas: a plain ASGI application (no framework, so the raw path stays raw).

The pipeline of one `/api/v1` request mirrors Canvas's (../shared/CANVAS_API.md §1.3):

1. User-Agent check (a request without one gets 403 JSON, as Instructure announced for 2026).
2. A seeded fault draw; a load-balancer 503 answers here, before Canvas and its throttle.
3. Reserve 50 units in the token's bucket; refuse (429, or the legacy 403 text) if the count after
   the reservation is >= hwm.
4. Sleep the simulated latency (mean per endpoint / time scale, seeded jitter): the request holds its
   reservation the whole time, which is what makes concurrency trip the limit.
5. Authenticate, route, run the handler (the write), settle `cost - 50`, send with
   `X-Request-Cost` and `X-Rate-Limit-Remaining`.

Path segments are decoded one by one from `scope["raw_path"]`, so `%2F` inside a SIS id never
becomes a separator. Inspection routes live under `/__sim__/` and need no token: GET stats, POST
reset-stats, storm ({"fill", "hwm", "duration"}), calm, faults (FaultRates fields).

Choices where CANVAS_API.md §10 says Canvas is unconfirmed:
- The 429 body is `429 Too Many Requests (Rate Limit Exceeded)\n` (text/plain), so clients that
  look for "Rate Limit Exceeded" work with either status; no Retry-After on either.
- A missing User-Agent gets 403 `{"error":"Forbidden","message":"...valid user agent."}`, as
  Instructure's announcement shows it; no bucket is touched and no rate-limit header is sent.
- `enrollment_state` outside active|invited|inactive is a 400; a deleted course is a 404.
- An `associated_user_id` that casts to no user (an SIS id casts to 0) is a 500: no model
  validation refuses it, the database's foreign key to users does (CANVAS_API.md §2.2 says "links
  to nobody"; the source shows the foreign key).
- Soft-concluded courses refuse every create (Canvas lets a user who already has an enrollment in
  the course into a section that is still open; sections here have no dates of their own).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from canvas_tui.simulator import views
from canvas_tui.simulator.bucket import BucketSettings, Clock, LeakyBucket, ruby_float
from canvas_tui.simulator.faults import (
    HTML_503,
    Fault,
    FaultInjector,
    FaultRates,
    SimulatedConnectionReset,
    bad_shape_body,
    drip,
    until_disconnect,
)
from canvas_tui.simulator.sis_imports import SisImports, Upload, parse_multipart
from canvas_tui.simulator.views import HttpError, PageRequest, Response
from canvas_tui.simulator.world import (
    ROOT_ACCOUNT_ID,
    Course,
    Enrollment,
    Role,
    Section,
    Token,
    User,
    World,
    canvas_time,
    now_iso,
)

ASGIScope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]

STAFF_TYPES = frozenset({"TeacherEnrollment", "TaEnrollment", "DesignerEnrollment"})
CREATE_STATES = frozenset({"active", "invited", "inactive"})
ENROLLMENT_STATES = frozenset(
    {"active", "invited", "creation_pending", "deleted", "rejected", "completed", "inactive"}
)
USER_CONTEXT_STATES = {
    "current_and_invited": {"active", "invited"},
    "current_and_future": {"active", "invited", "creation_pending"},
    "current_future_and_restricted": {"active", "invited", "creation_pending", "inactive"},
    "current_and_concluded": {"active", "completed"},
}
# The states a token's user may ask for when listing its *own* enrollments; anything else is a
# 400 "Invalid state <x>" (instructure/canvas-lms app/controllers/enrollments_api_controller.rb,
# user_index_enrollments, also reached from a course or section listing given `user_id`). Note
# that `deleted` is not among them.
SELF_LISTING_STATES = frozenset(
    {
        "active",
        "inactive",
        "rejected",
        "invited",
        "creation_pending",
        "pending_active",
        "pending_invited",
        "completed",
        "current_and_invited",
        "current_and_future",
        "current_and_concluded",
    }
)
DELETE_TASKS = {"delete": "deleted", "inactivate": "inactive", "deactivate": "inactive"}
EXCLUDED_FROM_CACHE_KEY = frozenset({"page", "per_page", "access_token", "api_key"})
TRUE_STRINGS = frozenset({"true", "1", "t", "yes", "y", "on"})
# Media types whose body Rails does not parse into parameters; a SIS import posts its file so.
RAW_BODY_TYPES = frozenset(
    {
        "text/csv",
        "text/plain",
        "text/xml",
        "application/zip",
        "application/x-zip-compressed",
        "application/octet-stream",
    }
)


@dataclass
class LatencyModel:
    """Mean latency per endpoint kind, in world seconds at time scale 1; jitter is a +/- fraction."""

    create: float = 0.25
    list: float = 0.15
    show: float = 0.08
    write: float = 0.2  # delete, reactivate
    jitter: float = 0.4

    @classmethod
    def uniform(cls, mean: float) -> LatencyModel:
        return cls(create=mean, list=mean, show=mean, write=mean)


@dataclass
class SimConfig:
    seed: int = 7
    time_scale: float = 1.0
    throttle_status: int = 429  # 429 as hosted Canvas since Oct 2025; 403 as the open-source code
    hwm: float = 600.0
    maximum: float = 800.0
    leak: float = 10.0  # units per world second
    up_front: float = 50.0
    post_cost: float = 0.1  # enrollment create
    get_cost: float = 0.05
    write_cost: float = 0.1  # delete, reactivate
    refused_cost: float = 0.01  # building the refusal is not free either
    cost_jitter: float = 0.2  # +/- fraction, seeded; 0 makes costs exact
    latency: LatencyModel = field(default_factory=LatencyModel)
    faults: FaultRates = field(default_factory=FaultRates)
    tokens: tuple[str, ...] = ()  # extra accepted tokens, as account admins
    no_sis_tokens: tuple[str, ...] = ()  # ... as account admins without read_sis / manage_sis
    require_user_agent: bool = True
    clock: Clock = time.monotonic
    sleep: Sleep | None = None  # default asyncio.sleep; tests may inject
    world_users: int = 2000  # size of the generated world when none is given
    world_courses: int = 120
    # SIS imports (simulator/sis_imports.py): rows applied per world second once an import
    # runs, and the world seconds a created import waits for its job to be picked up.
    sis_import_rate: float = 250.0
    sis_import_start_delay: float = 2.0
    sis_imports_enabled: bool = True  # the root account's allow_sis_import


@dataclass
class Stats:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    enrollments_created: int = 0
    reposts: int = 0  # creates that matched an existing enrollment (Canvas reuses the row)
    reactivated: int = 0  # ... of which changed the row's state
    faults: Counter[str] = field(default_factory=Counter)
    error_report_id: int = 41_000


@dataclass
class Request:
    method: str
    raw_path: str
    segments: list[str]
    raw_query: str
    params: dict[str, Any]
    headers: dict[str, str]
    base_url: str
    token: str | None
    body: bytes = b""
    files: dict[str, Upload] = field(default_factory=dict)

    @property
    def page_request(self) -> PageRequest:
        return PageRequest(self.base_url, self.raw_path, self.raw_query)


@dataclass
class Route:
    endpoint: str  # a stable name for stats: "create_enrollment", ...
    kind: str  # latency/cost class: create | list | show | write
    handler: Callable[..., Response]
    args: tuple[str, ...]


def rails_params(
    pairs: list[tuple[str, str]], into: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Rails-style nesting: `enrollment[user_id]`, `type[]`, `enrollment[tags][]`."""
    out: dict[str, Any] = {} if into is None else into
    for key, value in pairs:
        name, bracket, rest = key.partition("[")
        parts = [name] + (rest.rstrip("]").split("][") if bracket else [])
        is_list = len(parts) > 1 and parts[-1] == ""
        if is_list:
            parts = parts[:-1]
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if is_list:
            existing = node.get(parts[-1])
            if not isinstance(existing, list):
                existing = node[parts[-1]] = []
            existing.append(value)
        else:
            node[parts[-1]] = value
    return out


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUE_STRINGS


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def rails_integer(value: Any) -> int | None:
    """How ActiveRecord casts a parameter into an integer column: blank -> nil, true/false ->
    1/0, a number as is, any other text by Ruby's String#to_i (`"sis_user_id:S9"` -> 0)."""
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    return views.ruby_to_i(text) if text.strip() else None


def stuck_dates(before: Enrollment | None, start_at: str | None, end_at: str | None) -> set[str]:
    """The date fields an API write changes, which become sticky (instructure/canvas-lms
    lib/sticky_sis_fields.rb: `before_save :set_sis_stickiness` marks changed sticky fields,
    new records included; Enrollment `are_sis_sticky :start_at, :end_at`)."""
    old_start, old_end = (before.start_at, before.end_at) if before else (None, None)
    fields = set()
    if start_at != old_start:
        fields.add("start_at")
    if end_at != old_end:
        fields.add("end_at")
    return fields


def token_label(identifier: str) -> str:
    """Buckets are keyed by token; stats show a short hash, never the token."""
    kind, _, value = identifier.partition(":")
    if kind == "token":
        return "token:" + hashlib.sha256(value.encode()).hexdigest()[:10]
    return identifier


class Simulator:
    """The ASGI app. `.world` is the data, `.stats()` the counters, `.storm()` a throttle storm."""

    def __init__(self, config: SimConfig | None = None, world: World | None = None) -> None:
        self.config = config or SimConfig()
        cfg = self.config
        if cfg.throttle_status not in (403, 429):
            raise ValueError(f"throttle_status must be 403 or 429, not {cfg.throttle_status}")
        if cfg.time_scale <= 0:
            raise ValueError(f"time_scale must be positive, not {cfg.time_scale}")
        self.world = world or World.generate(
            cfg.seed, users=cfg.world_users, courses=cfg.world_courses
        )
        for token in cfg.tokens:
            self.world.tokens.setdefault(token, Token(user_id=1, admin=True))
        for token in cfg.no_sis_tokens:
            self.world.tokens.setdefault(
                token, Token(user_id=1, admin=True, read_sis=False, manage_sis=False)
            )
        self.settings = BucketSettings(
            hwm=cfg.hwm,
            maximum=cfg.maximum,
            outflow=cfg.leak,
            up_front=cfg.up_front,
            time_scale=cfg.time_scale,
        )
        self._base_hwm = cfg.hwm
        self._storm_until: float | None = None
        self.buckets: dict[str, LeakyBucket] = {}
        self._latency_rng = random.Random(f"{cfg.seed}:latency")
        self._cost_rng = random.Random(f"{cfg.seed}:cost")
        self.faults = FaultInjector(cfg.faults, random.Random(f"{cfg.seed}:faults"))
        self._sleep: Sleep = cfg.sleep or asyncio.sleep
        self._stats = Stats()
        # Sorted rosters by listing, reused by the bookmark pages that follow the first one.
        self._roster_cache: dict[tuple[Any, ...], list[Enrollment]] = {}
        # uvicorn runs the app in its own thread while tests read stats and mutate the world.
        self.lock = threading.RLock()
        self.sis_imports = SisImports(
            self.world,
            cfg.clock,
            time_scale=cfg.time_scale,
            rows_per_second=cfg.sis_import_rate,
            start_delay=cfg.sis_import_start_delay,
            enabled=cfg.sis_imports_enabled,
            error_report=self._next_error_report,
        )

    def _next_error_report(self) -> int:
        self._stats.error_report_id += 1
        return self._stats.error_report_id

    def settle_sis_imports(self) -> None:
        """Apply every SIS import row the clock allows now (requests do this on their own)."""
        with self.lock:
            self.sis_imports.advance()

    # ---- Python-side accessors ------------------------------------------------------------

    def bucket(self, identifier: str) -> LeakyBucket:
        """The bucket of `token:<token>` (or `ip:<addr>` for requests without a token)."""
        bucket = self.buckets.get(identifier)
        if bucket is None:
            bucket = self.buckets[identifier] = LeakyBucket(self.settings, self.config.clock)
        return bucket

    def token_bucket(self, token: str) -> LeakyBucket:
        return self.bucket(f"token:{token}")

    def stats(self) -> dict[str, Any]:
        with self.lock:
            self.sis_imports.advance()
            s = self._stats
            levels = {token_label(k): round(b.level(), 4) for k, b in self.buckets.items()}
            return {
                "requests": s.requests,
                "requests_by_status": dict(s.by_status),
                "requests_by_endpoint": dict(s.by_endpoint),
                "throttled": s.throttled,
                "in_flight": s.in_flight,
                "max_in_flight": s.max_in_flight,
                "bucket_level": max(levels.values(), default=0.0),
                "buckets": levels,
                "hwm": self.settings.hwm,
                "enrollments_created": s.enrollments_created,
                "reposts": s.reposts,
                "reactivated": s.reactivated,
                "duplicates": self.world.duplicates(),
                "enrollments_total": len(self.world.enrollments),
                "faults": dict(s.faults),
                "time_scale": self.config.time_scale,
                "throttle_status": self.config.throttle_status,
                "sis_imports": self.sis_imports.stats(),
            }

    def reset_stats(self) -> None:
        with self.lock:
            in_flight = self._stats.in_flight
            self._stats = Stats(in_flight=in_flight, max_in_flight=in_flight)

    def storm(
        self,
        *,
        fill: float | None = None,
        hwm: float | None = None,
        duration: float | None = None,
        token: str | None = None,
    ) -> None:
        """A throttle storm: pre-fill buckets to `fill` and/or lower the hwm for `duration` world
        seconds (None = until `calm()`). `token` limits the fill to that token's bucket."""
        with self.lock:
            if fill is not None:
                targets = [self.token_bucket(token)] if token else list(self.buckets.values())
                for bucket in targets:
                    bucket.fill(fill)
            if hwm is not None:
                self.settings.hwm = hwm
                self._storm_until = (
                    None
                    if duration is None
                    else self.config.clock() + duration / self.config.time_scale
                )

    def calm(self) -> None:
        with self.lock:
            self.settings.hwm = self._base_hwm
            self._storm_until = None

    def set_faults(self, rates: FaultRates) -> None:
        self.faults.rates = rates

    # ---- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        # httpx.ASGITransport puts the query into raw_path; servers do not.
        raw_path = raw.split(b"?", 1)[0].decode("latin-1")
        if raw_path.startswith("/__sim__/"):
            await self._send(send, self._inspect(scope["method"], raw_path, body))
            return
        if raw_path.startswith("/files/"):
            query = scope.get("query_string", b"").decode("latin-1")
            await self._send(send, self._download(scope["method"], raw_path, query))
            return
        if not raw_path.startswith("/api/v1/"):
            await self._send(send, views.not_found().response)
            return
        await self._api(scope, raw_path, body, send, receive)

    async def _api(
        self,
        scope: ASGIScope,
        raw_path: str,
        body: bytes,
        send: Send,
        receive: Receive | None = None,
    ) -> None:
        cfg = self.config
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if cfg.require_user_agent and not headers.get("user-agent", "").strip():
            await self._finish(send, views.user_agent_required(), "user_agent_missing")
            return
        fault = self.faults.draw()
        if fault is Fault.HTML_503:
            await self._sleep(self._latency("show"))
            with self.lock:
                self._stats.faults[fault.value] += 1
            response = Response(503, HTML_503, b"text/html; charset=utf-8")
            await self._finish(send, response, "html_503")
            return
        query = scope.get("query_string", b"").decode("latin-1")
        request = self._request(scope, raw_path, query, headers, body)
        identifier = (
            f"token:{request.token}"
            if request.token
            else f"ip:{(scope.get('client') or ('unknown',))[0]}"
        )
        route = self._route(request)
        with self.lock:
            self._expire_storm()
            bucket = self.bucket(identifier)
            stats = self._stats
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            admitted = bucket.reserve()
        endpoint = route.endpoint if route else "unknown"
        cost = cfg.refused_cost if not admitted else self._cost(request.method)
        settled = False

        def settle() -> float:
            nonlocal settled
            settled = True
            return bucket.settle(cost)

        try:
            if not admitted:
                with self.lock:
                    settle()
                    self._stats.throttled += 1
                    response = self._refusal(bucket)
                await self._finish(send, response, endpoint)
                return
            kind = route.kind if route else "show"
            delay = self._latency(kind)
            if fault is Fault.SLOW:
                delay = cfg.faults.slow_seconds / cfg.time_scale
            try:
                await self._sleep(delay)
                if fault is Fault.RESET_BEFORE:
                    raise SimulatedConnectionReset("connection reset before the write")
                if fault is Fault.ERROR_500:
                    with self.lock:
                        self._stats.error_report_id += 1
                        response = views.internal_error(self._stats.error_report_id)
                elif fault is Fault.BAD_SHAPE:  # a gateway's answer: Canvas never saw it
                    with self.lock:
                        response = Response(200, bad_shape_body(self.faults.rng), views.JSON_TYPE)
                else:
                    with self.lock:
                        response = self._dispatch(request, route)
                if fault is Fault.RESET_AFTER:
                    raise SimulatedConnectionReset("connection reset after the write")
            except SimulatedConnectionReset:
                with self.lock:
                    settle()
                    self._stats.faults[fault.value if fault else "reset"] += 1
                    self._stats.requests += 1
                    self._stats.by_endpoint[endpoint] += 1
                # Starting the response, then raising, is what drops the socket under uvicorn
                # (an exception before the start would become a clean 500 instead).
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", views.JSON_TYPE), (b"content-length", b"64")],
                    }
                )
                raise
            with self.lock:
                settle()
                if fault is not None:
                    self._stats.faults[fault.value] += 1
                response.headers.append((b"x-request-cost", ruby_float(cost).encode()))
                response.headers.append(
                    (b"x-rate-limit-remaining", ruby_float(bucket.remaining()).encode())
                )
            if fault is Fault.DRIP:
                await self._drip(send, response, endpoint, receive)
                return
            await self._finish(send, response, endpoint)
        finally:
            with self.lock:
                if not settled:  # cancelled mid-flight (a client gave up): Canvas settles anyway
                    settle()
                self._stats.in_flight -= 1

    def _request(
        self, scope: ASGIScope, raw_path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Request:
        pairs = parse_qsl(query, keep_blank_values=True)
        params = rails_params(pairs)
        content_type = headers.get("content-type", "")
        media_type = content_type.partition(";")[0].strip().lower()
        malformed = False
        files: dict[str, Upload] = {}
        if body and media_type == "multipart/form-data":
            fields, files = parse_multipart(content_type, body)
            rails_params(list(fields.items()), params)
        elif body and media_type in RAW_BODY_TYPES:
            pass  # Rails parses no parameters out of these: the body is the data (SIS imports)
        elif body:
            if "json" in content_type:
                try:
                    payload = json.loads(body)
                except ValueError:
                    malformed = True
                else:
                    if isinstance(payload, dict):
                        params.update(payload)
            else:
                rails_params(
                    parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True), params
                )
        token = None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip() or None
        elif isinstance(params.get("access_token"), str):
            token = params["access_token"] or None
        host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
        scheme = scope.get("scheme", "http")
        segments: list[str] = []
        for raw_segment in raw_path[len("/api/v1/") :].split("/"):
            try:
                segments.append(unquote(raw_segment, encoding="utf-8", errors="strict"))
            except UnicodeDecodeError:
                segments.append("\x00invalid")
        while segments and segments[-1] == "":
            segments.pop()
        if segments and segments[-1].endswith(".json"):
            segments[-1] = segments[-1][: -len(".json")]
        if malformed:
            params["\x00malformed"] = True
        return Request(
            method=scope["method"].upper(),
            raw_path=raw_path,
            segments=segments,
            raw_query=query,
            params=params,
            headers=headers,
            base_url=f"{scheme}://{host}",
            token=token,
            body=body,
            files=files,
        )

    def _expire_storm(self) -> None:
        if self._storm_until is not None and self.config.clock() >= self._storm_until:
            self.settings.hwm = self._base_hwm
            self._storm_until = None

    def _latency(self, kind: str) -> float:
        model = self.config.latency
        mean = getattr(model, kind, model.show)
        jitter = self._latency_rng.uniform(1 - model.jitter, 1 + model.jitter)
        return max(0.0, mean * jitter) / self.config.time_scale

    def _cost(self, method: str) -> float:
        cfg = self.config
        base = {"GET": cfg.get_cost, "POST": cfg.post_cost}.get(method, cfg.write_cost)
        if cfg.cost_jitter:
            base *= self._cost_rng.uniform(1 - cfg.cost_jitter, 1 + cfg.cost_jitter)
        return base

    def _refusal(self, bucket: LeakyBucket) -> Response:
        status = self.config.throttle_status
        text = (
            b"403 Forbidden (Rate Limit Exceeded)\n"
            if status == 403
            else b"429 Too Many Requests (Rate Limit Exceeded)\n"
        )
        response = Response(status, text, b"text/plain; charset=utf-8")
        response.headers.append(
            (b"x-rate-limit-remaining", ruby_float(bucket.remaining()).encode())
        )
        return response

    async def _finish(self, send: Send, response: Response, endpoint: str) -> None:
        with self.lock:
            self._stats.requests += 1
            self._stats.by_status[str(response.status)] += 1
            self._stats.by_endpoint[endpoint] += 1
        await self._send(send, response)

    async def _drip(
        self, send: Send, response: Response, endpoint: str, receive: Receive | None
    ) -> None:
        with self.lock:
            self._stats.requests += 1
            self._stats.by_status[str(response.status)] += 1
            self._stats.by_endpoint[endpoint] += 1
        interval = self.config.faults.drip_seconds / self.config.time_scale
        headers = [
            (b"content-type", response.content_type),
            (b"content-length", str(len(response.body)).encode()),
            *response.headers,
        ]
        dripping = drip(send, response.status, headers, response.body, interval, self._sleep)
        await until_disconnect(dripping, receive)

    @staticmethod
    async def _send(send: Send, response: Response) -> None:
        headers = [
            (b"content-type", response.content_type),
            (b"content-length", str(len(response.body)).encode()),
            *response.headers,
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    # ---- inspection -----------------------------------------------------------------------

    def _inspect(self, method: str, raw_path: str, body: bytes) -> Response:
        name = raw_path[len("/__sim__/") :]
        if method == "GET" and name == "stats":
            return views.json_response(self.stats())
        if method == "POST" and name == "reset-stats":
            self.reset_stats()
            return views.json_response(self.stats())
        if method == "POST" and name in ("storm", "calm", "faults"):
            try:
                options = json.loads(body) if body else {}
                if name == "storm":
                    self.storm(
                        **{k: options[k] for k in ("fill", "hwm", "duration") if k in options}
                    )
                elif name == "calm":
                    self.calm()
                else:
                    self.set_faults(FaultRates(**options))
            except (ValueError, TypeError) as exc:
                return views.json_response({"message": str(exc)}, 400)
            return views.json_response(self.stats())
        return views.not_found().response

    # ---- routing --------------------------------------------------------------------------

    def _route(self, request: Request) -> Route | None:
        s = request.segments
        m = request.method
        n = len(s)
        if n >= 2 and s[0] == "courses":
            if n == 2 and m == "GET":
                return Route("get_course", "show", self._get_course, (s[1],))
            if n == 3 and s[2] == "enrollments":
                if m == "GET":
                    return Route("list_enrollments", "list", self._list_course_enrollments, (s[1],))
                if m == "POST":
                    return Route("create_enrollment", "create", self._create_on_course, (s[1],))
            if n == 4 and s[2] == "enrollments" and m == "DELETE":
                return Route("delete_enrollment", "write", self._delete_enrollment, (s[1], s[3]))
            if n == 5 and s[2] == "enrollments" and s[4] == "reactivate" and m == "PUT":
                return Route("reactivate_enrollment", "write", self._reactivate, (s[1], s[3]))
            if n == 3 and s[2] == "sections" and m == "GET":
                return Route("list_sections", "list", self._list_sections, (s[1],))
            if n == 4 and s[2] == "sections" and m == "GET":
                return Route("get_section", "show", self._get_course_section, (s[1], s[3]))
        if n >= 2 and s[0] == "sections":
            if n == 2 and m == "GET":
                return Route("get_section", "show", self._get_section, (s[1],))
            if n == 3 and s[2] == "enrollments":
                if m == "GET":
                    return Route(
                        "list_enrollments", "list", self._list_section_enrollments, (s[1],)
                    )
                if m == "POST":
                    return Route("create_enrollment", "create", self._create_on_section, (s[1],))
        if n >= 2 and s[0] == "users" and m == "GET":
            if n == 2:
                return Route("get_user", "show", self._get_user, (s[1],))
            if n == 3 and s[2] == "enrollments":
                return Route("list_enrollments", "list", self._list_user_enrollments, (s[1],))
        if n >= 3 and s[0] == "accounts" and s[2] == "sis_imports":
            return self._sis_route(s, m)
        if n == 2 and s[0] == "progress" and m == "GET":
            return Route(
                "get_progress",
                "show",
                lambda r, t, i: self.sis_imports.progress(t, i, r.base_url),
                (s[1],),
            )
        if n >= 2 and s[0] == "accounts" and m == "GET":
            if n == 2:
                return Route("get_account", "show", self._get_account, (s[1],))
            if n == 3 and s[2] == "roles":
                return Route("list_roles", "list", self._list_roles, (s[1],))
            if n == 4 and s[2] == "enrollments":
                return Route("get_enrollment", "show", self._get_account_enrollment, (s[1], s[3]))
        return None

    def _sis_route(self, s: list[str], m: str) -> Route | None:
        """accounts/:id/sis_imports[/...] (config/routes.rb, sis_imports_api)."""
        n = len(s)
        imports = self.sis_imports
        if n == 3 and m == "POST":
            return Route("create_sis_import", "create", self._create_sis_import, (s[1],))
        if n == 3 and m == "GET":
            return Route("list_sis_imports", "list", self._list_sis_imports, (s[1],))
        if n == 4 and m == "GET" and s[3] == "importing":
            return Route(
                "importing_sis_imports",
                "list",
                lambda r, t, a: imports.importing(a, t, r.base_url),
                (s[1],),
            )
        if n == 4 and m == "PUT" and s[3] == "abort_all_pending":
            return Route(
                "abort_all_sis_imports",
                "write",
                lambda r, t, a: imports.abort_all_pending(a, t),
                (s[1],),
            )
        if n == 4 and m == "GET":
            return Route(
                "get_sis_import",
                "show",
                lambda r, t, a, i: imports.show(a, t, i, r.base_url),
                (s[1], s[3]),
            )
        if n == 5 and m == "PUT" and s[4] == "restore_states":
            return Route(
                "restore_sis_import",
                "write",
                lambda r, t, a, i: imports.restore_states(a, t, i, r.params, r.base_url),
                (s[1], s[3]),
            )
        if n == 5 and m == "PUT" and s[4] == "abort":
            return Route(
                "abort_sis_import",
                "write",
                lambda r, t, a, i: imports.abort(a, t, i, r.base_url),
                (s[1], s[3]),
            )
        return None

    def _create_sis_import(self, request: Request, token: Token, account_ref: str) -> Response:
        return self.sis_imports.create(
            account_ref=account_ref,
            token=token,
            params=request.params,
            files=request.files,
            content_type=request.headers.get("content-type", ""),
            body=request.body,
            base_url=request.base_url,
        )

    def _list_sis_imports(self, request: Request, token: Token, account_ref: str) -> Response:
        return self.sis_imports.list(
            account_ref, token, request.params, request.page_request, request.base_url
        )

    def _download(self, method: str, raw_path: str, query: str) -> Response:
        """`files/:id/download?verifier=...`: an errors attachment, no token needed (the
        verifier is the permission), served as Canvas's local file store sends it."""
        parts = raw_path.strip("/").split("/")
        if method != "GET" or len(parts) != 3 or parts[2] != "download":
            return views.not_found().response
        verifier = dict(parse_qsl(query)).get("verifier")
        with self.lock:
            attachment = self.sis_imports.download(parts[1], verifier)
        if attachment is None:
            return views.not_found().response
        response = Response(200, attachment.data, b"text/csv")
        disposition = f'attachment; filename="{attachment.filename}"'.encode()
        response.headers.append((b"content-disposition", disposition))
        return response

    def _dispatch(self, request: Request, route: Route | None) -> Response:
        # SIS imports run on the server's clock; catch them up before anything reads the world
        self.sis_imports.advance()
        token = self._authenticate(request)
        if isinstance(token, Response):
            return token
        if route is None:
            return views.not_found().response
        if request.params.get("\x00malformed"):
            return views.generic_bad_request().response
        try:
            response = route.handler(request, token, *route.args)
        except HttpError as error:
            return error.response
        else:
            if not (token.read_sis and token.manage_sis) and response.status == 200:
                visible = views.for_rights(
                    json.loads(response.body), read_sis=token.read_sis, manage_sis=token.manage_sis
                )
                response.body = views.dumps(visible)
            return response
        finally:
            if request.method != "GET":
                self.world.version += 1

    def _authenticate(self, request: Request) -> Token | Response:
        if request.token is None:
            return views.unauthenticated()
        token = self.world.tokens.get(request.token)
        if token is None or token.user_id not in self.world.users:
            return views.invalid_token()
        return token

    # ---- lookups --------------------------------------------------------------------------

    def _course(self, ref: str) -> Course:
        course = self.world.find_course(ref)
        if course is None:
            raise views.not_found()
        return course

    def _section(self, ref: str) -> Section:
        section = self.world.find_section(ref)
        if section is None:
            raise views.not_found()
        return section

    def _user(self, ref: str, token: Token) -> User:
        user = self.world.find_user(ref, current_user_id=token.user_id)
        if user is None:
            raise views.not_found()
        return user

    @staticmethod
    def _require_admin(token: Token) -> None:
        if not token.admin:
            raise views.unauthorized()

    # ---- handlers: show -------------------------------------------------------------------

    def _get_course(self, request: Request, token: Token, ref: str) -> Response:
        course = self._course(ref)
        self._require_admin(token)
        return views.json_response(views.course_json(course))

    def _get_section(self, request: Request, token: Token, ref: str) -> Response:
        section = self._section(ref)
        self._require_admin(token)
        return views.json_response(views.section_json(self.world, section))

    def _get_course_section(
        self, request: Request, token: Token, course_ref: str, ref: str
    ) -> Response:
        course = self._course(course_ref)
        section = self._section(ref)
        if section.course_id != course.id:
            raise views.not_found()
        self._require_admin(token)
        return views.json_response(views.section_json(self.world, section))

    def _list_sections(self, request: Request, token: Token, ref: str) -> Response:
        course = self._course(ref)
        self._require_admin(token)
        sections = sorted(self.world.sections_of(course.id), key=lambda s: (s.name, s.id))
        page, link = views.numbered_page(sections, request.params, request.page_request)
        response = views.json_response([views.section_json(self.world, s) for s in page])
        response.headers.append(link)
        return response

    def _get_user(self, request: Request, token: Token, ref: str) -> Response:
        user = self._user(ref, token)
        if not token.admin and user.id != token.user_id:
            raise views.unauthorized()
        return views.json_response(views.user_json(user, full=True))

    def _get_account(self, request: Request, token: Token, ref: str) -> Response:
        account = self.world.find_account(ref)
        if account is None:
            raise views.not_found()
        self._require_admin(token)
        return views.json_response(views.account_json(account))

    def _get_account_enrollment(
        self, request: Request, token: Token, account_ref: str, ref: str
    ) -> Response:
        """`EnrollmentsApiController#show`: `@context.all_enrollments.find(id)`, so deleted rows
        are found too; an account's all_enrollments are those whose root account it is, so a
        sub-account finds none (404). Anyone may read their own; others need read_roster."""
        account = self.world.find_account(account_ref)
        enrollment = self.world.enrollments.get(int(ref)) if ref.isdigit() else None
        if account is None or account.id != ROOT_ACCOUNT_ID or enrollment is None:
            raise views.not_found()
        if enrollment.user_id != token.user_id:
            self._require_admin(token)
        body = views.enrollment_json(self.world, enrollment, request.base_url)
        return views.json_response(body)

    def _list_roles(self, request: Request, token: Token, ref: str) -> Response:
        account = self.world.find_account(ref)
        if account is None:
            raise views.not_found()
        self._require_admin(token)
        states = set(as_list(request.params.get("state"))) or {"active"}
        roles = [
            r
            for r in self.world.course_roles(account.id)
            if ("active" in states and r.workflow_state in ("built_in", "active"))
            or r.workflow_state in states
        ]
        page, link = views.numbered_page(roles, request.params, request.page_request)
        owner = self.world.accounts
        response = views.json_response([views.role_json(r, owner[r.account_id]) for r in page])
        response.headers.append(link)
        return response

    # ---- handlers: enrollment lists -------------------------------------------------------

    def _list_course_enrollments(self, request: Request, token: Token, ref: str) -> Response:
        course = self._course(ref)
        self._require_admin(token)
        items = self.world.enrollments_in_course(course.id)
        return self._enrollment_page(request, token, items, course, context="course")

    def _list_section_enrollments(self, request: Request, token: Token, ref: str) -> Response:
        section = self._section(ref)
        self._require_admin(token)
        course = self.world.courses[section.course_id]
        items = [
            e
            for e in self.world.enrollments_in_course(course.id)
            if e.course_section_id == section.id
        ]
        return self._enrollment_page(request, token, items, course, context="section")

    def _list_user_enrollments(self, request: Request, token: Token, ref: str) -> Response:
        user = self._user(ref, token)
        if not token.admin and user.id != token.user_id:
            raise views.unauthorized()
        items = [
            e
            for e in self.world.enrollments_of_user(user.id)
            if self.world.courses[e.course_id].workflow_state != "deleted"
        ]
        return self._enrollment_page(request, token, items, None, context="user", user=user)

    def _enrollment_page(
        self,
        request: Request,
        token: Token,
        items: list[Enrollment],
        course: Course | None,
        *,
        context: str,
        user: User | None = None,
    ) -> Response:
        params = request.params
        world = self.world

        def order(e: Enrollment) -> tuple[str, str, int]:
            return (e.type, world.users[e.user_id].sortable_name, e.id)

        # Sorting a big roster for every page would make paging it quadratic; a first page
        # (no bookmark) always recomputes, so only a pagination in progress reuses the order.
        filters = tuple(
            sorted((k, repr(v)) for k, v in params.items() if k not in EXCLUDED_FROM_CACHE_KEY)
        )
        cache_key = (request.raw_path, filters, token.user_id, world.version)
        page_param = params.get("page")
        cached = self._roster_cache.get(cache_key)
        if cached is not None and views.decode_bookmark(
            page_param if isinstance(page_param, str) else None
        ):
            page, link = views.bookmark_page(cached, order, params, request.page_request)
            return self._roster_response(request, page, link)
        states = set(as_list(params.get("state")))
        user_ref = params.get("user_id") if context != "user" else None
        wanted_user = self._user(str(user_ref), token) if user_ref is not None else user
        # A listing of the token's own enrollments (the user route, or a course or section
        # route given its own user_id) takes only SELF_LISTING_STATES (EAC user_index_enrollments).
        own = wanted_user is not None and wanted_user.id == token.user_id
        if states and own:
            for state in states:
                if state not in SELF_LISTING_STATES:
                    raise views.error_400(f"Invalid state {state}")
        if states and (context == "user" or own):
            expanded: set[str] = set()
            for state in states:
                if state in USER_CONTEXT_STATES:
                    expanded |= USER_CONTEXT_STATES[state]
                elif state in ENROLLMENT_STATES:
                    expanded.add(state)
            states = expanded
        if not states:
            states = (
                {"active", "invited"}
                if context == "user"
                else {"active", "invited", "creation_pending", "inactive"}
            )
        selected = [e for e in items if e.workflow_state in states]
        role_names = as_list(params.get("role"))
        role_ids = as_list(params.get("role_id"))
        if role_names or role_ids:
            wanted: set[int] = set()
            roles = world.course_roles(course.account_id if course else 1)
            for name in role_names:
                role = next((r for r in roles if r.label == name), None)
                if role is None:
                    raise views.generic_bad_request()  # Canvas: BadRequest "role not found"
                wanted.add(role.id)
            wanted |= {int(r) for r in role_ids if r.isdigit()}
            selected = [e for e in selected if e.role_id in wanted]
        elif types := set(as_list(params.get("type"))):
            selected = [e for e in selected if e.type in types]
        if user_ref is not None and wanted_user is not None:
            selected = [e for e in selected if e.user_id == wanted_user.id]
        sis_filters: list[tuple[str, Callable[[Enrollment], str | None]]] = [
            ("sis_user_id", lambda e: world.users[e.user_id].sis_user_id),
            ("sis_course_id", lambda e: world.courses[e.course_id].sis_course_id),
            ("sis_section_id", lambda e: world.sections[e.course_section_id].sis_section_id),
        ]
        if not (token.read_sis or token.manage_sis) and any(n in params for n, _ in sis_filters):
            # EAC check_sis_permissions
            raise views.bad_request("Insufficient permissions to filter by SIS fields")
        for name, value_of in sis_filters:
            if name in params:
                wanted_ids = set(as_list(params[name]))
                selected = [e for e in selected if value_of(e) in wanted_ids]

        selected.sort(key=order)
        if len(self._roster_cache) >= 32:
            self._roster_cache.clear()
        self._roster_cache[cache_key] = selected
        page, link = views.bookmark_page(selected, order, params, request.page_request)
        return self._roster_response(request, page, link)

    def _roster_response(
        self, request: Request, page: list[Enrollment], link: tuple[bytes, bytes]
    ) -> Response:
        world = self.world
        body = [views.enrollment_json(world, e, request.base_url, with_user=True) for e in page]
        response = views.json_response(body)
        response.headers.append(link)
        return response

    # ---- handlers: enrollment writes ------------------------------------------------------

    def _create_on_course(self, request: Request, token: Token, ref: str) -> Response:
        course = self._course(ref)
        return self._create(request, token, course, None)

    def _create_on_section(self, request: Request, token: Token, ref: str) -> Response:
        section = self._section(ref)
        return self._create(request, token, self.world.courses[section.course_id], section)

    def _create(
        self, request: Request, token: Token, course: Course, url_section: Section | None
    ) -> Response:
        """Canvas's `EnrollmentsApiController#create`, in its order of checks (§2.3)."""
        world = self.world
        params = request.params.get("enrollment")
        if not isinstance(params, dict) or not params:
            raise views.bad_request("No parameters given")
        errors: list[str] = []
        enrollment_type = str(params.get("type") or "")
        valid_roles = world.course_roles(course.account_id)
        role: Role | None
        if role_id := str(params.get("role_id") or ""):
            role = world.roles.get(int(role_id)) if role_id.isdigit() else None
        elif role_name := str(params.get("role") or ""):
            role = next((r for r in valid_roles if r.label == role_name), None)
        else:
            enrollment_type = enrollment_type or "StudentEnrollment"
            role = world.built_in_role(enrollment_type)
            if role is None:
                errors.append("Invalid type")
        if role is not None and role in valid_roles:
            enrollment_type = enrollment_type or role.base_role_type
            if role.workflow_state == "inactive":
                errors.append("Cannot create an enrollment with this role because it is inactive.")
            elif enrollment_type != role.base_role_type:
                errors.append("The specified type must match the base type for the role")
        elif not errors:
            errors.append("Invalid role")
        user_ref = params.get("user_id")
        if user_ref is None or str(user_ref).strip() == "":
            errors.append(
                "Can't create an enrollment without a user. Include enrollment[user_id] to create an enrollment"
            )
        requested_state = params.get("enrollment_state")
        if requested_state is not None and str(requested_state) not in CREATE_STATES:
            # Canvas passes unknown states through (§10); the simulator refuses them.
            errors.append(f"Invalid enrollment_state {requested_state}")
        if errors:
            raise views.bad_request(", ".join(errors))
        assert role is not None
        self._require_admin(token)
        if url_section is not None:
            section = url_section
        elif section_ref := str(params.get("course_section_id") or ""):
            found = world.find_section(section_ref)
            if found is None or found.course_id != course.id:
                raise views.not_found()
            section = found
        else:
            # `section ||= self.default_section` in Course#enroll_user (app/models/course.rb),
            # whatever sections the user is already in
            section = world.default_section(course)
        user = self._user(str(user_ref), token)
        if course.concluded:
            raise views.bad_request("Can't add an enrollment to a concluded course.")
        # The controller hands associated_user_id to `enroll_user` as given, and the integer
        # column casts it the Rails way: `sis_user_id:S9` is never looked up, it becomes 0
        # (instructure/canvas-lms app/controllers/enrollments_api_controller.rb, create).
        associated_user_id = rails_integer(params.get("associated_user_id"))
        if associated_user_id is not None:
            # app/models/enrollment.rb: validates associated_user_id inclusion in [nil] unless
            # an observer; cant_observe_self
            if enrollment_type != "ObserverEnrollment":
                message = "only ObserverEnrollments may have an associated_user_id"
                raise views.validation_error("associated_user_id", message, kind="inclusion")
            if associated_user_id == user.id:
                raise views.validation_error("associated_user_id", "Cannot observe yourself")
            # cant_observe_observer: course.enrollments (not deleted) holds the reverse link
            if any(
                e.type == "ObserverEnrollment"
                and e.user_id == associated_user_id
                and e.associated_user_id == user.id
                and e.workflow_state != "deleted"
                for e in world.enrollments_in_course(course.id)
            ):
                message = "Cannot observe observer observing self"
                raise views.validation_error("associated_user_id", message)
            if associated_user_id not in world.users:
                # No validation catches an id that names nobody; the foreign key
                # enrollments.associated_user_id -> users does, as an unhandled exception.
                self._stats.error_report_id += 1
                raise HttpError(views.internal_error(self._stats.error_report_id))
        state = self._initial_state(course, enrollment_type, requested_state)
        # Course#enroll_user (app/models/course.rb) writes these on a reused row too:
        # `limit_privileges_to_course_section = opts[...] || false`, `e.start_at = start_at`,
        # `e.end_at = end_at`. Absent means false and nil, so a re-POST without them resets them.
        limit = as_bool(params.get("limit_privileges_to_course_section", False))
        start_at = canvas_time(params.get("start_at") or None)
        end_at = canvas_time(params.get("end_at") or None)
        identity = (user.id, enrollment_type, role.id, associated_user_id, section.id)
        existing = world.find_enrollment(identity)
        stats = self._stats
        if existing is not None:
            stats.reposts += 1
            changed = False
            if existing.workflow_state != "active" and (
                existing.workflow_state in ("completed", "rejected", "deleted")
                or existing.workflow_state != state
            ):
                if existing.workflow_state == "deleted":
                    existing.sis_import_id = None  # Canvas clears sis_batch_id on revival (§2.4)
                existing.workflow_state = state
                stats.reactivated += 1
                changed = True
            new_values = (limit, start_at, end_at)
            old_values = (
                existing.limit_privileges_to_course_section,
                existing.start_at,
                existing.end_at,
            )
            if new_values != old_values:
                # a change made outside SIS makes the dates sticky for later imports
                existing.stuck_sis_fields |= stuck_dates(existing, start_at, end_at)
                existing.limit_privileges_to_course_section = limit
                existing.start_at, existing.end_at = start_at, end_at
                changed = True
            if changed:
                existing.updated_at = now_iso()
            enrollment = existing
        else:
            enrollment = world.add_enrollment(
                user,
                section,
                role,
                state=state,
                associated_user_id=associated_user_id,
                limit_privileges=limit,
                start_at=start_at,
                end_at=end_at,
            )
            enrollment.stuck_sis_fields |= stuck_dates(None, start_at, end_at)
            stats.enrollments_created += 1
        return views.json_response(views.enrollment_json(world, enrollment, request.base_url))

    @staticmethod
    def _initial_state(course: Course, enrollment_type: str, requested: Any) -> str:
        """The state a create lands in (§2.5)."""
        unpublished = course.workflow_state == "unpublished"
        if requested is None or requested == "":
            if enrollment_type == "ObserverEnrollment":
                return "active"
            if unpublished and enrollment_type not in STAFF_TYPES:
                return "creation_pending"
            return "invited"
        state = str(requested)
        if (
            state == "invited"
            and unpublished
            and enrollment_type not in STAFF_TYPES
            and enrollment_type != "ObserverEnrollment"
        ):
            return "creation_pending"
        return state

    def _course_enrollment(self, course_ref: str, enrollment_ref: str) -> Enrollment:
        course = self._course(course_ref)
        enrollment = (
            self.world.enrollments.get(int(enrollment_ref)) if enrollment_ref.isdigit() else None
        )
        if (
            enrollment is None
            or enrollment.course_id != course.id
            or enrollment.workflow_state == "deleted"
        ):
            raise views.not_found()
        return enrollment

    def _delete_enrollment(
        self, request: Request, token: Token, course_ref: str, enrollment_ref: str
    ) -> Response:
        enrollment = self._course_enrollment(course_ref, enrollment_ref)
        self._require_admin(token)
        task = str(request.params.get("task") or "conclude")
        enrollment.workflow_state = DELETE_TASKS.get(task, "completed")
        enrollment.updated_at = now_iso()
        return views.json_response(views.enrollment_json(self.world, enrollment, request.base_url))

    def _reactivate(
        self, request: Request, token: Token, course_ref: str, enrollment_ref: str
    ) -> Response:
        enrollment = self._course_enrollment(course_ref, enrollment_ref)
        self._require_admin(token)
        if enrollment.workflow_state != "inactive":
            raise views.error_400("enrollment not inactive")
        enrollment.workflow_state = "active"
        enrollment.updated_at = now_iso()
        return views.json_response(views.enrollment_json(self.world, enrollment, request.base_url))


def build_app(config: SimConfig | None = None, world: World | None = None) -> Simulator:
    return Simulator(config, world)
