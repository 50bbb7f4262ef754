"""The approval page for units with single sign-on: ``sidflows serve`` serves it when
SIDFLOWS_APPROVALS_WEB is on, behind the hospital's authenticating proxy (docs/sso.md).

Who is asking comes from one configured header the proxy sets (oauth2-proxy's
``X-Auth-Request-User`` by default), mapped to the staff roster's ``login``; the
header counts only on a request from the proxy: its address among
SIDFLOWS_APPROVALS_PROXIES and, when SIDFLOWS_APPROVALS_PROXY_SECRET is set, the
secret in ``X-Sidflows-Proxy-Secret``. Anything else gets 403 before any page.

A clinician's answer (approve, approve without some items, reject) goes through
``service.decide`` with the proven identity (the audit entry says ``proven`` and the
login), then resumes the child's suspended pathway run with it, as ``sidflows
approve`` does; with no run waiting, the activation runs here, or, with Prefect
down, the stored intent is carried out by serve's next pass or the sweep.

Every form carries a CSRF token: an HMAC, under a key of this process, of the login
and a random value kept in a SameSite=Strict cookie. Pages show refs only unless
SIDFLOWS_APPROVALS_SHOW_IDENTITY is on. No JavaScript.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from flows import orchestrator, runtime
from flows.artifacts import item_summary
from sidflows import service
from sidflows.errors import ConfigError, InvalidInput, UnknownPatient
from sidflows.service import approvals
from sidflows.settings import Settings, get_settings
from sidflows.staff import StaffMember
from sidflows.store import db
from sidflows.store.patients import get_patient
from sidflows.store.views import show_document

SECRET_HEADER = "X-Sidflows-Proxy-Secret"
CSRF_COOKIE = "sidflows_csrf"
DECISIONS = ("approve", "modify", "reject")
MAX_FORM_BYTES = 64 * 1024

_templates = Environment(
    loader=PackageLoader("flows", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["summary"] = item_summary


@dataclass(frozen=True)
class Caller:
    """The clinician (or other staff member) the proxy proved."""

    login: str
    member: StaffMember
    nonce: str  # the CSRF cookie's value (new when the browser had none)
    new_nonce: bool


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Page:
    """The page's settings, roster and CSRF key, read once when serve starts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.networks = [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in settings.approvals_proxies.split(",")
        ]
        self.header = settings.approvals_user_header
        self.key = secrets.token_bytes(32)

    # ------------------------------------------------------------------ who is asking

    def from_proxy(self, request: Request) -> None:
        peer = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            raise Refused(403, "refused: not from the unit's authenticating proxy") from None
        if not any(address in network for network in self.networks):
            raise Refused(403, "refused: not from the unit's authenticating proxy")
        secret = self.settings.approvals_proxy_secret
        if secret is not None:
            given = request.headers.get(SECRET_HEADER, "")
            if not hmac.compare_digest(given.encode(), secret.encode()):
                raise Refused(403, "refused: not from the unit's authenticating proxy")

    def caller(self, request: Request) -> Caller:
        self.from_proxy(request)
        login = request.headers.get(self.header, "").strip()
        if not login:
            raise Refused(403, f"refused: the proxy sent no {self.header}: sign in first")
        member = runtime.unit().staff.by_login(login)
        if member is None:
            raise Refused(403, f"refused: {login!r} is no login in the unit's staff roster")
        nonce = request.cookies.get(CSRF_COOKIE, "")
        fresh = len(nonce) != 43  # token_urlsafe(32)
        return Caller(login, member, secrets.token_urlsafe(32) if fresh else nonce, fresh)

    # ------------------------------------------------------------------ CSRF

    def token(self, caller: Caller) -> str:
        message = f"{caller.login}|{caller.nonce}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def check_token(self, caller: Caller, given: str) -> None:
        if caller.new_nonce or not hmac.compare_digest(given.encode(), self.token(caller).encode()):
            raise Refused(
                403, "refused: the form is stale or was not this page's (CSRF): reload it"
            )

    # ------------------------------------------------------------------ rendering

    def render(self, request: Request, caller: Caller, name: str, **values: Any) -> HTMLResponse:
        html = _templates.get_template(name).render(
            caller=caller, csrf=self.token(caller), header=self.header, **values
        )
        response = HTMLResponse(html)
        self._set_cookie(request, response, caller)
        return response

    def _set_cookie(self, request: Request, response: Response, caller: Caller) -> None:
        secure = request.headers.get("X-Forwarded-Proto", request.url.scheme) == "https"
        response.set_cookie(
            CSRF_COOKIE,
            caller.nonce,
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
        )


def _hardened(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    )
    return response


def _error(status: int, message: str) -> HTMLResponse:
    html = _templates.get_template("approvals/error.html").render(status=status, message=message)
    return HTMLResponse(html, status_code=status)


def _form_fields(body: bytes) -> dict[str, list[str]]:
    if len(body) > MAX_FORM_BYTES:
        raise Refused(413, "refused: the form is too large")
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    page = Page(settings or get_settings())
    app = FastAPI(title="sidflows approvals", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def harden(request: Request, call_next: Any) -> Response:
        try:
            page.from_proxy(request)  # before any route: nothing answers anyone else
        except Refused as refused:
            return _hardened(_error(refused.status, refused.message))
        response: Response = await call_next(request)
        return _hardened(response)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        try:
            caller = page.caller(request)
        except Refused as refused:
            return _error(refused.status, refused.message)
        return page.render(request, caller, "approvals/index.html", waiting=approvals.waiting())

    @app.get("/plans/{ref}", response_class=HTMLResponse)
    def plan(request: Request, ref: str) -> Response:
        try:
            caller = page.caller(request)
            found = approvals.proposal(ref, identity=page.settings.approvals_show_identity)
        except Refused as refused:
            return _error(refused.status, refused.message)
        except UnknownPatient:
            return _error(404, f"no child {ref!r} in the unit")
        except InvalidInput as problem:
            return _error(404, problem.message)
        return page.render(request, caller, "approvals/plan.html", plan=found)

    @app.post("/plans/{ref}", response_class=HTMLResponse)
    async def answer(request: Request, ref: str) -> Response:
        try:
            caller = page.caller(request)
            form = _form_fields(await request.body())
            page.check_token(caller, (form.get("csrf") or [""])[0])
        except Refused as refused:
            return _error(refused.status, refused.message)
        return await _answer(request, page, caller, ref, form)

    @app.get("/plans/{ref}/answered", response_class=HTMLResponse)
    def answered(request: Request, ref: str, message: str = "", resumed: str = "") -> Response:
        try:
            caller = page.caller(request)
        except Refused as refused:
            return _error(refused.status, refused.message)
        return page.render(
            request,
            caller,
            "approvals/answered.html",
            ref=ref,
            message=message,
            resumed=resumed,
            status=_status(ref),
        )

    return app


def _status(ref: str) -> dict[str, Any] | None:
    with db.session_scope() as session:
        patient = get_patient(session=session, ref=ref)
        document = show_document(session=session, patient=patient)
        state = str(patient.state)
    if document is None:
        return {"state": state, "version": None, "plan_status": None}
    return {
        "state": state,
        "version": document["plan_version"],
        "plan_status": document["plan_status"],
    }


async def _answer(
    request: Request, page: Page, caller: Caller, ref: str, form: dict[str, list[str]]
) -> Response:
    decision = (form.get("decision") or [""])[0]
    note = (form.get("note") or [""])[0].strip() or None
    remove = tuple(k for k in form.get("remove", []) if k)
    version = (form.get("version") or [""])[0]
    if decision not in DECISIONS:
        return _error(400, f"decision: one of {', '.join(DECISIONS)}, not {decision!r}")
    if decision == "reject" and note is None:
        return _error(400, "note: say why the plan is rejected")
    if decision == "modify" and not remove:
        return _error(400, "remove: tick the items to leave out of the plan")
    if note is not None and len(note) > 2000:
        return _error(400, "note: at most 2,000 characters")
    try:
        waiting = approvals.proposal(ref)
    except UnknownPatient:
        return _error(404, f"no child {ref!r} in the unit")
    except InvalidInput as problem:
        return _error(409, problem.message)
    if version != str(waiting["version"]):
        return _error(
            409,
            f"version: the page showed v{version or '?'}, plan v{waiting['version']} waits now: "
            "reload the page and answer that one",
        )
    identity = {
        "identity": "proven",
        "login": caller.login,
        "header": page.header,
        "via": "approval page",
    }

    def decide_and_resume() -> tuple[str, str]:
        unit = runtime.unit()
        result = service.decide(
            ref,
            unit=unit,
            decision=decision,  # type: ignore[arg-type]
            by=caller.member.name,
            note=note,
            remove_items=remove,
            identity=identity,
        )
        # The suspended pathway run (if one waits) resumes with the stored answer.
        run_input = {
            "decision": "reject" if decision == "reject" else "approve",
            "approver": caller.member.name,
            "note": note,
        }
        if decision == "reject":  # nothing to activate: only the waiting run is told
            return result.message, orchestrator.resume_pathway(ref, run_input)
        return result.message, orchestrator.OnServer().answered(ref, run_input)

    try:
        message, told = await anyio.to_thread.run_sync(decide_and_resume)
    except InvalidInput as problem:
        return _error(403 if problem.field == "login" else 400, problem.message)
    except ConfigError as problem:
        return _error(500, f"configuration: {problem}")
    target = f"/plans/{quote(ref)}/answered?message={quote(message)}&resumed={quote(told)}"
    return RedirectResponse(target, status_code=303)


# ----------------------------------------------------------------------------- in serve


def listen_address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.approvals_listen.rpartition(":")
    return host.strip("[]"), int(port)


def start_in_background(settings: Settings | None = None) -> uvicorn.Server:
    """The page in a thread of ``serve``; returns once it listens (or raises ConfigError)."""
    settings = settings or get_settings()
    host, port = listen_address(settings)
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # the peer is the proxy: never take its address from a header
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="approvals-page", daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            return server
        if not thread.is_alive():
            raise ConfigError(f"SIDFLOWS_APPROVALS_LISTEN: cannot listen on {host}:{port}")
        threading.Event().wait(0.05)
    raise ConfigError(f"SIDFLOWS_APPROVALS_LISTEN: {host}:{port} did not start listening")
