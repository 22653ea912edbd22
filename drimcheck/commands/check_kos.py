"""`drimcheck check-kos FILE.dcm [--fqdn dbN.<registry>.mesimagesmedicales.fr] [--json] [--strict]`

Judges one KOS file offline on every check that needs no PACS (KOS-01 IOD via dciodvfy, KOS-02
template, KOS-04 identity, KOS-05 retrieve location, FQDN-01 RetrieveURL). Exit codes: 0 conformant,
1 not conformant, 2 bad arguments or unreadable file (one line), 3 dciodvfy could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("check-kos", help="judge one KOS file offline (IOD, template, identity, FQDN)")
    p.add_argument("file", type=Path, help="the KOS (DICOM Part 10 file)")
    p.add_argument("--fqdn", metavar="dbN.<registre>.mesimagesmedicales.fr",
                   help="the dbN FQDN every RetrieveURL must use (without it, only the form is checked)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--strict", action="store_true", help="inferred requirements FAIL instead of WARN")
    p.set_defaults(handler=run)


def judge(path: Path, fqdn: str | None, *, strict: bool = False) -> list:
    """Findings of every offline KOS check on one file (strength policy applied)."""
    from drimcheck import catalogue
    from drimcheck.checks import fqdn as fqdn_checks
    from drimcheck.checks import kos as kos_checks
    from drimcheck.kos import KosDocument

    doc = KosDocument.from_bytes(path.read_bytes(), label=path.name, evidence=[str(path)])
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


def run(args: argparse.Namespace) -> int:
    from drimcheck.cli import UsageError
    from drimcheck.config import FQDN_RE
    from drimcheck.kos import KosError, load
    from drimcheck.verdicts import exit_code_for

    fqdn = args.fqdn.lower().rstrip(".") if args.fqdn else None
    if fqdn is not None:
        m = FQDN_RE.match(fqdn)
        if not m or m.group(1) != "db":
            raise UsageError(f"--fqdn must be dbN.<registry>.mesimagesmedicales.fr, got {args.fqdn!r}")
    if not args.file.is_file():
        raise UsageError(f"{args.file}: no such file")
    try:
        load(args.file)
    except KosError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    findings = judge(args.file, fqdn, strict=args.strict)
    code = exit_code_for([f.verdict for f in findings])
    if args.json:
        print(json.dumps({"file": str(args.file), "fqdn": fqdn, "strict": args.strict, "exit_code": int(code),
                          "findings": [f.to_dict() for f in findings]}, ensure_ascii=False, indent=2))
    else:
        from drimcheck.cli import _paint

        print(f"drimcheck check-kos {args.file}" + (f" (FQDN attendu : {fqdn})" if fqdn else " (sans --fqdn : forme seule)"))
        for f in findings:
            print(f"{_paint(f.verdict.value)} {f.requirement}: {f.message}")
        verdict = {0: "CONFORME", 1: "NON CONFORME"}.get(int(code), "ERREUR D'EXÉCUTION")
        print(f"Verdict : {verdict}")
    sys.stdout.flush()
    return int(code)
