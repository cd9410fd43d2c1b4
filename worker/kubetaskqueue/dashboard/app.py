"""The dashboard's routes: the page, its JSON API under /api/ and the live stream.

- ``GET /``: the page (static/index.html); ``/static/...``: its script and style
- ``GET /api/info``: version, namespace, whether actions are on
- ``GET /api/state``: topics (counts, rates, ages, sparkline) and live managers
- ``GET /api/stream``: the same, pushed each second as server-sent events (``state``)
- ``GET /api/schedules``: schedules live managers declare, with last and next fire time
- ``GET /api/topics/{topic}/dead?error=TEXT&limit=N``: dead tasks, newest first
- ``POST /api/topics/{topic}/dead/requeue`` and ``.../dead/purge``: body
  ``{"ids": [...]}`` or ``{"all": true}``, optionally ``"error": TEXT`` (only
  tasks whose error contains it) and ``"dry_run": true`` (count only)
- ``POST /api/topics/{topic}/pause`` and ``.../resume``: stop or restart claims
- ``GET /healthz``: ``ok``

Actions need ``--allow-actions`` and ``Authorization: Bearer <token>``. Every
response forbids inline scripts (CSP), so task data can never run as code, and
``/api/`` responses (payloads, tracebacks) carry ``Cache-Control: no-store``. In
front of every route (``guards``): a Host header not in ``allowed_hosts`` gets 400,
a body over ``max_body_bytes`` gets 413 before it is read.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..admin import iter_dead, purge_dead, requeue_dead, select_dead
from ..cluster import REDIS_ERRORS, Client
from ..keys import check_topic
from ..queue_state import known_topics
from ..schedules import read_schedules
from ..store import RedisStore
from ..version import __version__
from . import LOCAL_HOSTS, MAX_BODY_BYTES
from .guards import BodyLimit
from .live import LiveState

DEAD_LIST_LIMIT = 100  # dead tasks a page shows at once (actions reach all that match)
DEAD_LIST_MAX = 1000
PAYLOAD_PREVIEW_CHARS = 64 * 1024  # payloads may be 1 MiB; the page shows the start
KEEPALIVE_S = 15.0  # an idle stream sends a comment this often, so proxies keep it open

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
     b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
# API answers hold payloads and tracebacks: no browser or proxy cache may keep them.
API_PREFIX = "/api/"
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """Adds the CSP and friends to every response (streams too, unlike BaseHTTPMiddleware),
    and ``Cache-Control: no-store`` (instead of any other) to every ``/api/`` response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        api = str(scope.get("path", "")).startswith(API_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if api:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append(NO_STORE)
                message["headers"] = [*headers, *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def create_app(client: Client, namespace: str, *, allow_actions: bool = False,
               token: str | None = None, sample_interval_s: float = 1.0,
               allowed_hosts: Sequence[str] = LOCAL_HOSTS,
               max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The dashboard as an ASGI app: read-only unless ``allow_actions`` (which needs ``token``).

    ``allowed_hosts``: Host header patterns to serve (``dashboard.allowed_hosts`` makes
    them; ``*`` serves any); others get 400. Bodies over ``max_body_bytes`` get 413.
    """
    if allow_actions and not (token and token.strip()):
        raise ValueError("allow_actions needs a token (KUBETASKQUEUE_DASHBOARD_TOKEN)")
    store = RedisStore(client, namespace)
    live = LiveState(client, namespace, interval_s=sample_interval_s)
    static = resources.files(__package__).joinpath("static")
    index_html = static.joinpath("index.html").read_bytes()

    def check_token(request: Request) -> None:
        if not allow_actions:
            raise ApiError(403, "actions are off: start the dashboard with --allow-actions")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        assert token is not None
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 token.strip().encode()):
            raise ApiError(401, "send Authorization: Bearer <KUBETASKQUEUE_DASHBOARD_TOKEN>",
                           {"WWW-Authenticate": "Bearer"})

    def topic_of(request: Request) -> str:
        topic = str(request.path_params["topic"])
        try:
            check_topic(topic)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        if topic not in known_topics(client, namespace):
            raise ApiError(404, f"no topic {topic!r} in namespace {namespace!r}")
        return topic

    async def page(request: Request) -> Response:
        return Response(index_html, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})

    async def info(request: Request) -> Response:
        return JSONResponse({"version": __version__, "namespace": namespace,
                             "actions_enabled": allow_actions,
                             "sample_interval_s": sample_interval_s})

    async def state(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(live.sample))

    async def stream(request: Request) -> Response:
        async def messages() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            version = -1
            while True:
                version, snapshot = await live.wait_newer(version, KEEPALIVE_S)
                if snapshot is None:
                    yield ": keep-alive\n\n"
                else:
                    yield f"event: state\nid: {version}\ndata: {json.dumps(snapshot)}\n\n"

        return StreamingResponse(messages(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def schedules(request: Request) -> Response:
        views = await run_in_threadpool(read_schedules, client, namespace)
        return JSONResponse({"schedules": [v.as_dict() for v in views]})

    async def dead_list(request: Request) -> Response:
        topic = await run_in_threadpool(topic_of, request)
        error = request.query_params.get("error") or None
        try:
            limit = int(request.query_params.get("limit", DEAD_LIST_LIMIT))
        except ValueError as exc:
            raise ApiError(400, "limit must be a whole number") from exc
        limit = max(1, min(limit, DEAD_LIST_MAX))

        def read() -> tuple[list[dict[str, Any]], bool]:
            tasks: list[dict[str, Any]] = []
            for task in iter_dead(store, topic, error):
                if len(tasks) == limit:
                    return tasks, True
                row = task.as_dict()
                row["payload_truncated"] = len(task.payload) > PAYLOAD_PREVIEW_CHARS
                row["payload"] = task.payload[:PAYLOAD_PREVIEW_CHARS]
                tasks.append(row)
            return tasks, False

        tasks, more = await run_in_threadpool(read)
        return JSONResponse({"topic": topic, "error": error, "limit": limit, "tasks": tasks,
                             "more": more})

    def dead_action(action: str, apply: Callable[[RedisStore, str, list[str], bool], int]
                    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            check_token(request)
            topic = await run_in_threadpool(topic_of, request)
            ids, error, dry_run = parse_selection(await request.body())

            def act() -> int:
                chosen = select_dead(store, topic, ids, error)
                return apply(store, topic, chosen, dry_run)

            count = await run_in_threadpool(act)
            return JSONResponse({"topic": topic, "action": action, "count": count,
                                 "dry_run": dry_run})
        return endpoint

    def pause_action(paused: bool) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            check_token(request)
            topic = await run_in_threadpool(topic_of, request)
            who = f"from the dashboard ({request.client.host if request.client else '?'})"
            changed = await run_in_threadpool(store.set_paused, topic, paused, who)
            return JSONResponse({"topic": topic, "paused": paused, "changed": changed})
        return endpoint

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def no_content(request: Request) -> Response:
        return Response(status_code=204)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse({"error": str(exc)}, exc.status, headers=exc.headers)

    async def redis_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"cannot reach Redis: {exc}"}, 503)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await live.start()
        try:
            yield
        finally:
            await live.stop()

    routes = [
        Route("/", page),
        Route("/healthz", healthz),
        Route("/favicon.ico", no_content),
        Route("/api/info", info),
        Route("/api/state", state),
        Route("/api/stream", stream),
        Route("/api/schedules", schedules),
        Route("/api/topics/{topic}/dead", dead_list),
        Route("/api/topics/{topic}/dead/requeue", dead_action("requeue", requeue_dead),
              methods=["POST"]),
        Route("/api/topics/{topic}/dead/purge", dead_action("purge", purge_dead),
              methods=["POST"]),
        Route("/api/topics/{topic}/pause", pause_action(True), methods=["POST"]),
        Route("/api/topics/{topic}/resume", pause_action(False), methods=["POST"]),
        Mount("/static", StaticFiles(packages=[(__package__ or "", "static")])),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Any]] = {
        ApiError: api_error, **dict.fromkeys(REDIS_ERRORS, redis_error)}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    # The last added runs first: headers on every answer (refusals too), then the Host
    # check (before any body is read), then the body cap.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts),
                       www_redirect=False)
    app.add_middleware(SecurityHeaders)
    app.state.live = live
    return app


def parse_selection(body: bytes) -> tuple[list[str] | None, str | None, bool]:
    """``{"ids": [...]}`` or ``{"all": true}``, plus ``"error"`` filter and ``"dry_run"``."""
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, 'the body must be a JSON object, e.g. {"ids": ["..."]}')
    ids, all_ = data.get("ids"), data.get("all", False)
    if ids is not None and (not isinstance(ids, list)
                            or not all(isinstance(i, str) for i in ids)):
        raise ApiError(400, '"ids" must be a list of task id strings')
    if bool(ids) == (all_ is True):
        raise ApiError(400, 'give "ids" (a non-empty list) or "all": true, not both')
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        raise ApiError(400, '"error" must be a string')
    return (None if all_ is True else ids), (error or None), data.get("dry_run") is True
