"""The French web UI of the campaign server: HTML pages over server.services (no JavaScript, no CDN).

Sessions are a signed cookie (HMAC-SHA256 over a small JSON payload: user id, CSRF token, issue time, a
fingerprint of the user's password hash so that a password change ends every session), HttpOnly,
SameSite=Lax, Secure when the request came over HTTPS, 12 h at most. Every POST carries the session's CSRF
token in a hidden field (`csrf`), compared in constant time: a missing or wrong token is refused with 403
before anything else is read or done. An editor sees only their own DRIMbox and campaigns: services return
None for anything else, shown as 404 (the same page as a campaign that does not exist). ANS pages answer 403
to an editor. Uploads are capped by Content-Length before the body is read.

Evidence: the campaign's report.html (written by the CLI) is served as is under a Content-Security-Policy
that lets it run only its own inline code and reach nothing; its « ouvrir le fichier » links resolve to
/campagnes/<id>/evidence/..., served through drimcheck.reports.evidence_view.safe_evidence_path (regular
files under <run>/evidence/ only: no `..`, no symlink, no absolute path).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

HERE = Path(__file__).resolve().parent
COOKIE = "drimcheck_session"
SESSION_MAX_AGE = 12 * 3600
SUT_MAX_BYTES = 256 * 1024  # a sut.toml, pasted or uploaded
FORM_MAX_BYTES = SUT_MAX_BYTES * 2 + 64 * 1024  # any ordinary form (two copies of a sut.toml at most)
PACKAGE_MAX_BYTES = 256 * 1024 * 1024  # a referencing package uploaded for verification (services.MAX_PACKAGE_BYTES)
REFRESH_S = 2  # auto-refresh of a queued or running campaign's page
LOGIN_MAX_FAILURES = 5  # failed logins for one name from one address within LOGIN_WINDOW_S: then refused
LOGIN_WINDOW_S = 300

VERDICT_FR = {
    "PASS": "Conforme", "FAIL": "Non conforme", "WARN": "Avertissement", "SKIP": "Non applicable",
    "ERROR": "Erreur d'exécution", "NOT_RUN": "Non exécutée", "NOT_TESTED": "Non testée",
}
VERDICT_ORDER = {"FAIL": 0, "ERROR": 1, "WARN": 2, "PASS": 3, "SKIP": 4, "NOT_TESTED": 5, "NOT_RUN": 6}
STATUS_FR = {"queued": "en file d'attente", "running": "en cours", "done": "terminée", "error": "en erreur"}
MODE_FR = {"full": "complète", "referencement": "référencement", "partial": "partielle (exigences choisies)"}
ROLE_FR = {"editor": "éditeur", "ans": "ANS"}
REQ_ID = re.compile(r"^[A-Z][A-Z0-9]*-[0-9]{2,3}$")


class WebError(Exception):
    """An HTTP error shown as a French page (403, 404, 413...)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Redirect(Exception):
    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


# ----------------------------------------------------------------------------------------- signed session


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_session(secret: bytes, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    mac = hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def read_session(secret: bytes, value: str | None, now: float | None = None) -> dict[str, Any] | None:
    """The payload of a cookie this server signed and that has not expired; None otherwise."""
    if not value or len(value) > 4096 or value.count(".") != 1:
        return None
    body, mac = value.split(".")
    try:
        expected = hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("c"), str) or not isinstance(payload.get("t"), int):
        return None
    if (now if now is not None else time.time()) - payload["t"] > SESSION_MAX_AGE:
        return None
    return payload


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:16]


def load_secret(data_dir: Path | None) -> bytes:
    """The key that signs session cookies: DRIMCHECK_SECRET_KEY, else <data_dir>/secret.key (created 0600)."""
    env = os.environ.get("DRIMCHECK_SECRET_KEY")
    if env:
        return env.encode("utf-8")
    if data_dir is None:
        return secrets.token_bytes(32)  # sessions then last as long as the process
    path = Path(data_dir) / "secret.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
        if len(key) >= 32:
            return key
        raise RuntimeError(f"clé de session {path} trop courte (32 octets au moins)") from None
    with os.fdopen(fd, "wb") as f:
        key = secrets.token_hex(32).encode("ascii")
        f.write(key)
    return key


class _Failures:
    """Recent failed logins per (client address, name), in this process: a brake on password guessing."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], list[float]] = {}

    def wait_s(self, key: tuple[str, str], now: float) -> int:
        """Seconds before `key` may try again (0: now)."""
        with self._lock:
            recent = [t for t in self._seen.get(key, []) if now - t < LOGIN_WINDOW_S]
            self._seen[key] = recent
            if len(recent) < LOGIN_MAX_FAILURES:
                return 0
            return int(LOGIN_WINDOW_S - (now - recent[-LOGIN_MAX_FAILURES])) + 1

    def failed(self, key: tuple[str, str], now: float) -> None:
        with self._lock:
            if len(self._seen) > 10_000:  # bounded memory
                self._seen.clear()
            self._seen.setdefault(key, []).append(now)

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._seen.pop(key, None)


# ----------------------------------------------------------------------------------------- request context


@dataclass
class Ctx:
    """One request: its database session, the signed-in user (or None) and the session's CSRF token."""

    request: Request
    db: Any
    user: Any = None
    csrf: str = ""
    set_cookie: str | None = None  # a new cookie value to send with the response
    flash: list[str] = field(default_factory=list)

    @property
    def is_ans(self) -> bool:
        return self.user is not None and self.user.role == "ans"


def _services() -> Any:
    from drimcheck.server import services

    return services


def _models() -> Any:
    from drimcheck.server import models

    return models


def _secret(request: Request) -> bytes:
    return request.app.state.web_secret


@contextmanager
def _context(request: Request, *, login: bool = True) -> Iterator[Ctx]:
    """Open the request's DB session and read its cookie; `login`: redirect to the login page when signed out."""
    with request.app.state.sessions() as db:
        ctx = Ctx(request=request, db=db)
        payload = read_session(_secret(request), request.cookies.get(COOKIE))
        if payload is not None:
            ctx.csrf = payload["c"]
            uid = payload.get("u")
            if isinstance(uid, int):
                user = db.get(_models().User, uid)
                if user is not None and hmac.compare_digest(payload.get("p", ""), _fingerprint(user.password_hash)):
                    ctx.user = user
        if not ctx.csrf:  # anonymous visitor: a session that carries only a CSRF token (for the login form)
            _new_session(ctx, None)
        if login and ctx.user is None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _Redirect("/connexion" + (f"?suite={quote(path, safe='')}" if path not in ("/", "") else ""))
        yield ctx


def _new_session(ctx: Ctx, user: Any) -> None:
    """A fresh session (new CSRF token: no fixation across a login or a logout)."""
    ctx.csrf = secrets.token_urlsafe(24)
    ctx.user = user
    payload: dict[str, Any] = {"c": ctx.csrf, "t": int(time.time()), "u": None}
    if user is not None:
        payload.update(u=user.id, p=_fingerprint(user.password_hash))
    ctx.set_cookie = sign_session(_secret(ctx.request), payload)


def _apply_cookie(ctx: Ctx, response: Response) -> Response:
    if ctx.set_cookie is not None:
        response.set_cookie(COOKIE, ctx.set_cookie, max_age=SESSION_MAX_AGE, path="/", httponly=True,
                            samesite="lax", secure=ctx.request.url.scheme == "https")
    return response


def _require_ans(ctx: Ctx) -> None:
    if not ctx.is_ans:
        raise WebError(403, "Page réservée aux comptes ANS.")


# ----------------------------------------------------------------------------------------- templates


def _verdict_class(verdict: str | None) -> str:
    """CSS class of an overall verdict in the report's words (CONFORME, NON CONFORME, ...)."""
    v = (verdict or "").upper()
    if "NON CONFORME" in v:
        return "FAIL"
    if v.startswith("MUTANT"):
        return "MODE"
    if v.startswith("CONFORME"):
        return "PASS"
    if "HORS RÉFÉRENCEMENT" in v or "INTERROMPU" in v:
        return "WARN"
    return "ERROR" if v else "NOT_RUN"


def _verdict_short(verdict: str | None) -> str:
    """CONFORME / NON CONFORME / HORS RÉFÉRENCEMENT / ... without the qualifiers (for the dashboard's matrix)."""
    v = verdict or ""
    if "NON CONFORME" in v.upper():
        return "NON CONFORME"
    return v.split(" (", 1)[0].split(" —", 1)[0][:40]


def _build_env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(VERDICT_FR=VERDICT_FR, STATUS_FR=STATUS_FR, MODE_FR=MODE_FR, ROLE_FR=ROLE_FR,
                       verdict_class=_verdict_class, verdict_short=_verdict_short, quote=lambda s: quote(str(s), safe="/"))
    env.filters["date"] = lambda d: d.strftime("%d/%m/%Y %H:%M:%S UTC") if d is not None else "—"
    return env


_ENV = _build_env()


def _render(ctx: Ctx, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = _ENV.get_template(template).render(user=ctx.user, csrf=ctx.csrf, is_ans=ctx.is_ans, flash=ctx.flash,
                                              path=ctx.request.url.path, **values)
    return _apply_cookie(ctx, HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS))  # type: ignore[return-value]


_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# report.html is self-contained: inline style and script, data: images; nothing else, no form, no frame.
_REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                               "img-src data:; form-action 'none'; frame-ancestors 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _redirect(ctx: Ctx, url: str) -> Response:
    return _apply_cookie(ctx, RedirectResponse(url, status_code=303))


def _safe_next(value: str | None) -> str:
    """A local path to go back to after logging in; anything else (another host, //x, \\x) gives "/"."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 500:
        return "/"
    return value


# ----------------------------------------------------------------------------------------- forms and CSRF


def _content_length(request: Request, cap: int) -> None:
    raw = request.headers.get("content-length")
    if raw is None or not raw.isdigit():
        raise WebError(411, "Requête sans longueur déclarée (Content-Length) : refusée.")
    if int(raw) > cap:
        raise WebError(413, f"Envoi trop volumineux : {int(raw) // 1024} Kio reçus, {cap // 1024} Kio au plus.")


async def _form(request: Request, cap: int = FORM_MAX_BYTES) -> FormData:
    """The form of a POST, its size capped, after the CSRF check (403 on a missing or wrong token)."""
    _content_length(request, cap)
    form = await request.form(max_files=2, max_fields=50, max_part_size=cap)
    payload = read_session(_secret(request), request.cookies.get(COOKIE))
    token = form.get("csrf")
    if payload is None or not isinstance(token, str) or not hmac.compare_digest(token.encode(), payload["c"].encode()):
        await form.close()
        raise WebError(403, "Jeton CSRF absent ou invalide : rechargez la page et recommencez.")
    return form


def _text(form: FormData, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


async def _upload_text(form: FormData, name: str, cap: int) -> str | None:
    """The text of an uploaded file field (None when no file was chosen)."""
    value = form.get(name)
    if not isinstance(value, UploadFile) or not value.filename:
        return None
    data = await value.read(cap + 1)
    if len(data) > cap:
        raise WebError(413, f"Fichier trop volumineux : {cap // 1024} Kio au plus.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WebError(400, "Le fichier envoyé n'est pas un texte UTF-8.") from None


# ----------------------------------------------------------------------------------------- router

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Mount the UI on `app`: static files, pages, the session key and the French error pages."""
    app.state.web_secret = load_secret(getattr(app.state, "data_dir", None))
    app.state.web_login_failures = _Failures()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(router)
    app.add_exception_handler(WebError, _web_error)  # type: ignore[arg-type]
    app.add_exception_handler(_Redirect, _redirect_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]


def _web_error(request: Request, exc: WebError) -> HTMLResponse:
    html = _ENV.get_template("erreur.html").render(user=None, csrf="", is_ans=False, flash=[], path=request.url.path,
                                                   status=exc.status, message=exc.message)
    return HTMLResponse(html, status_code=exc.status, headers=_PAGE_HEADERS)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Unknown pages get the French error page; the API (/api) keeps FastAPI's JSON errors."""
    if request.url.path.startswith("/api") or exc.status_code not in (404, 405):
        return await http_exception_handler(request, exc)
    message = "Page introuvable." if exc.status_code == 404 else "Méthode non autorisée pour cette page."
    return _web_error(request, WebError(exc.status_code, message))


def _redirect_handler(request: Request, exc: _Redirect) -> Response:
    return RedirectResponse(exc.url, status_code=303)


def _not_found() -> WebError:
    return WebError(404, "Page introuvable, ou réservée à un autre compte.")


def _int(value: str) -> int:
    if not value.isdigit() or len(value) > 12:
        raise _not_found()
    return int(value)


async def _post(request: Request, work: Callable[[Ctx, FormData], Response], cap: int = FORM_MAX_BYTES,
                login: bool = True) -> Response:
    form = await _form(request, cap)
    try:
        return await run_in_threadpool(_in_context, request, work, form, login)
    finally:
        await form.close()


def _in_context(request: Request, work: Callable[[Ctx, FormData], Response], form: FormData, login: bool) -> Response:
    with _context(request, login=login) as ctx:
        return work(ctx, form)


# --- login / logout


@router.get("/connexion")
def login_page(request: Request, suite: str = "/") -> Response:
    with _context(request, login=False) as ctx:
        if ctx.user is not None:
            return _redirect(ctx, _safe_next(suite))
        return _render(ctx, "connexion.html", suite=_safe_next(suite))


@router.post("/connexion")
async def login(request: Request) -> Response:
    def work(ctx: Ctx, form: FormData) -> Response:
        name, password = _text(form, "nom", 100), form.get("mot_de_passe")
        nxt = _safe_next(_text(form, "suite", 500))
        failures: _Failures = request.app.state.web_login_failures
        key, now = (request.client.host if request.client else "", name.lower()), time.monotonic()
        wait = failures.wait_s(key, now)
        if wait:
            ctx.flash.append(f"Trop de tentatives de connexion échouées : réessayez dans {wait} s.")
            return _render(ctx, "connexion.html", status=429, suite=nxt, nom=name)
        user = _services().authenticate(ctx.db, name, password) if name and isinstance(password, str) else None
        if user is None:
            failures.failed(key, now)
            ctx.flash.append("Nom d'utilisateur ou mot de passe incorrect.")
            return _render(ctx, "connexion.html", status=401, suite=nxt, nom=name)
        failures.succeeded(key)
        _new_session(ctx, user)
        return _redirect(ctx, nxt)

    return await _post(request, work, login=False)


@router.post("/deconnexion")
async def logout(request: Request) -> Response:
    def work(ctx: Ctx, form: FormData) -> Response:
        _new_session(ctx, None)
        return _redirect(ctx, "/connexion")

    return await _post(request, work, login=False)


@router.get("/")
def home(request: Request) -> Response:
    with _context(request) as ctx:
        svc = _services()
        duts = svc.list_duts(ctx.db, ctx.user)
        campaigns = svc.list_campaigns(ctx.db, ctx.user)[:20]
        return _render(ctx, "accueil.html", duts=duts, campaigns=campaigns, dut_names=_dut_names(duts))


def _dut_names(duts: list[Any]) -> dict[int, str]:
    return {d.id: f"{d.name} {d.version}" for d in duts}


# --- DRIMbox


@router.get("/drimbox/nouvelle")
def dut_form(request: Request) -> Response:
    with _context(request) as ctx:
        return _render(ctx, "drimbox_nouvelle.html", values={})


@router.post("/drimbox/nouvelle")
async def dut_register(request: Request) -> Response:
    form = await _form(request)
    try:
        uploaded = await _upload_text(form, "fichier", SUT_MAX_BYTES)

        def work(ctx: Ctx, form: FormData) -> Response:
            values = {"nom": _text(form, "nom", 100), "version": _text(form, "version", 60),
                      "sut_toml": _text(form, "sut_toml", SUT_MAX_BYTES + 1)}
            text = uploaded if uploaded is not None else values["sut_toml"]
            errors = []
            if not text:
                errors.append("Collez le sut.toml ou choisissez un fichier.")
            elif len(text.encode("utf-8")) > SUT_MAX_BYTES:
                errors.append(f"sut.toml trop volumineux ({SUT_MAX_BYTES // 1024} Kio au plus).")
            if not errors:
                svc = _services()
                try:
                    dut = svc.register_dut(ctx.db, ctx.user, values["nom"], values["version"], text)
                except svc.ServiceError as exc:
                    errors.append(str(exc))
                else:
                    return _redirect(ctx, f"/drimbox/{dut.id}")
            ctx.flash.extend(errors)
            if uploaded is not None:
                values["sut_toml"] = uploaded
            return _render(ctx, "drimbox_nouvelle.html", status=400, values=values)

        return await run_in_threadpool(_in_context, request, work, form, True)
    finally:
        await form.close()


def _dut_or_404(ctx: Ctx, dut_id: str) -> Any:
    dut = _services().get_dut(ctx.db, ctx.user, _int(dut_id))
    if dut is None:
        raise _not_found()
    return dut


@router.get("/drimbox/{dut_id}")
def dut_page(request: Request, dut_id: str) -> Response:
    with _context(request) as ctx:
        dut = _dut_or_404(ctx, dut_id)
        campaigns = _services().list_campaigns(ctx.db, ctx.user, dut_id=dut.id)
        return _render(ctx, "drimbox.html", dut=dut, campaigns=campaigns, catalogue=_catalogue())


@router.post("/drimbox/{dut_id}/sut")
async def dut_update(request: Request, dut_id: str) -> Response:
    """Replace a DRIMbox's sut.toml (validated as at registration); campaigns already run keep theirs."""
    form = await _form(request)
    try:
        uploaded = await _upload_text(form, "fichier", SUT_MAX_BYTES)

        def work(ctx: Ctx, form: FormData) -> Response:
            svc = _services()
            dut = _dut_or_404(ctx, dut_id)
            text = uploaded if uploaded is not None else _text(form, "sut_toml", SUT_MAX_BYTES + 1)
            if not text:
                ctx.flash.append("Collez le sut.toml ou choisissez un fichier.")
            elif len(text.encode("utf-8")) > SUT_MAX_BYTES:
                ctx.flash.append(f"sut.toml trop volumineux ({SUT_MAX_BYTES // 1024} Kio au plus).")
            else:
                try:
                    svc.update_dut(ctx.db, ctx.user, dut.id, text, _text(form, "version", 60) or None)
                except svc.NotFound:
                    raise _not_found() from None
                except svc.ServiceError as exc:
                    ctx.flash.append(str(exc))
                else:
                    return _redirect(ctx, f"/drimbox/{dut.id}")
            ctx.db.rollback()
            return _render(ctx, "drimbox.html", status=400, dut=dut, edited=text,
                           campaigns=svc.list_campaigns(ctx.db, ctx.user, dut_id=dut.id), catalogue=_catalogue())

        return await run_in_threadpool(_in_context, request, work, form, True)
    finally:
        await form.close()


@router.get("/drimbox/{dut_id}/kit.zip")
def dut_kit(request: Request, dut_id: str) -> Response:
    with _context(request) as ctx:
        dut = _dut_or_404(ctx, dut_id)
        path = _kit(ctx, dut)
        return FileResponse(path, media_type="application/zip", filename=f"kit-{_slug(dut.name)}-{_slug(dut.version)}.zip",
                            headers={"Cache-Control": "no-store"})


@router.get("/drimbox/{dut_id}/dut-settings.json")
def dut_settings(request: Request, dut_id: str) -> Response:
    with _context(request) as ctx:
        dut = _dut_or_404(ctx, dut_id)
        svc = _services()
        try:
            document = svc.dut_settings(ctx.db, ctx.user, dut.id)
        except svc.NotFound:
            raise _not_found() from None
        except svc.ServiceError as exc:
            raise WebError(409, f"Kit de test indisponible : {exc}") from None
        return Response(json.dumps(document, ensure_ascii=False, indent=2), media_type="application/json", headers={
            "Content-Disposition": "attachment; filename=\"dut-settings.json\"", "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff"})


def _kit(ctx: Ctx, dut: Any) -> Path:
    svc = _services()
    try:
        return Path(svc.kit_zip(ctx.db, ctx.user, dut.id))
    except svc.NotFound:
        raise _not_found() from None
    except svc.ServiceError as exc:
        raise WebError(409, f"Kit de test indisponible : {exc}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "drimbox"


# --- campaigns


def _mutants() -> list[Any]:
    """The mutants of the embedded reference (offered in the launch form, for demonstrations)."""
    from simulators.drimbox import mutants

    return sorted(mutants.load().values(), key=lambda m: m.id)


def _catalogue() -> list[Any]:
    from drimcheck import catalogue

    return [r for r in catalogue.load().requirements if not r.not_tested]


@router.get("/campagnes")
def campaigns_page(request: Request, drimbox: str = "") -> Response:
    with _context(request) as ctx:
        svc = _services()
        duts = svc.list_duts(ctx.db, ctx.user)
        campaigns = svc.list_campaigns(ctx.db, ctx.user)
        return _render(ctx, "campagnes.html", duts=duts, campaigns=campaigns, dut_names=_dut_names(duts),
                       selected=drimbox, catalogue=_catalogue(), mutants=_mutants(), values={})


def _requirements(text: str) -> list[str]:
    ids = [t for t in re.split(r"[\s,;]+", text.upper()) if t]
    return list(dict.fromkeys(ids))[:100]


@router.post("/campagnes")
async def campaign_launch(request: Request) -> Response:
    def work(ctx: Ctx, form: FormData) -> Response:
        from drimcheck import catalogue

        svc = _services()
        target, mode = _text(form, "drimbox", 20), _text(form, "mode", 20)
        reqs = _requirements(_text(form, "exigences", 2000))
        mutant = _text(form, "mutant", 80) or None
        errors = []
        dut_id: int | None = None
        if target == "reference":
            dut_id = None
        elif target.isdigit() and svc.get_dut(ctx.db, ctx.user, int(target)) is not None:
            dut_id = int(target)
        else:
            errors.append("Choisissez la DRIMbox à tester.")
        if mode not in MODE_FR:
            errors.append("Choisissez le type de campagne : complète, référencement ou partielle.")
        if mode == "partial":
            bad = [r for r in reqs if not REQ_ID.match(r)] or catalogue.unknown_ids(reqs)
            if not reqs:
                errors.append("Campagne partielle : indiquez au moins une exigence (par exemple CRT-03).")
            elif bad:
                errors.append("Exigence inconnue du catalogue : " + ", ".join(bad[:10]) + ".")
        else:
            reqs = []
        if mutant is not None and dut_id is not None:
            errors.append("Un mutant ne s'applique qu'à la DRIMbox de référence embarquée.")
        if not errors:
            try:
                campaign = svc.enqueue_campaign(ctx.db, ctx.user, dut_id, mode, reqs, mutant=mutant)
            except svc.ServiceError as exc:
                errors.append(str(exc))
            else:
                return _redirect(ctx, f"/campagnes/{campaign.id}")
        ctx.flash.extend(errors)
        duts = svc.list_duts(ctx.db, ctx.user)
        return _render(ctx, "campagnes.html", status=400, duts=duts, campaigns=svc.list_campaigns(ctx.db, ctx.user),
                       dut_names=_dut_names(duts), selected=target, catalogue=_catalogue(), mutants=_mutants(),
                       values={"mode": mode, "exigences": " ".join(reqs), "mutant": mutant or ""})

    return await _post(request, work)


def _campaign_or_404(ctx: Ctx, campaign_id: str) -> Any:
    campaign = _services().get_campaign(ctx.db, ctx.user, _int(campaign_id))
    if campaign is None:
        raise _not_found()
    return campaign


def _results(campaign: Any) -> dict[str, Any] | None:
    if campaign.status not in ("done", "error") or not campaign.run_dir:
        return None
    try:
        data = _services().campaign_results(campaign)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("requirements"), list) else None


def _findings_by_requirement(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in data.get("scenarios") or []:
        for f in s.get("findings") or []:
            out.setdefault(f.get("requirement", ""), []).append({**f, "scenario": s.get("name", ""),
                                                                  "scenario_id": s.get("id", "")})
    return out


@router.get("/campagnes/{campaign_id}")
def campaign_page(request: Request, campaign_id: str, tout: int = 0) -> Response:
    with _context(request) as ctx:
        svc = _services()
        campaign = _campaign_or_404(ctx, campaign_id)
        dut = svc.get_dut(ctx.db, ctx.user, campaign.dut_id) if campaign.dut_id is not None else None
        data = _results(campaign)
        rows: list[dict[str, Any]] = []
        hidden = 0
        if data is not None:
            findings = _findings_by_requirement(data)
            for r in sorted(data["requirements"], key=lambda r: (VERDICT_ORDER.get(r.get("verdict"), 9), r.get("id", ""))):
                if not tout and r.get("verdict") in ("NOT_RUN", "NOT_TESTED"):
                    hidden += 1
                    continue
                rows.append({**r, "findings": findings.get(r.get("id", ""), [])})
        others = [c for c in svc.list_campaigns(ctx.db, ctx.user, dut_id=campaign.dut_id)
                  if c.id != campaign.id and c.dut_id == campaign.dut_id and c.status == "done"
                  ] if campaign.status == "done" else []
        package = svc.package_path(campaign) if campaign.status == "done" else None
        live = campaign.status in ("queued", "running")
        return _render(ctx, "campagne.html", campaign=campaign, dut=dut, data=data, rows=rows, hidden=hidden,
                       others=others[:30], package=package is not None and Path(package).is_file(),
                       report=_run_file(campaign, "report.html") is not None, refresh=REFRESH_S if live else None)


@router.post("/campagnes/{campaign_id}/annuler")
async def campaign_cancel(request: Request, campaign_id: str) -> Response:
    """Cancel a campaign still in the queue (a running one is not: the page says so)."""
    def work(ctx: Ctx, form: FormData) -> Response:
        svc = _services()
        campaign = _campaign_or_404(ctx, campaign_id)
        try:
            svc.cancel_campaign(ctx.db, ctx.user, campaign.id)
        except svc.NotFound:
            raise _not_found() from None
        except svc.ServiceError as exc:
            raise WebError(409, str(exc)) from None
        return _redirect(ctx, f"/campagnes/{campaign.id}")

    return await _post(request, work)


def _run_file(campaign: Any, name: str) -> Path | None:
    if not campaign.run_dir:
        return None
    path = Path(campaign.run_dir) / name
    return path if path.is_file() and not path.is_symlink() else None


@router.get("/campagnes/{campaign_id}/rapport")
def campaign_report(request: Request, campaign_id: str) -> Response:
    """The CLI's report.html; its relative evidence links resolve to /campagnes/<id>/evidence/..."""
    with _context(request) as ctx:
        campaign = _campaign_or_404(ctx, campaign_id)
        path = _run_file(campaign, "report.html")
        if path is None:
            raise WebError(404, "Rapport pas encore écrit : la campagne n'est pas terminée.")
        return HTMLResponse(path.read_bytes(), headers=_REPORT_HEADERS)


@router.get("/campagnes/{campaign_id}/evidence/{rel:path}")
def campaign_evidence_file(request: Request, campaign_id: str, rel: str) -> Response:
    """One evidence file as recorded (redacted at recording), as text or as a download; never outside evidence/."""
    from drimcheck.reports.evidence_view import safe_evidence_path

    with _context(request) as ctx:
        campaign = _campaign_or_404(ctx, campaign_id)
        path = safe_evidence_path(Path(campaign.run_dir), "evidence/" + rel) if campaign.run_dir else None
        if path is None:
            raise WebError(404, "Fichier de preuve introuvable.")
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                   "Content-Security-Policy": "default-src 'none'; sandbox"}
        if path.suffix in (".json", ".txt", ".hl7", ".xml", ".log", ".pem", ".csv"):
            return FileResponse(path, media_type="text/plain; charset=utf-8", headers=headers)
        return FileResponse(path, media_type="application/octet-stream", filename=path.name, headers=headers)


@router.get("/campagnes/{campaign_id}/preuve")
def campaign_evidence_view(request: Request, campaign_id: str, f: str = "") -> Response:
    """The readable view of one evidence file (request, response, TLS chain, timing) in the site's layout."""
    from markupsafe import Markup

    from drimcheck.reports.evidence_view import render_evidence, safe_evidence_path

    with _context(request) as ctx:
        campaign = _campaign_or_404(ctx, campaign_id)
        run_dir = Path(campaign.run_dir) if campaign.run_dir else None
        if run_dir is None or safe_evidence_path(run_dir, f) is None:
            raise WebError(404, "Fichier de preuve introuvable.")
        data = _results(campaign) or {}
        citing = [dict(fd, scenario=s.get("name", "")) for s in data.get("scenarios") or []
                  for fd in s.get("findings") or [] if f in (fd.get("evidence") or [])]
        view = Markup(render_evidence(run_dir, f))  # built by evidence_view, every value escaped there
        return _render(ctx, "preuve.html", campaign=campaign, rel=f, view=view, citing=citing,
                       raw_url=f"/campagnes/{campaign.id}/" + quote(f, safe="/"))


@router.get("/campagnes/{campaign_id}/paquet")
def campaign_package(request: Request, campaign_id: str) -> Response:
    with _context(request) as ctx:
        campaign = _campaign_or_404(ctx, campaign_id)
        path = _services().package_path(campaign) if campaign.status == "done" else None
        if path is None or not Path(path).is_file():
            raise WebError(404, "Pas de paquet de référencement pour cette campagne (seule une campagne de "
                                "référencement complète en produit un).")
        return FileResponse(path, media_type="application/zip", filename=Path(path).name,
                            headers={"Cache-Control": "no-store"})


@router.get("/comparer")
def compare_page(request: Request, a: str = "", b: str = "") -> Response:
    with _context(request) as ctx:
        svc = _services()
        ca, cb = _campaign_or_404(ctx, a), _campaign_or_404(ctx, b)
        try:
            diff = svc.compare(ctx.db, ctx.user, ca.id, cb.id)
        except svc.NotFound:
            raise _not_found() from None
        except svc.ServiceError as exc:
            raise WebError(409, f"Comparaison impossible : {exc}") from None
        return _render(ctx, "comparer.html", a=ca, b=cb, diff=diff)


# --- ANS


@router.get("/ans")
def ans_dashboard(request: Request) -> Response:
    with _context(request) as ctx:
        _require_ans(ctx)
        board = _services().dashboard(ctx.db)
        editors = sorted({row["editor"] for row in board})
        return _render(ctx, "ans.html", board=board, editors=editors,
                       requirement_ids=[r.id for r in _catalogue()])


@router.get("/ans/paquet")
def ans_package_form(request: Request) -> Response:
    with _context(request) as ctx:
        _require_ans(ctx)
        return _render(ctx, "ans_paquet.html", report=None, cap_mib=PACKAGE_MAX_BYTES // (1024 * 1024))


@router.post("/ans/paquet")
async def ans_package_verify(request: Request) -> Response:
    import tempfile

    await run_in_threadpool(_ans_only, request)  # before reading up to PACKAGE_MAX_BYTES of upload
    form = await _form(request, PACKAGE_MAX_BYTES)
    try:
        upload = form.get("paquet")

        def work(ctx: Ctx, form: FormData) -> Response:
            _require_ans(ctx)
            if not isinstance(upload, UploadFile) or not upload.filename:
                ctx.flash.append("Choisissez le paquet de référencement (.zip) à vérifier.")
                return _render(ctx, "ans_paquet.html", status=400, report=None,
                               cap_mib=PACKAGE_MAX_BYTES // (1024 * 1024))
            with tempfile.TemporaryDirectory(prefix="drimcheck-paquet-") as tmp:
                path = Path(tmp) / "paquet.zip"
                upload.file.seek(0)
                with open(path, "wb") as out:
                    size = 0
                    while chunk := upload.file.read(1024 * 1024):
                        size += len(chunk)
                        if size > PACKAGE_MAX_BYTES:
                            raise WebError(413, f"Paquet trop volumineux : {PACKAGE_MAX_BYTES // (1024 * 1024)} Mio au plus.")
                        out.write(chunk)
                report = _services().verify_package(path)
            return _render(ctx, "ans_paquet.html", report=_package_report(report), filename=upload.filename,
                           cap_mib=PACKAGE_MAX_BYTES // (1024 * 1024))

        return await run_in_threadpool(_in_context, request, work, form, True)
    finally:
        await form.close()


def _ans_only(request: Request) -> None:
    with _context(request) as ctx:
        _require_ans(ctx)


def _package_report(report: Any) -> dict[str, Any]:
    """verify_package's answer (the CLI's Report, or its JSON dict) as the template reads it."""
    if isinstance(report, dict):
        data = dict(report)
    else:
        data = {k: getattr(report, k, None) for k in ("problems", "files", "signed", "signer", "campaign")}
        data["valid"] = bool(getattr(report, "valid", False))
    if "valid" not in data:
        data["valid"] = data.get("verdict") == "VALIDE"
    data.setdefault("problems", [])
    data.setdefault("campaign", {})
    return data
