"""The operations of the campaign server, shared by the JSON API (api.py) and the web pages (web.py).

Every function takes an SQLAlchemy session whose `info["data_dir"]` is the server's data directory
(app.create_app sets it; db.session_factory). Visibility: role "ans" sees everything, an editor only their own
DUTs and campaigns — a DUT or campaign that is not visible is reported as absent (None / NotFound), never as
forbidden, so its existence does not leak. Messages (ServiceError) are French, for the user.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from drimcheck.server import security
from drimcheck.server.models import MODES, ROLES, Campaign, Dut, User

MAX_SUT_BYTES = 1024 * 1024  # config.MAX_FILE_BYTES: what check-sut reads
MAX_PACKAGE_BYTES = 256 * 1024 * 1024  # a referencing package uploaded for verification
MAX_RESULTS_BYTES = 64 * 1024 * 1024
MAX_REQUIREMENTS = 200
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,79}")
REFERENCE = "reference"
KIT_DAYS = 90


class ServiceError(ValueError):
    """An operation refused, with the reason in French (HTTP 400 / 422 in the API, a message in the pages)."""


class NotFound(ServiceError):
    """Absent or not visible to this user (HTTP 404)."""


class TooLarge(ServiceError):
    """An upload over its cap (HTTP 413)."""


# ------------------------------------------------------------------------------------------- context

def data_dir(session: Session) -> Path:
    value = session.info.get("data_dir")
    if value is None:
        raise RuntimeError("session without data_dir (use drimcheck.server.db.session_factory(url, data_dir))")
    return Path(value)


def db_url(session: Session) -> str:
    return session.get_bind().engine.url.render_as_string(hide_password=False)


# ------------------------------------------------------------------------------------------- users

def create_user(session: Session, name: str, role: str, password: str | None = None) -> tuple[User, str, str]:
    """A new account; returns (user, password, API token) — the clear password and token are shown once."""
    if not NAME_RE.fullmatch(name):
        raise ServiceError(f"nom d'utilisateur invalide « {name[:80]} » : 1 à 80 caractères parmi lettres, chiffres, "
                           "« . _ @ - », commençant par une lettre ou un chiffre")
    if role not in ROLES:
        raise ServiceError(f"rôle inconnu « {role[:40]} » : editor ou ans")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise ServiceError(f"l'utilisateur « {name} » existe déjà")
    if password is None:
        password = security.new_password()
    if not password or len(password) > security.MAX_PASSWORD_CHARS:
        raise ServiceError(f"mot de passe vide ou de plus de {security.MAX_PASSWORD_CHARS} caractères")
    token = security.new_token()
    user = User(name=name, role=role, password_hash=security.hash_password(password),
                token_hash=security.token_hash(token))
    session.add(user)
    session.commit()
    return user, password, token


def authenticate(session: Session, name: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        security.verify_password(password, _DUMMY_HASH)  # same cost whether the name exists or not
        return None
    return user if security.verify_password(password, user.password_hash) else None


def user_for_token(session: Session, token: str) -> User | None:
    if not token or len(token) > 200:
        return None
    return session.scalar(select(User).where(User.token_hash == security.token_hash(token)))


def new_api_token(session: Session, user: User) -> str:
    """Replace the user's API token (the former one stops working); the clear token is returned once."""
    token = security.new_token()
    user.token_hash = security.token_hash(token)
    session.commit()
    return token


_DUMMY_HASH = security.hash_password("drimcheck-dummy-password")


# ------------------------------------------------------------------------------------------- DUTs

def server_policy(sut_toml: str) -> None:
    """What a sut.toml submitted to the server may not do on the server's host (ServiceError, French).

    - [hooks]: only HTTP actions (`name = { url = "https://…" }`), never a shell command: the server would run it;
    - [tls] trust anchors and [pki] kit: files of the server; the server keeps the DUT's kit itself (`kit_zip`),
      declared as `[pki] kit = "kit"`.
    """
    try:
        data = tomllib.loads(sut_toml)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        return  # config.parse reports it with the line and column
    hooks = data.get("hooks")
    if isinstance(hooks, dict):
        for name, value in hooks.items():
            if isinstance(value, str) and value.strip():
                raise ServiceError(
                    f"[hooks] {name} : une commande shell est refusée par le serveur de campagnes (elle serait "
                    f"exécutée sur le serveur) ; déclarez une action HTTP que drimcheck appelle, par exemple "
                    f"{name} = {{ url = \"https://votre-drimbox.example/admin/{name}\", method = \"POST\" }}")
    tls = data.get("tls")
    if isinstance(tls, dict) and any(tls.get(k) for k in ("trust_anchors", "market_trust_anchors")):
        raise ServiceError("[tls] trust_anchors / market_trust_anchors : des fichiers du serveur ne peuvent pas être "
                           "désignés depuis le serveur de campagnes ; retirez ces clés (PKI de test de la campagne "
                           "ou kit de la DRIMbox)")
    pki = data.get("pki")
    if isinstance(pki, dict) and "kit" in pki and pki["kit"] != "kit":
        raise ServiceError("[pki] kit : sur le serveur de campagnes, seule la valeur \"kit\" est permise (le kit de "
                           "test de cette DRIMbox, que le serveur crée et garde ; téléchargez-le depuis sa page)")


def validate_sut(sut_toml: str, base_dir: Path | None = None):
    """Validate a submitted sut.toml as `drimcheck check-sut` does, plus the server policy; returns the Sut."""
    from drimcheck.config import ConfigError, parse

    if len(sut_toml.encode("utf-8", "surrogatepass")) > MAX_SUT_BYTES:
        raise TooLarge(f"sut.toml trop volumineux (plus de {MAX_SUT_BYTES // 1024} Kio)")
    if "\x00" in sut_toml:
        raise ServiceError("sut.toml : caractère NUL interdit")
    server_policy(sut_toml)
    with tempfile.TemporaryDirectory(prefix="drimcheck-sut-") as tmp:
        try:
            return parse(sut_toml, "sut.toml", base_dir=base_dir or Path(tmp))
        except ConfigError as exc:
            raise ServiceError(str(exc)) from None


def register_dut(session: Session, user: User, name: str, version: str, sut_toml: str) -> Dut:
    """Register a DRIMbox (its sut.toml validated); name and version default to its [sut] name and version."""
    sut = validate_sut(sut_toml)
    name = (name or sut.name).strip()[:200]
    version = (version or sut.version).strip()[:100]
    dut = Dut(owner_id=user.id, name=name, version=version, sut_toml=sut_toml)
    session.add(dut)
    session.commit()
    return dut


def update_dut(session: Session, user: User, dut_id: int, sut_toml: str, version: str | None = None) -> Dut:
    """Replace a DUT's sut.toml (validated); campaigns already run keep the file they ran with."""
    dut = get_dut(session, user, dut_id)
    if dut is None:
        raise NotFound(f"DRIMbox n° {dut_id} introuvable")
    sut = validate_sut(sut_toml)
    dut.sut_toml = sut_toml
    dut.version = (version or sut.version or dut.version).strip()[:100]
    session.commit()
    return dut


def list_duts(session: Session, user: User) -> list[Dut]:
    query = select(Dut).order_by(Dut.id.desc())
    if not user.is_ans:
        query = query.where(Dut.owner_id == user.id)
    return list(session.scalars(query))


def get_dut(session: Session, user: User, dut_id: int) -> Dut | None:
    dut = session.get(Dut, dut_id)
    if dut is None or not (user.is_ans or dut.owner_id == user.id):
        return None
    return dut


def dut_dir(session: Session, dut: Dut) -> Path:
    return data_dir(session) / "duts" / str(dut.id)


def kit_dir(session: Session, dut: Dut) -> Path:
    return dut_dir(session, dut) / "kit"


def ensure_kit(session: Session, user: User, dut_id: int) -> Path:
    """The DUT's stable test kit (created on first use, in <data_dir>/duts/<id>/kit); NotFound / ServiceError."""

    dut = get_dut(session, user, dut_id)
    if dut is None:
        raise NotFound(f"DRIMbox n° {dut_id} introuvable")
    return dut_kit(session, dut)


def dut_kit(session: Session, dut: Dut) -> Path:
    """The kit of a DUT (created if absent), whoever asks: the worker before a campaign whose sut.toml
    declares `[pki] kit = "kit"`, or ensure_kit for its owner."""
    from drimcheck import kit

    out = kit_dir(session, dut)
    if kit.manifest_path(out).is_file():
        return out
    base = dut_dir(session, dut)
    base.mkdir(parents=True, exist_ok=True)
    sut = validate_sut(dut.sut_toml, base_dir=base)
    try:
        kit.create_kit(sut, out, days=KIT_DAYS, force=out.exists())
    except kit.KitError as exc:
        raise ServiceError(str(exc)) from None
    return out


def kit_zip(session: Session, user: User, dut_id: int) -> Path:
    """A zip of what the DRIMbox must install (the kit's dut/ part: certificates, trust stores,
    dut-settings.json, hosts); the CA keys (harness/) stay on the server."""
    from drimcheck import kit

    root = ensure_kit(session, user, dut_id)
    target = root.parent / "kit-drimbox.zip"
    manifest = kit.manifest_path(root)
    if target.is_file() and target.stat().st_mtime >= manifest.stat().st_mtime:
        return target
    part = kit.dut_dir(root)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(part.rglob("*")):
            if path.is_file() and not path.is_symlink():
                zf.write(path, f"kit/{path.relative_to(part).as_posix()}")
    tmp.replace(target)
    return target


def dut_settings(session: Session, user: User, dut_id: int) -> dict[str, Any]:
    """The kit's dut-settings.json (what the DRIMbox must be told)."""
    from drimcheck import kit

    root = ensure_kit(session, user, dut_id)
    return json.loads(kit.settings_path(root).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------- campaigns

def _check_requirements(mode: str, requirements: list[str]) -> list[str]:
    from drimcheck import catalogue

    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        raise ServiceError("requirements : une liste d'identifiants d'exigences est attendue")
    reqs = list(dict.fromkeys(r.strip() for r in requirements if r.strip()))
    if len(reqs) > MAX_REQUIREMENTS:
        raise ServiceError(f"requirements : au plus {MAX_REQUIREMENTS} exigences")
    if mode == "partial" and not reqs:
        raise ServiceError("une campagne partielle demande au moins une exigence (requirements)")
    if mode != "partial" and reqs:
        raise ServiceError(f"une campagne « {mode} » exécute toutes les exigences : requirements doit être vide "
                           "(mode « partial » pour une sélection)")
    unknown = catalogue.unknown_ids(reqs)
    if unknown:
        raise ServiceError(f"exigence(s) inconnue(s) : {', '.join(u[:40] for u in unknown[:10])}")
    return reqs


def enqueue_campaign(session: Session, user: User, dut_id: int | None, mode: str, requirements: list[str],
                     mutant: str | None = None) -> Campaign:
    """Record a campaign (status "queued") and put it on the queue; dut_id None = the embedded reference.

    Commits the session (a worker must see the row before it takes the job)."""
    from drimcheck.server import queue

    if mode not in MODES:
        raise ServiceError(f"mode inconnu « {str(mode)[:40]} » : {', '.join(MODES)}")
    reqs = _check_requirements(mode, requirements or [])
    if dut_id is not None and get_dut(session, user, dut_id) is None:
        raise NotFound(f"DRIMbox n° {dut_id} introuvable")
    if mutant:
        if dut_id is not None:
            raise ServiceError("mutant : seulement pour la DRIMbox de référence intégrée")
        if mode == "referencement":
            raise ServiceError("une campagne de référencement refuse un mutant")
        from simulators.drimbox import mutants

        try:
            mutants.get(mutant)
        except KeyError:
            raise ServiceError(f"mutant inconnu « {mutant[:60]} »") from None
    campaign = Campaign(owner_id=user.id, dut_id=dut_id, mode=mode, requirements=reqs, mutant=mutant or None,
                        status="queued", requirement_verdicts={})
    session.add(campaign)
    session.commit()
    queue.enqueue(db_url(session), campaign.id)
    return campaign


def list_campaigns(session: Session, user: User, dut_id: int | None = None) -> list[Campaign]:
    query = select(Campaign).order_by(Campaign.id.desc())
    if not user.is_ans:
        query = query.where(Campaign.owner_id == user.id)
    if dut_id is not None:
        query = query.where(Campaign.dut_id == dut_id)
    return list(session.scalars(query))


def get_campaign(session: Session, user: User, campaign_id: int) -> Campaign | None:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or not (user.is_ans or campaign.owner_id == user.id):
        return None
    return campaign


def cancel_campaign(session: Session, user: User, campaign_id: int) -> Campaign:
    """Cancel a campaign still waiting in the queue (it ends "error", « campagne annulée »); a worker that
    takes its job later skips it. A running campaign is not cancelled here (ServiceError)."""
    from sqlalchemy import update

    from drimcheck.server.models import utcnow

    campaign = get_campaign(session, user, campaign_id)
    if campaign is None:
        raise NotFound(f"campagne n° {campaign_id} introuvable")
    result = session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status == "queued").values(
        status="error", error=f"campagne annulée par {user.name}", finished_at=utcnow()))
    session.commit()
    session.refresh(campaign)
    if getattr(result, "rowcount", 0) != 1:
        raise ServiceError(f"campagne n° {campaign_id} déjà {'en cours' if campaign.status == 'running' else 'terminée'} : "
                           "seule une campagne en attente peut être annulée")
    return campaign


def _run_dir(campaign: Campaign) -> Path | None:
    return Path(campaign.run_dir) if campaign.run_dir else None


def campaign_results(campaign: Campaign) -> dict[str, Any]:
    """The campaign's results.json (parsed), {} when there is none yet."""
    run_dir = _run_dir(campaign)
    if run_dir is None:
        return {}
    path = run_dir / "results.json"
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_RESULTS_BYTES + 1)
    except OSError:
        return {}
    if len(raw) > MAX_RESULTS_BYTES:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def evidence_path(campaign: Campaign, relpath: str) -> Path:
    """A file of the campaign's run directory (report.html, evidence/…), joined safely; NotFound otherwise."""
    run_dir = _run_dir(campaign)
    if run_dir is None or not relpath or "\x00" in relpath or "\\" in relpath or relpath.startswith("/"):
        raise NotFound("fichier introuvable")
    parts = Path(relpath).parts
    if any(p in ("..", ".") for p in parts):
        raise NotFound("fichier introuvable")
    root = run_dir.resolve()
    path = (root / relpath).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("fichier introuvable")
    return path


def package_path(campaign: Campaign) -> Path | None:
    from drimcheck.package import PACKAGE_GLOB

    run_dir = _run_dir(campaign)
    if run_dir is None or not run_dir.is_dir():
        return None
    found = sorted(run_dir.glob(PACKAGE_GLOB))
    return found[0] if found else None


def verify_package(path: Path) -> dict[str, Any]:
    """`drimcheck verify-package` on a file: {"verdict": "VALIDE"|"NON VALIDE"|"ILLISIBLE", "valid", "problems", ...}."""
    from drimcheck.commands import verify_package as vp

    try:
        report = vp.verify(path)
    except vp.Unreadable as exc:
        return {"verdict": "ILLISIBLE", "valid": False, "problems": [str(exc)], "file": path.name}
    data = report.to_dict()
    data["file"] = path.name
    return {"verdict": "VALIDE" if report.valid else "NON VALIDE", **data}


def compare(session: Session, user: User, id_a: int, id_b: int) -> dict[str, Any]:
    """Requirement-by-requirement differences between two visible campaigns (`drimcheck diff`)."""
    from drimcheck.commands import diff

    runs = []
    for cid in (id_a, id_b):
        campaign = get_campaign(session, user, cid)
        if campaign is None:
            raise NotFound(f"campagne n° {cid} introuvable")
        results = campaign_results(campaign)
        if not results:
            raise ServiceError(f"campagne n° {cid} : pas encore de résultats")
        try:
            runs.append(diff._validated(results))
        except Exception as exc:  # noqa: BLE001 - diff's own malformed-input error, as a French message
            raise ServiceError(f"campagne n° {cid} : résultats illisibles ({exc})") from None
    changes = diff.compare(runs[0], runs[1])
    return {"verdict": "RÉGRESSION" if changes["regressed"] else "SANS RÉGRESSION",
            "a": {"id": id_a, "verdict": runs[0]["verdict"]}, "b": {"id": id_b, "verdict": runs[1]["verdict"]},
            **changes}


def dashboard(session: Session) -> list[dict[str, Any]]:
    """ANS view: one row per DRIMbox and version, with its latest referencing campaign that ended, the history
    of its referencing campaigns (newest first) and the requirements that regressed from one to the next."""
    from drimcheck.commands.diff import BAD, SATISFIED

    rows = []
    duts = session.scalars(select(Dut).order_by(Dut.owner_id, Dut.name, Dut.version, Dut.id))
    for dut in duts:
        history = list(session.scalars(
            select(Campaign).where(Campaign.dut_id == dut.id, Campaign.mode == "referencement",
                                   Campaign.status.in_(("done", "error"))).order_by(Campaign.id.desc())))
        latest = history[0] if history else None
        regressions = []
        if len(history) >= 2:
            before, after = history[1].requirement_verdicts or {}, history[0].requirement_verdicts or {}
            regressions = sorted(r for r, v in after.items() if v in BAD and before.get(r) in SATISFIED)
        rows.append({
            "editor": dut.owner.name, "dut_id": dut.id, "dut": dut.name, "version": dut.version,
            "latest": None if latest is None else {
                "campaign_id": latest.id, "verdict": latest.verdict, "status": latest.status,
                "finished_at": latest.finished_at, "requirements": dict(latest.requirement_verdicts or {})},
            "history": [{"campaign_id": c.id, "verdict": c.verdict, "finished_at": c.finished_at} for c in history],
            "regressions": regressions,
        })
    return rows


def campaign_summary(campaign: Campaign, base_url: str = "/api") -> dict[str, Any]:
    """The API's view of a campaign (GET /api/campaigns/{id})."""
    links: dict[str, str | None] = {"report": None, "results": None, "package": None}
    run_dir = _run_dir(campaign)
    if run_dir is not None and (run_dir / "report.html").is_file():
        links["report"] = f"{base_url}/campaigns/{campaign.id}/report"
        links["results"] = f"{base_url}/campaigns/{campaign.id}/results"
    if package_path(campaign) is not None:
        links["package"] = f"{base_url}/campaigns/{campaign.id}/package"
    when = lambda d: d.isoformat(timespec="seconds") + "Z" if d else None  # noqa: E731
    return {
        "id": campaign.id, "dut": campaign.dut_id if campaign.dut_id is not None else REFERENCE,
        "mode": campaign.mode, "requirements": list(campaign.requirements or []), "mutant": campaign.mutant,
        "status": campaign.status, "verdict": campaign.verdict, "exit_code": campaign.exit_code,
        "requirement_verdicts": dict(campaign.requirement_verdicts or {}), "error": campaign.error,
        "worker": campaign.worker, "created_at": when(campaign.created_at), "started_at": when(campaign.started_at),
        "finished_at": when(campaign.finished_at), "links": links,
    }


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
