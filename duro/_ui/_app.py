"""The web application: routes, the guard in front of them, and the actions.

Server-rendered HTML (Jinja2, autoescaped) with one small script for live refresh, dialogs
and the theme; every asset is served from the package, nothing from the internet. The guard
answers before any route:

* **Host check** (loopback): only ``127.0.0.1:PORT``, ``localhost:PORT`` and ``[::1]:PORT``,
  so a web page elsewhere cannot reach the view through DNS rebinding.
* **Access token** (any other interface): the token printed at start-up, from ``?token=``
  once (then an HttpOnly, SameSite=Strict cookie), the cookie, or ``Authorization: Bearer``.
  Nothing else gets in.
* **Actions** are POSTs that must carry the page's form key (a per-process secret that only
  pages of this server contain) and, when the browser sends one, a same-origin ``Origin``:
  another site cannot make a visitor's browser cancel or delete anything.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from .._client import Client
from .._errors import (
    DuroError,
    InstanceNotFoundError,
    InstanceStillRunningError,
    PayloadError,
    ProviderError,
)
from ..providers import Provider
from ..providers._types import LISTED_STATES
from . import _present as present
from ._pages import (
    COUNT_LIMIT,
    PAGE_SIZES,
    BadFilter,
    CountsCache,
    Filters,
    UnknownInstance,
    axis,
    count_chips,
    draw,
    instance_url,
    read_instance,
)
from ._timeline import duration

HERE = Path(__file__).parent
TOKEN_COOKIE = "duro_ui_token"
FORM_LIMIT = 1_000_000
"""Bytes of one action's form (an event's data included)."""
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # with no-referrer, form posts send Origin: null
    "cache-control": "no-store",
}
"""Bar positions are inline styles; scripts only ever come from ``/static``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UiOptions:
    """How the view behaves; ``duro ui`` fills it from its flags."""

    store_label: str = ""
    """What the header says the store is (a path, or Cosmos DB's endpoint)."""
    refresh: float = 2.0
    """Seconds between live refreshes of an open page (0: never)."""
    counts_every: float = 5.0
    """Seconds the counts by state are reused for (every viewer shares them)."""
    read_only: bool = False
    """No actions: the buttons are gone and the routes answer 403."""
    token: str | None = None
    """Required from every visitor when set (binding beyond loopback)."""
    allowed_hosts: frozenset[str] | None = None
    """The ``Host`` headers accepted; None accepts any (behind a token, or in tests)."""


def create_app(store: Provider, options: UiOptions | None = None) -> ASGIApp:
    """The view of ``store`` (opened and closed by the caller) as an ASGI application."""
    ui = _Ui(store, options or UiOptions())
    routes = [
        Route("/", ui.home),
        Route("/instances", ui.instances, name="instances"),
        Route("/instances/{instance_id}", ui.instance, name="instance"),
        Route("/instances/{instance_id}/raise-event", ui.raise_event, methods=["POST"]),
        Route("/instances/{instance_id}/cancel", ui.cancel, methods=["POST"]),
        Route("/instances/{instance_id}/delete", ui.delete, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={ProviderError: ui.store_failed})
    return _Guard(app, ui.options)


class _Ui:
    def __init__(self, store: Provider, options: UiOptions) -> None:
        self.store = store
        self.client = Client(store)
        self.options = options
        self.counts = CountsCache(store, options.counts_every)
        self.form_key = secrets.token_urlsafe(24)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        env = self.templates.env
        env.filters.update(
            local_time=present.local_time,
            iso=present.iso,
            duration=duration,
            short=present.short,
        )
        env.globals.update(
            summary=present.event_summary,
            payloads=present.event_payloads,
            error_fields=present.error_fields,
            instance_url=instance_url,
        )

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        context = {
            "base": base,
            "store_label": self.options.store_label,
            "refresh": self.options.refresh,
            "read_only": self.options.read_only,
            "form_key": self.form_key,
            **context,
        }
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    @staticmethod
    def partial(request: Request) -> bool:
        return request.headers.get("x-duro-partial") == "1"

    # -- pages ------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/instances", 303)

    async def instances(self, request: Request) -> Response:
        base = request.scope.get("root_path", "")
        error = ""
        rows: list[Any] = []
        next_url = ""
        try:
            filters = Filters.parse(request.query_params)
            query = filters.query()
        except BadFilter as exc:
            filters, query, error = Filters(), None, str(exc)
        if query is not None:
            try:
                page = await self.store.list_instances(query)
            except ProviderError as exc:
                if exc.retryable:
                    raise
                error = f"cannot list: {exc.message}"  # a stale or mangled page address
            else:
                rows = page.instances
                if page.continuation:
                    next_url = filters.url(base, after=page.continuation)
        counts = await self.counts.get()
        context = {
            "filters": filters,
            "rows": rows,
            "error": error,
            "chips": count_chips(counts, filters, base),
            "capped": bool(counts.capped),
            "count_limit": COUNT_LIMIT,
            "next_url": next_url,
            "first_url": filters.url(base, after="") if filters.after else "",
            "live_url": filters.url(base),
            "states": [s.value for s in LISTED_STATES],
            "page_sizes": PAGE_SIZES,
            "notice": request.query_params.get("notice", ""),
            "deleted": request.query_params.get("deleted", ""),
        }
        template = "_list_live.html" if self.partial(request) else "list.html"
        return self.render(request, template, context, 400 if error else 200)

    async def instance(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        instance_id = request.path_params["instance_id"]
        raw_execution = request.query_params.get("execution", "")
        execution = int(raw_execution) if raw_execution.isdigit() else None
        try:
            view = await read_instance(self.store, instance_id, execution)
        except UnknownInstance:
            return self.render(request, "missing.html", {"instance_id": instance_id}, 404)
        context = {
            "v": view,
            "r": view.record,
            "lanes": draw(view.timeline),
            "axis": axis(view.timeline),
            "error": error,
            "notice": request.query_params.get("notice", ""),
            "event_name": request.query_params.get("event", ""),
            "live_url": instance_url(
                request.scope.get("root_path", ""), instance_id, execution=raw_execution
            ),
        }
        template = "_instance_live.html" if self.partial(request) else "instance.html"
        response = self.render(request, template, context, status)
        if not view.live:
            response.headers["x-duro-live"] = "stop"
        return response

    async def store_failed(self, request: Request, exc: Exception) -> Response:
        message = exc.message if isinstance(exc, ProviderError) else str(exc)
        return self.render(request, "failed.html", {"message": message}, 503)

    # -- actions ----------------------------------------------------------------------------

    async def _action(
        self,
        request: Request,
        act: Callable[[str, dict[str, str]], Awaitable[str]],
    ) -> Response:
        if self.options.read_only:
            return PlainTextResponse("this view is read-only (duro ui --read-only)", 403)
        form = await _form(request)
        if form is None:
            return PlainTextResponse("the form is too large", 413)
        if not hmac.compare_digest(form.get("form_key", ""), self.form_key):
            return PlainTextResponse(
                "this form did not come from this server (reload the page and try again)", 403
            )
        instance_id = request.path_params["instance_id"]
        try:
            target = await act(instance_id, form)
        except (InstanceNotFoundError, UnknownInstance):
            return self.render(request, "missing.html", {"instance_id": instance_id}, 404)
        except InstanceStillRunningError:
            message = "it is still running: cancel it first, or wait until it ends"
            return await self.instance(request, error=f"Not deleted: {message}.", status=409)
        except (BadFilter, PayloadError, ValueError) as exc:
            return await self.instance(request, error=str(exc), status=400)
        except DuroError as exc:
            return await self.instance(request, error=str(exc), status=400)
        self.counts.forget()
        return RedirectResponse(target, 303)

    async def raise_event(self, request: Request) -> Response:
        async def act(instance_id: str, form: dict[str, str]) -> str:
            name = form.get("name", "").strip()
            text = form.get("data", "").strip() or "null"
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BadFilter(f"the event's data is not valid JSON: {exc}") from None
            await self.client.raise_event(instance_id, name, data)
            base = request.scope.get("root_path", "")
            return instance_url(base, instance_id, notice="raised", event=name)

        return await self._action(request, act)

    async def cancel(self, request: Request) -> Response:
        async def act(instance_id: str, form: dict[str, str]) -> str:
            reason = form.get("reason", "").strip() or "cancelled from duro ui"
            await self.client.cancel_orchestration(instance_id, reason)
            return instance_url(request.scope.get("root_path", ""), instance_id, notice="cancel")

        return await self._action(request, act)

    async def delete(self, request: Request) -> Response:
        async def act(instance_id: str, form: dict[str, str]) -> str:
            result = await self.client.delete_instance(instance_id)
            base = request.scope.get("root_path", "")
            query = urlencode(
                {"notice": "deleted", "deleted": instance_id, "n": result.instances_deleted}
            )
            return f"{base}/instances?{query}"

        return await self._action(request, act)


async def _form(request: Request) -> dict[str, str] | None:
    """An urlencoded form (what the pages post); None when it is too large. Parsed here: the
    multipart parser Starlette would need for ``request.form()`` is one more dependency."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in fields.items()}


class _Guard:
    """Host check, access token, same-origin actions and security headers (module docstring)."""

    def __init__(self, app: ASGIApp, options: UiOptions) -> None:
        self.app = app
        self.token = options.token
        self.allowed_hosts = options.allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        refusal = self._refuse(scope, headers, host)
        if refusal is None:
            refusal = self._authenticate(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def send_secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                present = {name.lower() for name, _ in message["headers"]}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        message["headers"].append((name.encode(), value.encode()))
            await send(message)

        await self.app(scope, receive, send_secured)

    def _refuse(self, scope: Scope, headers: Headers, host: str) -> Response | None:
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return PlainTextResponse(
                f"duro ui does not answer to host {host!r}: open the address it printed", 421
            )
        origin = headers.get("origin")
        cross_site = origin is not None and urlsplit(origin).netloc.lower() != host
        if scope["method"] not in ("GET", "HEAD") and cross_site:
            return PlainTextResponse("actions are accepted from this view's pages only", 403)
        return None

    def _authenticate(self, scope: Scope, headers: Headers) -> Response | None:
        if self.token is None:
            return None
        token = self.token
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [""])[-1]
        if given and hmac.compare_digest(given, token):
            # Once: keep it in a cookie and take it out of the address bar (and history).
            rest = urlencode([(k, v) for k, vs in query.items() if k != "token" for v in vs])
            path = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            response = RedirectResponse(path, 303)
            response.set_cookie(
                TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/", max_age=86400 * 7
            )
            return response
        cookie = _cookie(headers, TOKEN_COOKIE)
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if any(v and hmac.compare_digest(v, token) for v in (cookie, bearer)):
            return None
        return PlainTextResponse(
            "duro ui needs its access token: open the address it printed at start-up", 401
        )


def _cookie(headers: Headers, name: str) -> str:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""
