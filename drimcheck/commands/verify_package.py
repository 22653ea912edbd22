"""`drimcheck verify-package FILE [--expect-signer CERT] [--json]`: check a referencing package.

Every file of the archive is in the SHA-256 manifest with the right digest, and nothing is missing or
extra; the package comes from a complete referencing campaign within the normative bounds; if the
manifest is signed (`manifest.sha256.p7s`, CMS detached), the signature is valid over the manifest
and the signer certificate is reported (and must be `--expect-signer` when given).
Nothing is extracted to disk; unsafe member names (absolute, `..`, backslashes), links, duplicates
and archives beyond the size caps (zip bombs) make the package invalid.
Exit codes: 0 valid, 1 not valid (every reason printed), 2 unreadable file or bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from drimcheck.verdicts import ExitCode

MAX_ENTRIES = 100_000
MAX_ENTRY_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
MAX_RATIO = 200  # uncompressed / compressed, for members larger than RATIO_FLOOR
RATIO_FLOOR = 1024 * 1024
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_SIGNATURE_BYTES = 1024 * 1024
MANIFEST_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify-package", help="vérifier un paquet de référencement (manifeste SHA-256, signature CMS éventuelle)",
        description="Vérifie un paquet de référencement produit par « drimcheck run --referencement » : chaque "
                    "fichier est au manifeste SHA-256 avec la bonne empreinte, aucun fichier manquant ni en trop, "
                    "signature CMS du manifeste valide si elle est présente. Code retour : 0 valide, 1 non valide, "
                    "2 fichier illisible.")
    p.add_argument("file", type=Path, metavar="FICHIER", help="le paquet (.zip)")
    p.add_argument("--expect-signer", type=Path, metavar="CERT",
                   help="le certificat de l'opérateur (PEM ou DER) qui doit avoir signé le manifeste")
    p.add_argument("--json", action="store_true", help="rapport en JSON (champ verdict : VALIDE ou NON VALIDE)")
    p.set_defaults(handler=run)


@dataclass
class Report:
    file: str
    problems: list[str] = field(default_factory=list)
    files: int = 0
    signed: bool = False
    signer: dict[str, Any] | None = None
    campaign: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "valid": self.valid, "problems": self.problems, "files": self.files,
                "signed": self.signed, "signer": self.signer, "campaign": self.campaign}


class Unreadable(Exception):
    """Not a zip archive at all, or unreadable: exit 2."""


def safe_name(name: str) -> bool:
    """A member name that cannot escape an extraction directory (zip-slip)."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return False
    parts = PurePosixPath(name).parts
    return all(p not in ("..", ".", "") for p in parts)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int], *, keep: bool = True):
    """Read one member within its declared size and the total budget (zip bombs): its bytes (keep) or its
    SHA-256 hex digest; None if it overflows."""
    chunks, size, digest = [], 0, hashlib.sha256()
    with zf.open(info) as fh:
        while True:
            chunk = fh.read(1024 * 1024)
            if not chunk:
                break
            size += len(chunk)
            budget[0] -= len(chunk)
            if size > info.file_size or size > MAX_ENTRY_BYTES or budget[0] < 0:
                return None
            digest.update(chunk)
            if keep:
                chunks.append(chunk)
    return b"".join(chunks) if keep else digest.hexdigest()


def verify(path: Path, expect_signer: bytes | None = None) -> Report:
    from drimcheck import package

    report = Report(str(path))
    problems = report.problems
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise Unreadable(f"{path}: archive zip illisible ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            problems.append(f"archive refusée : {len(infos)} membres (au plus {MAX_ENTRIES})")
            return report
        declared = sum(i.file_size for i in infos)
        if declared > MAX_TOTAL_BYTES:
            problems.append(f"archive refusée : {declared} octets décompressés annoncés (au plus {MAX_TOTAL_BYTES})")
            return report
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            if not safe_name(name):
                problems.append(f"nom de membre dangereux refusé (zip-slip) : {name!r}")
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                problems.append(f"lien symbolique refusé dans l'archive : {name}")
                continue
            if info.is_dir():
                continue
            if name in members:
                problems.append(f"membre en double : {name}")
                continue
            if info.file_size > MAX_ENTRY_BYTES or (
                    info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1)):
                problems.append(f"membre refusé (taille ou taux de compression anormal, bombe zip ?) : {name}")
                continue
            members[name] = info
        if problems:
            return report
        if package.MANIFEST not in members:
            problems.append(f"{package.MANIFEST} absent : ce n'est pas un paquet de référencement drimcheck")
            return report
        budget = [MAX_TOTAL_BYTES]
        try:
            if members[package.MANIFEST].file_size > MAX_MANIFEST_BYTES:
                problems.append(f"{package.MANIFEST} trop volumineux")
                return report
            manifest_bytes = _read_member(zf, members[package.MANIFEST], budget)
            if manifest_bytes is None:
                problems.append(f"{package.MANIFEST} : taille réelle différente de la taille annoncée")
                return report
            expected = _parse_manifest(manifest_bytes, problems)
            if expected is None:
                return report
            contents: dict[str, bytes] = {}
            for name, info in sorted(members.items()):
                if name in (package.MANIFEST, package.SIGNATURE):
                    continue
                if name not in expected:
                    problems.append(f"fichier absent du manifeste (ajouté ?) : {name}")
                    continue
                data = _read_member(zf, info, budget, keep=name == "results.json")
                if data is None:
                    problems.append(f"membre refusé (taille réelle supérieure à l'annonce ou au plafond) : {name}")
                    return report
                if isinstance(data, bytes):
                    contents[name], data = data, hashlib.sha256(data).hexdigest()
                if data != expected[name]:
                    problems.append(f"empreinte SHA-256 différente du manifeste (fichier modifié) : {name}")
            for name in sorted(set(expected) - set(members)):
                problems.append(f"fichier du manifeste absent de l'archive (supprimé ?) : {name}")
            report.files = len(expected)
            for name in package.REQUIRED_FILES:
                if name not in expected:
                    problems.append(f"fichier obligatoire absent du paquet : {name}")
            _check_campaign(contents.get("results.json"), report)
            if package.SIGNATURE in members:
                report.signed = True
                if members[package.SIGNATURE].file_size > MAX_SIGNATURE_BYTES:
                    problems.append(f"{package.SIGNATURE} trop volumineux")
                    return report
                sig = _read_member(zf, members[package.SIGNATURE], budget)
                try:
                    signer = package.verify_cms_detached(sig or b"", manifest_bytes)
                    report.signer = signer.describe()
                    if expect_signer is not None and signer.certificate.fingerprint(
                            _sha256()) != _fingerprint(expect_signer):
                        problems.append("le manifeste n'est pas signé par le certificat attendu (--expect-signer)")
                except package.CmsError as exc:
                    problems.append(str(exc))
            elif expect_signer is not None:
                problems.append("paquet non signé alors qu'un signataire est attendu (--expect-signer)")
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            problems.append(f"membre illisible ou corrompu : {exc}")
        except RuntimeError as exc:  # encrypted members
            problems.append(f"membre illisible : {exc}")
    return report


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _fingerprint(cert_data: bytes) -> bytes:
    from cryptography import x509

    load = x509.load_pem_x509_certificate if b"-----BEGIN" in cert_data else x509.load_der_x509_certificate
    return load(cert_data).fingerprint(_sha256())


def _parse_manifest(data: bytes, problems: list[str]) -> dict[str, str] | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append("manifeste illisible (pas de l'UTF-8)")
        return None
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = MANIFEST_LINE.match(line)
        if not m:
            problems.append(f"manifeste : ligne {n} mal formée")
            return None
        digest, name = m.groups()
        if not safe_name(name) or name in (_manifest_names()):
            problems.append(f"manifeste : chemin refusé ligne {n} : {name!r}")
            return None
        if name in out:
            problems.append(f"manifeste : {name} listé deux fois")
            return None
        out[name] = digest
    if not out:
        problems.append("manifeste vide")
        return None
    return out


def _manifest_names() -> tuple[str, str]:
    from drimcheck import package

    return package.MANIFEST, package.SIGNATURE


def _check_campaign(results: bytes | None, report: Report) -> None:
    if results is None:
        return
    try:
        data = json.loads(results)
        run, campaign = data["run"], data.get("campaign") or {}
    except (ValueError, KeyError, TypeError):
        report.problems.append("results.json illisible")
        return
    report.campaign = {"sut": (data.get("sut") or {}).get("name"), "run": run.get("id"), "verdict": run.get("verdict"),
                       "exit_code": run.get("exit_code"), "mode": campaign.get("mode"),
                       "sut_sha256": campaign.get("sut_sha256"),
                       "catalogue_version": (data.get("harness") or {}).get("catalogue_version")}
    if not campaign.get("referencing") or campaign.get("mode") != "full" or campaign.get("out_of_referencing"):
        report.problems.append("results.json ne décrit pas une campagne de référencement complète dans les bornes normatives")


def run(args: argparse.Namespace) -> int:
    from drimcheck.cli import UsageError

    if not args.file.is_file():
        raise UsageError(f"{args.file} : fichier introuvable")
    expect = None
    if args.expect_signer is not None:
        try:
            expect = args.expect_signer.read_bytes()
            _fingerprint(expect)
        except (OSError, ValueError):
            raise UsageError(f"{args.expect_signer} : certificat illisible (PEM ou DER)") from None
    try:
        report = verify(args.file, expect)
    except Unreadable as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"verdict": "VALIDE" if report.valid else "NON VALIDE", **report.to_dict()},
                         ensure_ascii=False, indent=2))
    else:
        print(f"drimcheck verify-package {args.file}")
        c = report.campaign
        if c:
            print(f"Campagne : {c.get('sut')} · exécution {c.get('run')} · catalogue {c.get('catalogue_version')} · "
                  f"verdict {c.get('verdict')}")
        print(f"Fichiers au manifeste : {report.files}")
        if report.signed and report.signer:
            s = report.signer
            print(f"Signataire : {s['subject']} (émis par {s['issuer']}, n° {s['serial']}, SHA-256 {s['sha256']}, "
                  f"signé le {s['signing_time'] or 'date inconnue'})")
        elif not report.signed:
            print("Manifeste non signé")
        for p in report.problems:
            print(f"  NON VALIDE : {p}")
        print("Paquet : VALIDE" if report.valid else "Paquet : NON VALIDE")
    return int(ExitCode.CONFORMANT if report.valid else ExitCode.NON_CONFORMANT)
