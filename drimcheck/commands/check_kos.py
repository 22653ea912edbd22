"""`drimcheck check-kos FILE.dcm [--fqdn dbN.<registry>.mesimagesmedicales.fr] [--json] [--strict]`

Judges one KOS file offline on every check that needs no PACS (KOS-01 IOD via dciodvfy, KOS-02
template, KOS-04 identity, KOS-05 retrieve location, FQDN-01 RetrieveURL). Exit codes: 0 conformant,
1 not conformant, 2 bad arguments or unreadable file (one line), 3 dciodvfy could not run.

The input is read with a size cap (MAX_KOS_BYTES) and fully decoded once before any check sees it:
a truncated file, an element that cannot be decoded, sequences nested deeper than MAX_DEPTH or a
dataset without SOPClassUID are unusable input (exit 2, one French line), never a verdict.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import warnings
from pathlib import Path

MAX_KOS_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32  # nesting of sequences; a KOS uses 3 or 4 levels


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check-kos", help="juger un fichier KOS hors ligne (IOD, gabarit, identité, FQDN)",
        description="Juge un KOS (fichier DICOM Part 10) sur chaque contrôle qui n'a pas besoin du PACS : KOS-01 (IOD, "
                    "dciodvfy), KOS-02 (gabarit Manifest), KOS-04 (identité), KOS-05 (emplacement de récupération), "
                    "FQDN-01 (RetrieveURL). Code retour : 0 conforme, 1 non conforme, 2 fichier inutilisable, "
                    "3 dciodvfy n'a pas pu s'exécuter.")
    p.add_argument("file", type=Path, metavar="FICHIER", help="le KOS (fichier DICOM Part 10)")
    p.add_argument("--fqdn", metavar="dbN.<registre>.mesimagesmedicales.fr",
                   help="le FQDN dbN que chaque RetrieveURL doit employer (sans lui, seule la forme est contrôlée)")
    p.add_argument("--json", action="store_true",
                   help="constats en JSON (champs verdict, exit_code, findings)")
    p.add_argument("--strict", action="store_true", help="les exigences inférées donnent FAIL au lieu de WARN")
    p.set_defaults(handler=run)


def judge(path: Path, fqdn: str | None, *, strict: bool = False, data: bytes | None = None) -> list:
    """Findings of every offline KOS check on one file (strength policy applied)."""
    from drimcheck import catalogue
    from drimcheck.checks import fqdn as fqdn_checks
    from drimcheck.checks import kos as kos_checks
    from drimcheck.kos import KosDocument

    doc = KosDocument.from_bytes(path.read_bytes() if data is None else data, label=path.name, evidence=[str(path)])
    findings = [
        *kos_checks.iod_valid(doc),
        *kos_checks.manifest_template(doc),
        *kos_checks.identity(doc),
        *kos_checks.retrieve_location(doc),
        *fqdn_checks.retrieve_urls_on_dbn(doc, fqdn),
    ]
    cat = catalogue.load()
    for f in findings:
        cat.apply_strength(f, strict=strict)
    return findings


class _Truncated(Exception):
    def __init__(self, position: int):
        self.position = position


class _StrictReader(io.BytesIO):
    """A file whose short reads are errors: pydicom silently accepts an element cut by the end of the file."""

    def read(self, size: int | None = -1) -> bytes:
        position = self.tell()
        data = super().read(size)
        preamble_probe = (position, size) in ((0, 128), (128, 4))  # a bare dataset has no 128-byte preamble + DICM
        if size is not None and size > 0 and 0 < len(data) < size and not preamble_probe:
            raise _Truncated(position)
        return data


def decode_fully(data: bytes) -> None:
    """Decode every element of a DICOM file once; UsageError (one French line) if it cannot be a KOS."""
    import pydicom
    from pydicom.dataset import Dataset

    from drimcheck.cli import UsageError

    if not data:
        raise UsageError("pas un fichier DICOM lisible : fichier vide")
    reader = _StrictReader(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(reader, force=True)
            stack: list[tuple[Dataset, int]] = [(ds, 0)]
            while stack:
                current, depth = stack.pop()
                for elem in current:  # iterating converts each raw element (and reads nested sequences)
                    if elem.VR == "SQ":
                        if depth + 1 > MAX_DEPTH:
                            raise UsageError(f"fichier DICOM inexploitable : séquences imbriquées sur plus de "
                                             f"{MAX_DEPTH} niveaux")
                        stack.extend((item, depth + 1) for item in elem.value)
                    else:
                        elem.value  # noqa: B018 - decodes the value
    except UsageError:
        raise
    except _Truncated as exc:
        if exc.position == 0:
            raise UsageError("pas un fichier DICOM lisible : fichier trop court") from None
        raise UsageError(f"pas un fichier DICOM lisible : fichier tronqué (élément incomplet à l'octet "
                         f"{exc.position})") from None
    except RecursionError:
        raise UsageError("fichier DICOM inexploitable : séquences imbriquées trop profondément") from None
    except Exception:  # noqa: BLE001 - pydicom raises many types on garbage; none is a verdict
        raise UsageError(f"pas un fichier DICOM lisible : élément mal encodé (près de l'octet {reader.tell()})") from None
    if len(ds) == 0:
        raise UsageError("pas un fichier DICOM lisible : aucun élément")
    if "SOPClassUID" not in ds:
        raise UsageError("fichier DICOM sans SOPClassUID : ce n'est pas un KOS")


def run(args: argparse.Namespace) -> int:
    from drimcheck.cli import UsageError, read_input
    from drimcheck.config import FQDN_RE, printable
    from drimcheck.kos import KosError, load
    from drimcheck.verdicts import exit_code_for

    fqdn = args.fqdn.lower().rstrip(".") if args.fqdn else None
    if fqdn is not None:
        m = FQDN_RE.match(fqdn)
        if not m or m.group(1) != "db":
            raise UsageError(f"--fqdn : dbN.<registre>.mesimagesmedicales.fr est attendu, pas « {printable(args.fqdn)} »")
    shown = printable(str(args.file), 200)
    data = read_input(args.file, MAX_KOS_BYTES, "KOS")
    try:
        decode_fully(data)
    except UsageError as exc:
        raise UsageError(f"{shown} : {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load(data)
            findings = judge(args.file, fqdn, strict=args.strict, data=data)
    except KosError as exc:
        raise UsageError(f"{shown} : {exc}") from None
    except RecursionError:
        raise UsageError(f"{shown} : fichier DICOM inexploitable : séquences imbriquées trop profondément") from None
    except Exception as exc:  # noqa: BLE001 - content the checks cannot read is unusable input, not a verdict
        if os.environ.get("DRIMCHECK_DEBUG") == "1":
            raise
        raise UsageError(f"{shown} : fichier DICOM inexploitable par les vérifications (contenu inattendu ; "
                         "DRIMCHECK_DEBUG=1 pour le détail)") from None
    code = exit_code_for([f.verdict for f in findings])
    verdict = {0: "CONFORME", 1: "NON CONFORME"}.get(int(code), "ERREUR D'EXÉCUTION")
    if args.json:
        print(json.dumps({"file": str(args.file), "fqdn": fqdn, "strict": args.strict, "verdict": verdict,
                          "exit_code": int(code), "findings": [f.to_dict() for f in findings]},
                         ensure_ascii=False, indent=2))
    else:
        from drimcheck.cli import _paint

        print(f"drimcheck check-kos {args.file}" + (f" (FQDN attendu : {fqdn})" if fqdn else " (sans --fqdn : forme seule)"))
        for f in findings:
            print(f"{_paint(f.verdict.value)} {f.requirement}: {f.message}")
        print(f"Verdict : {verdict}")
    sys.stdout.flush()
    return int(code)
