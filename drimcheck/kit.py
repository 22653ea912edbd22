"""Stable test kit of an external DRIMbox: the trust space a vendor installs once, and `dut-settings.json`.

Layout of a kit directory (nothing of it is ever committed; `drimcheck kit` generates it):

* ``harness/`` (0700) -- drimcheck's part, never given to the DUT: ``kit.json`` (manifest: validity,
  publication URL, which file is which, the stable secrets) and ``ca/`` (CA certificates and private keys).
* ``dut/`` -- what the DUT installs: ``certs/`` (its certificates, keys 0600), ``trust/`` (bundles),
  ``dut-settings.json`` (every value it needs, schema ``docs/dut-settings.schema.json``) and ``hosts``.
* ``README.txt`` (French) describing every file.

Campaigns with ``[pki] kit`` load the kit's CAs and the DUT's certificates into the run's TestPKI
(:func:`load_pki`): simulators' certificates are issued per run from the same CAs, so the DUT's trust
anchors never change. The document written to ``dut-settings.json`` is built by :func:`settings_document`
from a runtime's simulators -- the same function the embedded reference launcher uses, so they cannot drift.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drimcheck import __version__
from drimcheck.config import Sut

SCHEMA_VERSION = "1.0"
KIT_FORMAT = 1
DEFAULT_DAYS = 90
#: CAs of the kit, parents first (the rogue hierarchy stays a throwaway per run: "wrong CA" certificates)
KIT_CAS = ("igc_root", "igc_org", "igc_org_standard", "market_ca")
#: trust bundles of the DUT: file name -> (TestPKI property giving the same content in a run, description)
TRUST_FILES = {
    "igc_chain": "trust/igc-chain.pem",
    "igc_root": "trust/igc-root.pem",
    "market_root": "trust/market-root.pem",
    "whitelist_signer_chain": "trust/whitelist-signer-chain.pem",
}
DEFAULT_PSC_CLIENT_ID = "drimbox-dut"
DEFAULT_DICOMWEB_USER = "drimcheck"


class KitError(ValueError):
    """The kit cannot be made or used: one line (exit 2)."""


# --------------------------------------------------------------------------- paths


def harness_dir(kit: Path) -> Path:
    return Path(kit) / "harness"


def dut_dir(kit: Path) -> Path:
    return Path(kit) / "dut"


def manifest_path(kit: Path) -> Path:
    return harness_dir(kit) / "kit.json"


def settings_path(kit: Path) -> Path:
    return dut_dir(kit) / "dut-settings.json"


def read_manifest(kit: Path) -> dict[str, Any]:
    path = manifest_path(kit)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitError(f"{kit} : pas un kit de test drimcheck ({path} absent) ; créez-le avec « drimcheck kit »") from None
    except (OSError, ValueError) as exc:
        raise KitError(f"{path} : illisible : {exc}") from None
    if data.get("format") != KIT_FORMAT:
        raise KitError(f"{path} : format de kit {data.get('format')!r} non pris en charge (attendu {KIT_FORMAT})")
    return data


def _write(path: Path, data: str | bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def _copy(src: Path, dst: Path, mode: int) -> None:
    _write(dst, Path(src).read_bytes(), mode)


def _mkdir(path: Path, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


# --------------------------------------------------------------------------- creation


def _publication_url(sut: Sut) -> str:
    igc = sut.simulator_address("igc")
    if igc is None or not igc.port:
        raise KitError(f"{sut.source_file} : [simulators] igc doit donner une adresse fixe « hôte:port » : les "
                       "certificats du kit y désignent leurs listes de révocation (CRL)")
    return f"http://{igc}"


def _check_sut(sut: Sut) -> None:
    if sut.embedded:
        raise KitError(f"{sut.source_file} : le kit sert une DRIMbox externe ; la DRIMbox de référence intégrée "
                       "garde son PKI jetable par campagne (retirez « embedded » pour l'exemple externe)")
    for p in sut.pacs:
        if not p.dicom_port or not p.http_port:
            raise KitError(f"{sut.source_file} [[pacs]] {p.name} : dicom_port et http_port doivent être fixes")


def create_kit(sut: Sut, out: Path, *, days: int = DEFAULT_DAYS, now: datetime | None = None,
               force: bool = False) -> dict[str, Any]:
    """Create the kit for `sut` in `out` (must be absent or empty, or `force`); returns the dut-settings document."""
    _check_sut(sut)
    if days < 1 or days > 3650:
        raise KitError(f"--days : durée de validité entre 1 et 3650 jours, reçu {days}")
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        if not force:
            raise KitError(f"{out} n'est pas vide : choisissez un autre répertoire ou ajoutez --force (il sera vidé)")
        if not manifest_path(out).is_file():
            raise KitError(f"{out} n'est pas un kit drimcheck : --force refuse de le vider")
        shutil.rmtree(out)
    publication_url = _publication_url(sut)
    try:
        return _create(sut, out, days, publication_url, now)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # never leave a half-made kit behind
        raise


def _create(sut: Sut, out: Path, days: int, publication_url: str, now: datetime | None) -> dict[str, Any]:
    from fixtures.pki import TestPKI

    now = (now or datetime.now(UTC)).replace(microsecond=0)
    _mkdir(out, 0o755)
    harness, dut = _mkdir(harness_dir(out), 0o700), _mkdir(dut_dir(out), 0o700)
    _mkdir(harness / "ca", 0o700)
    _mkdir(dut / "certs", 0o700)
    _mkdir(dut / "trust", 0o755)

    scratch = Path(tempfile.mkdtemp(prefix=".gen-", dir=harness))
    try:
        pki = TestPKI(scratch, publication_url=publication_url, now=now,
                      ca_lifetime=timedelta(days=days), leaf_lifetime=timedelta(days=days))
        cas: dict[str, dict[str, str]] = {}
        for name in KIT_CAS:
            ca = pki._ca(name)
            _copy(ca.cert_path, harness / "ca" / f"{name}.cert.pem", 0o644)
            _copy(ca.key_path, harness / "ca" / f"{name}.key.pem", 0o600)
            cas[name] = {"cert": f"ca/{name}.cert.pem", "key": f"ca/{name}.key.pem"}
        leaves: dict[str, dict[str, str]] = {}
        certificates: dict[str, Any] = {"serv_ssl": {}, "market_ov": {}}

        def install(issued, stem: str) -> dict[str, str]:
            files = {"cert": f"certs/{stem}.cert.pem", "key": f"certs/{stem}.key.pem", "chain": f"certs/{stem}.chain.pem"}
            _copy(issued.cert_path, dut / files["cert"], 0o644)
            _copy(issued.key_path, dut / files["key"], 0o600)
            _copy(issued.chain_path, dut / files["chain"], 0o644)
            leaves[issued.name] = {**{k: f"../dut/{v}" for k, v in files.items()}, "profile": issued.profile,
                                   "issuer": issued.issuer}
            return files

        for p in sut.pacs:
            certificates["serv_ssl"][p.db] = install(pki.serv_ssl(p.db), f"serv-ssl-{p.db}")
            certificates["market_ov"][p.vi] = install(pki.market_ov(p.vi), f"market-ov-{p.vi}")
        certificates["org_auth_cli"] = install(pki.org_auth_cli(), "org-auth-cli")
        certificates["org_sign"] = install(pki.org_sign(), "org-sign")
        bundles = {
            "igc_chain": [pki.igc_org.cert, pki.igc_root.cert],
            "igc_root": [pki.igc_root.cert],
            "market_root": [pki.market_ca.cert],
            "whitelist_signer_chain": [pki.igc_org.cert, pki.igc_root.cert],  # issuers of the ANS signer (ORG SIGN)
        }
        from cryptography.hazmat.primitives import serialization

        for key, certs in bundles.items():
            _write(dut / TRUST_FILES[key], b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs), 0o644)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    manifest = {
        "format": KIT_FORMAT,
        "generated_by": f"drimcheck {__version__}",
        "created": now.isoformat(),
        "valid_until": (now + timedelta(days=days)).isoformat(),
        "days": days,
        "publication_url": publication_url,
        "sut": {"name": sut.name, "registry": sut.registry, "source_file": sut.source_file},
        "cas": cas,
        "leaves": leaves,
        "certificates": certificates,
        "secrets": {
            "psc_client_id": str(sut.dut_value("psc_client_id", DEFAULT_PSC_CLIENT_ID)),
            "psc_client_secret": str(sut.dut_value("psc_client_secret") or secrets.token_urlsafe(24)),
            "pacs": {p.name: {"user": p.dicomweb_user or DEFAULT_DICOMWEB_USER,
                              "password": p.dicomweb_password or secrets.token_urlsafe(18)} for p in sut.pacs},
        },
    }
    _write(manifest_path(out), json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", 0o600)
    document = _settings_from_simulators(sut, out)
    write_settings(out, document)
    _write(out / "README.txt", readme_text(document), 0o644)
    return document


def write_settings(kit: Path, document: dict[str, Any]) -> None:
    _write(settings_path(kit), json.dumps(document, indent=2, ensure_ascii=False) + "\n", 0o600)
    _write(dut_dir(kit) / "hosts", hosts_text(document), 0o644)


# --------------------------------------------------------------------------- use by a campaign


def check_usable(sut: Sut) -> None:
    """Before a campaign: the sut.toml's [pki] kit exists, is a kit, was made for this IGC address and is not
    expired (KitError, one line: a configuration error, exit 2, rather than a failed start-up, exit 3)."""
    kit = getattr(sut, "pki_kit", None)
    if kit is None:
        return
    manifest = read_manifest(Path(kit))
    publication_url = _publication_url(sut)
    if manifest.get("publication_url", "").rstrip("/") != publication_url.rstrip("/"):
        raise KitError(f"kit {kit} : fait pour le simulateur IGC à {manifest.get('publication_url')}, la campagne le "
                       f"place à {publication_url} : gardez [simulators] igc ou régénérez le kit")
    try:
        valid_until = datetime.fromisoformat(manifest["valid_until"])
    except (KeyError, TypeError, ValueError):
        raise KitError(f"kit {kit} : date de fin de validité illisible ; régénérez-le (drimcheck kit)") from None
    if valid_until <= datetime.now(UTC):
        raise KitError(f"kit {kit} : expiré depuis le {valid_until:%Y-%m-%d} ; régénérez-le (drimcheck kit)")


def load_pki(kit: Path, directory: Path, publication_url: str) -> Any:
    """The run's TestPKI with the kit's CAs and the DUT's certificates loaded (the rest issued per run)."""
    from fixtures.pki import TestPKI

    manifest = read_manifest(kit)
    if manifest["publication_url"].rstrip("/") != publication_url.rstrip("/"):
        raise KitError(f"kit {kit} : fait pour le simulateur IGC à {manifest['publication_url']}, la campagne le place "
                       f"à {publication_url} : gardez [simulators] igc ou régénérez le kit")
    valid_until = datetime.fromisoformat(manifest["valid_until"])
    if valid_until <= datetime.now(UTC):
        raise KitError(f"kit {kit} : expiré depuis le {valid_until:%Y-%m-%d} ; régénérez-le (drimcheck kit)")
    harness = harness_dir(kit)
    pki = TestPKI(directory, publication_url=publication_url)
    try:
        for name in KIT_CAS:
            files = manifest["cas"][name]
            pki.load(name, harness / files["cert"], harness / files["key"])
        for name, files in manifest["leaves"].items():
            pki.load(name, harness / files["cert"], harness / files["key"], chain_path=harness / files["chain"],
                     profile=files["profile"], issuer=files["issuer"])
    except (OSError, KeyError, ValueError) as exc:
        raise KitError(f"kit {kit} : incomplet ou incohérent : {type(exc).__name__}: {exc}") from None
    return pki


def apply_to_sut(sut: Sut, kit: Path) -> Sut:
    """The SUT with the kit's stable secrets filled in where sut.toml leaves them out (PSC client, DICOMweb)."""
    manifest = read_manifest(kit)
    sec = manifest["secrets"]
    dut = dict(sut.dut)
    dut.setdefault("psc_client_id", sec["psc_client_id"])
    if not dut.get("psc_client_secret"):
        dut["psc_client_secret"] = sec["psc_client_secret"]
    pacs = []
    for p in sut.pacs:
        creds = sec["pacs"].get(p.name) or {}
        pacs.append(replace(p, dicomweb_user=p.dicomweb_user or creds.get("user") or DEFAULT_DICOMWEB_USER,
                            dicomweb_password=p.dicomweb_password or creds.get("password")))
    return replace(sut, dut=dut, pacs=tuple(pacs))


# --------------------------------------------------------------------------- dut-settings.json


def runtime_files(runtime: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """(certificates, trust) of the DUT as absolute paths of the run's PKI (embedded reference)."""
    pki, sut = runtime.pki, runtime.sut

    def files(issued) -> dict[str, str]:
        return {"cert": str(issued.cert_path), "key": str(issued.key_path), "chain": str(issued.chain_path)}

    certificates: dict[str, Any] = {
        "serv_ssl": {p.db: files(pki.serv_ssl(p.db)) for p in sut.pacs},
        "market_ov": {p.vi: files(pki.market_ov(p.vi)) for p in sut.pacs},
        "org_auth_cli": files(pki.org_auth_cli()),
        "org_sign": files(pki.org_sign()),
    }
    trust = {"igc_chain": str(pki.igc_chain_pem), "igc_root": str(pki.igc_trust_pem),
             "market_root": str(pki.market_trust_pem), "whitelist_signer_chain": str(pki.igc_chain_pem)}
    return certificates, trust


def settings_document(runtime: Any, certificates: dict[str, Any], trust: dict[str, str],
                      *, valid_until: str | None = None, path_map: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything a DUT is configured with, from a runtime whose simulators are started.

    `path_map` rewrites the run's PKI file paths that simulators report (their CA files) to the kit's
    files; a path of the run's work directory left unmapped is an error (no value only drimcheck can reach).
    """
    sut = runtime.sut
    endpoints = runtime.dut_addresses()

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str) and path_map is not None and runtime.workdir and value.startswith(str(runtime.workdir)):
            if value not in path_map:
                raise KitError(f"réglage interne sans équivalent dans le kit : {value}")
            return path_map[value]
        return value

    listeners = []
    for p in sut.pacs:
        for role, fqdn in (("db", p.db), ("vi", p.vi)):
            ep = sut.network.get(fqdn)
            listeners.append({"fqdn": fqdn, "role": role, "pacs": p.name,
                              "https": str(ep.https) if ep and ep.https else None,
                              "http": str(ep.http) if ep and ep.http else None})
    pacs = []
    for p in sut.pacs:
        orthanc = runtime.pacs.get(p.name) if getattr(runtime, "pacs", None) else None
        host = orthanc.host if orthanc is not None else "127.0.0.1"
        http_url = orthanc.base_url if orthanc is not None else f"http://{host}:{p.http_port}"
        user, password = (orthanc.auth if orthanc is not None else (p.dicomweb_user, p.dicomweb_password))
        calling = runtime.pacs_calling_aets()[0] if hasattr(runtime, "pacs_calling_aets") else None
        pacs.append({"name": p.name, "db": p.db, "vi": p.vi, "aet": p.aet,
                     **({"calling_aet": calling} if calling else {}), "host": host, "dicom_port": p.dicom_port,
                     "http_port": p.http_port, "http_url": http_url, "dicomweb_url": f"{http_url}/dicom-web",
                     "dicomweb_user": user, "dicomweb_password": password})
    simulators = fix(runtime.dut_settings())
    psc = simulators.get("psc") or {}
    hosts = {fqdn: {"address": addr.rpartition(":")[0], "port": int(addr.rpartition(":")[2])}
             for fqdn, addr in runtime.extra_hosts().items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_by": f"drimcheck {__version__}",
        "valid_until": valid_until,
        "sut": {"name": sut.name, "registry": sut.registry, "roles": list(sut.roles)},
        "listeners": listeners,
        "endpoints": {name: str(addr) for name, addr in endpoints.items()},
        "settings": {name: value for name, value in sut.dut.items()
                     if name not in endpoints and name not in ("psc_client_secret",)},
        "pacs": pacs,
        "certificates": certificates,
        "trust": trust,
        "psc_client": {"client_id": psc.get("client_id"), "client_secret": psc.get("client_secret"),
                       "redirect_uris": psc.get("redirect_uris", [])},
        "simulators": simulators,
        "hosts": hosts,
    }


class _SettingsRuntime:
    """Just enough of a CampaignRuntime to start the simulators at their declared addresses and ask them
    what the DUT must be told (no PACS, no DUT, no hook)."""

    def __init__(self, sut: Sut, kit: Path, workdir: Path):
        from drimcheck.campaign import CampaignRuntime

        self._rt = CampaignRuntime(sut, workdir / "run")
        self._rt.workdir = workdir
        self._rt.pki = load_pki(kit, workdir / "pki", _publication_url(sut))

    def start(self) -> Any:
        from drimcheck.plugin import HarnessError

        try:
            self._rt.start_simulators()
        except HarnessError as exc:
            raise KitError(str(exc)) from None
        return self._rt

    def stop(self) -> None:
        for handle in reversed(list(self._rt.sims.values())):
            try:
                handle.stop()
            except Exception:  # noqa: BLE001 - best effort
                pass
        self._rt.sims.clear()


def _settings_from_simulators(sut: Sut, kit: Path) -> dict[str, Any]:
    manifest = read_manifest(kit)
    sut = apply_to_sut(sut, kit)
    work = Path(tempfile.mkdtemp(prefix="drimcheck-kit-"))
    holder = _SettingsRuntime(sut, kit, work)
    try:
        rt = holder.start()
        pki = rt.pki
        path_map = {str(pki.igc_chain_pem): TRUST_FILES["igc_chain"], str(pki.igc_trust_pem): TRUST_FILES["igc_root"],
                    str(pki.market_trust_pem): TRUST_FILES["market_root"]}
        return settings_document(rt, manifest["certificates"], dict(TRUST_FILES), valid_until=manifest["valid_until"],
                                 path_map=path_map)
    finally:
        holder.stop()
        shutil.rmtree(work, ignore_errors=True)


def hosts_text(document: dict[str, Any]) -> str:
    lines = ["# drimcheck : noms que la DRIMbox testée doit résoudre (à ajouter à /etc/hosts ou au DNS du banc).",
             "# Les ports ne figurent pas dans un fichier hosts : voir dut-settings.json (« hosts »)."]
    for fqdn, where in sorted(document["hosts"].items()):
        lines.append(f"{where['address']}\t{fqdn}\t# port {where['port']}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- human-readable


def table_rows(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(réglage, valeur) rows of the document, flattened, in document order."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            if not value:
                rows.append((prefix, "{}"))
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        elif isinstance(value, list):
            rows.append((prefix, ", ".join(str(v) for v in value) or "(aucun)"))
        else:
            rows.append((prefix, "(non défini)" if value is None else str(value)))

    walk("", document)
    return rows


#: French titles of the document's sections in `drimcheck kit --show`
SECTION_TITLES = {
    "schema_version": "Fichier", "sut": "DRIMbox testée", "listeners": "Ses FQDN et où elle écoute",
    "endpoints": "Ses autres points d'écoute", "settings": "Ses réglages simples ([dut])",
    "pacs": "PACS simulé à interroger (DICOM, DICOMweb)", "certificates": "Ses certificats et clés",
    "trust": "Magasins de confiance à charger", "psc_client": "Son client Pro Santé Connect",
    "simulators": "URL et réglages des simulateurs qu'elle appelle", "hosts": "Noms d'hôtes à résoudre (adresse, port)",
}


def show_text(document: dict[str, Any], kit: Path | None = None) -> str:
    rows = table_rows(document)
    width = max(len(k) for k, _ in rows)
    lines = ["Réglages de la DRIMbox testée (dut-settings.json" + (f", kit {kit}" if kit else "") + ")",
             "Chemins de fichiers : relatifs au répertoire dut/ du kit.", "",
             f"{'Réglage'.ljust(width)}  Valeur", f"{'-' * width}  {'-' * 6}"]
    shown: set[str] = set()
    for key, value in rows:
        section = re.split(r"[.\[]", key, maxsplit=1)[0]
        if section in SECTION_TITLES and section not in shown:
            shown.add(section)
            lines += ["", f"# {SECTION_TITLES[section]}"]
        lines.append(f"{key.ljust(width)}  {value}")
    return "\n".join(lines) + "\n"


README = """Kit de test drimcheck — {name} (registre {registry})
Généré par {generated_by}. Valide jusqu'au {valid_until}.
Ce répertoire est généré : ne le versionnez pas. Régénérez-le avec « drimcheck kit --force » à expiration.

Deux parties :

harness/   RÉSERVÉ À DRIMCHECK (mode 0700). Ne le copiez jamais sur la DRIMbox.
  kit.json            manifeste : validité, URL de publication IGC, rôle de chaque fichier, secrets stables
                      (secret client PSC, identifiants DICOMweb du PACS simulé).
  ca/*.cert.pem       certificats des AC de test (racine et intermédiaires type IGC-Santé, AC « marché »).
  ca/*.key.pem        clés privées de ces AC (0600) : drimcheck émet avec elles les certificats de ses
                      simulateurs à chaque campagne. Une DRIMbox ne doit jamais y avoir accès.

dut/       À INSTALLER UNE FOIS SUR LA DRIMBOX TESTÉE.
  dut-settings.json   tous les réglages de la DRIMbox (schéma versionné docs/dut-settings.schema.json,
                      schema_version {schema_version}) : URL de chaque simulateur (liste blanche, DMP, PSC,
                      Proxy e-santé, DRIMbox pairs), noms d'hôtes à résoudre, PACS à interroger (AE title,
                      ports DICOM et DICOMweb, identifiants), client PSC, chemins des certificats et des
                      magasins de confiance (relatifs à ce répertoire dut/). Contient des secrets (0600).
                      « drimcheck kit --show <kit> » l'affiche sous forme de tableau.
  hosts               lignes à ajouter au fichier hosts (ou au DNS) de la DRIMbox : adresse de chaque nom
                      d'hôte des simulateurs (les ports sont dans dut-settings.json).
{cert_lines}
  trust/igc-chain.pem            AC intermédiaire ORGANISATIONS + racine de test type IGC-Santé : ancre pour
                                 les certificats des DRIMbox pairs, du DMP, du Proxy e-santé. Leurs points de
                                 distribution de CRL sont servis par le simulateur IGC de drimcheck
                                 ({publication_url}).
  trust/igc-root.pem             racine de test type IGC-Santé seule.
  trust/market-root.pem          racine de l'AC « marché » : serveur de liste blanche et PSC (HTTPS public).
  trust/whitelist-signer-chain.pem  chaîne d'émission du signataire de la liste blanche (ORG SIGN, CN
                                 « Liste Blanche DRIM-M », OU 318751275100020).
"""

_CERT_DESCRIPTIONS = {
    "serv_ssl": "certificat SERV_SSL IGC-Santé de test de {fqdn} (serveur HTTPS, et client mTLS entre DRIMbox)",
    "market_ov": "certificat OV « marché » de {fqdn} (serveur HTTPS de visualisation)",
    "org_auth_cli": "certificat ORG AUTH_CLI (authentification client auprès du DMP et du Proxy e-santé)",
    "org_sign": "certificat ORG SIGN (signature des lots de soumission DMP)",
}


def readme_text(document: dict[str, Any]) -> str:
    lines = []

    def add(files: dict[str, str], what: str) -> None:
        lines.append(f"  {files['cert']:<44} {what}")
        lines.append(f"  {files['key']:<44} sa clé privée (PKCS#8, 0600)")
        lines.append(f"  {files['chain']:<44} certificat + intermédiaire (à présenter en TLS)")

    certs = document["certificates"]
    for fqdn, files in certs["serv_ssl"].items():
        add(files, _CERT_DESCRIPTIONS["serv_ssl"].format(fqdn=fqdn))
    for fqdn, files in certs["market_ov"].items():
        add(files, _CERT_DESCRIPTIONS["market_ov"].format(fqdn=fqdn))
    add(certs["org_auth_cli"], _CERT_DESCRIPTIONS["org_auth_cli"])
    add(certs["org_sign"], _CERT_DESCRIPTIONS["org_sign"])
    return README.format(name=document["sut"]["name"], registry=document["sut"]["registry"],
                         generated_by=document["generated_by"], valid_until=document["valid_until"],
                         schema_version=document["schema_version"], cert_lines="\n".join(lines),
                         publication_url=(document["simulators"].get("igc") or {}).get("url", "?"))
