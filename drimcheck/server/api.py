"""The JSON API (mounted at /api), token-authenticated: `Authorization: Bearer <token>`.

401 without a valid token; a DUT or campaign of another editor is 404 (its existence does not leak); ANS-only
resources are 403 for an editor. Every error body is `{"detail": "<message en français>"}`. Request bodies
are read with a cap (413 beyond it).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.orm import Session

from drimcheck.server import services
from drimcheck.server.models import User

router = APIRouter()

MAX_JSON_BYTES = services.MAX_SUT_BYTES + 64 * 1024  # a sut.toml inside a JSON document
# The report shows what a DUT sent (escaped); served as an opaque origin all the same: its own inline script and
# styles run, nothing reaches the server's origin (cookies, API) or the network.
REPORT_CSP = ("sandbox allow-scripts allow-popups; default-src 'none'; script-src 'unsafe-inline'; "
              "style-src 'unsafe-inline'; img-src data:")


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_user(request: Request, session: SessionDep) -> User:
    token = bearer_token(request)
    user = services.user_for_token(session, token) if token else None
    if user is None:
        raise HTTPException(401, "authentification requise : jeton d'API absent ou invalide "
                                 "(en-tête « Authorization: Bearer <jeton> »)",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


UserDep = Annotated[User, Depends(current_user)]


def error_response(exc: services.ServiceError) -> JSONResponse:
    code = 404 if isinstance(exc, services.NotFound) else 413 if isinstance(exc, services.TooLarge) else 422
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most `limit` bytes (413 beyond, whether Content-Length says so or not)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise services.TooLarge(f"envoi trop volumineux : {int(declared)} octets, au plus {limit}")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise services.TooLarge(f"envoi trop volumineux : plus de {limit} octets")
    return bytes(data)


async def read_json(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    raw = await read_body(request, limit)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise services.ServiceError("corps de requête : un objet JSON est attendu") from None
    if not isinstance(data, dict):
        raise services.ServiceError("corps de requête : un objet JSON est attendu")
    return data


def _text(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise services.ServiceError(f"« {key} » : une chaîne est attendue")
    return value


def dut_view(dut) -> dict[str, Any]:
    return {"id": dut.id, "name": dut.name, "version": dut.version, "owner": dut.owner.name,
            "created_at": dut.created_at.isoformat(timespec="seconds") + "Z",
            "kit": f"/api/duts/{dut.id}/kit", "dut_settings": f"/api/duts/{dut.id}/dut-settings"}


# ------------------------------------------------------------------------------------------- routes

@router.get("/me")
def me(user: UserDep) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "role": user.role}


@router.post("/duts", status_code=201)
async def create_dut(request: Request, user: UserDep, session: SessionDep):
    """Register a DRIMbox: JSON {"name"?, "version"?, "sut_toml"}, or the sut.toml itself as the body
    (Content-Type application/toml or text/plain; ?name=&version= in the query)."""
    try:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("application/toml", "text/plain", "text/x-toml"):
            raw = await read_body(request, services.MAX_SUT_BYTES)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise services.ServiceError("sut.toml : n'est pas encodé en UTF-8") from None
            name, version = request.query_params.get("name", ""), request.query_params.get("version", "")
        else:
            data = await read_json(request)
            text, name, version = _text(data, "sut_toml"), _text(data, "name"), _text(data, "version")
            if not text:
                raise services.ServiceError("« sut_toml » : le contenu du sut.toml est attendu")
        dut = services.register_dut(session, user, name, version, text)
    except services.ServiceError as exc:
        return error_response(exc)
    return dut_view(dut)


@router.get("/duts")
def list_duts(user: UserDep, session: SessionDep) -> list[dict[str, Any]]:
    return [dut_view(d) for d in services.list_duts(session, user)]


@router.get("/duts/{dut_id}")
def get_dut(dut_id: int, user: UserDep, session: SessionDep):
    dut = services.get_dut(session, user, dut_id)
    if dut is None:
        raise HTTPException(404, f"DRIMbox n° {dut_id} introuvable")
    return {**dut_view(dut), "sut_toml": dut.sut_toml}


@router.get("/duts/{dut_id}/kit")
def dut_kit(dut_id: int, user: UserDep, session: SessionDep):
    try:
        path = services.kit_zip(session, user, dut_id)
    except services.ServiceError as exc:
        return error_response(exc)
    return FileResponse(path, media_type="application/zip", filename=f"kit-drimbox-{dut_id}.zip")


@router.get("/duts/{dut_id}/dut-settings")
def dut_settings(dut_id: int, user: UserDep, session: SessionDep):
    try:
        return services.dut_settings(session, user, dut_id)
    except services.ServiceError as exc:
        return error_response(exc)


@router.post("/campaigns", status_code=201)
async def create_campaign(request: Request, user: UserDep, session: SessionDep):
    """{"dut": <id> | "reference", "mode": "full" | "referencement" | "partial", "requirements": [...],
    "mutant"?: id (reference only)} -> {"id": n}"""
    try:
        data = await read_json(request, 64 * 1024)
        dut = data.get("dut", services.REFERENCE)
        if dut == services.REFERENCE:
            dut_id = None
        elif isinstance(dut, int) and not isinstance(dut, bool):
            dut_id = dut
        elif isinstance(dut, str) and dut.isdigit():
            dut_id = int(dut)
        else:
            raise services.ServiceError("« dut » : l'identifiant d'une DRIMbox enregistrée, ou \"reference\"")
        requirements = data.get("requirements") or []
        mutant = data.get("mutant")
        if mutant is not None and not isinstance(mutant, str):
            raise services.ServiceError("« mutant » : une chaîne est attendue")
        campaign = services.enqueue_campaign(session, user, dut_id, _text(data, "mode", "full"), requirements,
                                             mutant=mutant)
    except services.ServiceError as exc:
        return error_response(exc)
    return {"id": campaign.id, "status": campaign.status, "url": f"/api/campaigns/{campaign.id}"}


@router.get("/campaigns")
def list_campaigns(user: UserDep, session: SessionDep, dut: int | None = None) -> list[dict[str, Any]]:
    return [services.campaign_summary(c) for c in services.list_campaigns(session, user, dut_id=dut)]


def _campaign(session: Session, user: User, campaign_id: int):
    campaign = services.get_campaign(session, user, campaign_id)
    if campaign is None:
        raise HTTPException(404, f"campagne n° {campaign_id} introuvable")
    return campaign


@router.get("/campaigns/{campaign_id}")
def get_campaign(campaign_id: int, user: UserDep, session: SessionDep) -> dict[str, Any]:
    return services.campaign_summary(_campaign(session, user, campaign_id))


@router.post("/campaigns/{campaign_id}/cancel")
def cancel_campaign(campaign_id: int, user: UserDep, session: SessionDep):
    """Cancel a campaign still in the queue (409 if it already runs or ended)."""
    try:
        campaign = services.cancel_campaign(session, user, campaign_id)
    except services.NotFound as exc:
        return error_response(exc)
    except services.ServiceError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    return services.campaign_summary(campaign)


@router.get("/campaigns/{campaign_id}/report")
def campaign_report(campaign_id: int, user: UserDep, session: SessionDep):
    try:
        path = services.evidence_path(_campaign(session, user, campaign_id), "report.html")
    except services.ServiceError as exc:
        return error_response(exc)
    return FileResponse(path, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": REPORT_CSP})


@router.get("/campaigns/{campaign_id}/results")
def campaign_results(campaign_id: int, user: UserDep, session: SessionDep):
    results = services.campaign_results(_campaign(session, user, campaign_id))
    if not results:
        raise HTTPException(404, "pas encore de résultats")
    return results


@router.get("/campaigns/{campaign_id}/package")
def campaign_package(campaign_id: int, user: UserDep, session: SessionDep):
    path = services.package_path(_campaign(session, user, campaign_id))
    if path is None:
        raise HTTPException(404, "pas de paquet de référencement pour cette campagne")
    return FileResponse(path, media_type="application/zip", filename=path.name)


@router.get("/campaigns/{campaign_id}/evidence/{relpath:path}")
def campaign_evidence(campaign_id: int, relpath: str, user: UserDep, session: SessionDep):
    try:
        path = services.evidence_path(_campaign(session, user, campaign_id), f"evidence/{relpath}")
    except services.ServiceError as exc:
        return error_response(exc)
    return FileResponse(path, media_type="application/json" if path.suffix == ".json" else "text/plain; charset=utf-8")


@router.get("/compare")
def compare(a: int, b: int, user: UserDep, session: SessionDep):
    try:
        return services.compare(session, user, a, b)
    except services.ServiceError as exc:
        return error_response(exc)


@router.post("/packages/verify")
async def verify_package(request: Request, user: UserDep):
    """The package (.zip) as the request body, at most services.MAX_PACKAGE_BYTES; `drimcheck verify-package`."""
    try:
        declared = request.headers.get("content-length")
        limit = services.MAX_PACKAGE_BYTES
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise services.TooLarge(f"paquet trop volumineux : {int(declared)} octets, au plus {limit}")
        with tempfile.TemporaryDirectory(prefix="drimcheck-upload-") as tmp:
            path = Path(tmp) / "paquet.zip"
            size = 0
            with open(path, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise services.TooLarge(f"paquet trop volumineux : plus de {limit} octets")
                    f.write(chunk)
            if size == 0:
                raise services.ServiceError("le paquet (.zip) est attendu comme corps de la requête")
            return services.verify_package(path)
    except services.ServiceError as exc:
        return error_response(exc)


@router.get("/dashboard")
def dashboard(user: UserDep, session: SessionDep):
    if not user.is_ans:
        raise HTTPException(403, "tableau de bord réservé à l'ANS")
    return services.dashboard(session)
