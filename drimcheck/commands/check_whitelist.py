"""`drimcheck check-whitelist FILE`: verify an ANS whitelist offline, the way a DRIMbox must.

Exit codes: 0 valid, 1 not valid (every reason printed, or in --json), 2 unusable input or
arguments (unreadable file, not XML, bad date, unreadable trust anchor or CRL).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from drimcheck.verdicts import ExitCode


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check-whitelist", help="verify the XAdES signature, signer, chain, validity and revocation of an ANS whitelist",
        description="Vérifie une liste blanche DRIM-M comme une DRIMbox doit le faire : intégrité XMLDSig de chaque "
                    "référence, propriétés XAdES signées, chaîne vers une ancre de confiance, CN et OU du signataire, "
                    "validité à la date donnée, révocation par CRL, domaines exactement ceux qui sont signés. "
                    "Code retour : 0 valide, 1 non valide, 2 entrée inutilisable.")
    p.add_argument("file", type=Path, metavar="FILE", help="the whitelist (XML)")
    p.add_argument("--trust-anchor", action="append", type=Path, metavar="PEM", default=[],
                   help="trust anchor certificate(s) (PEM or DER; repeatable); default: the public IGC-Santé TEST "
                        "root and ORGANISATIONS intermediate shipped with drimcheck")
    p.add_argument("--crl", action="append", type=Path, metavar="FILE", default=[],
                   help="CRL (PEM or DER; repeatable) used for the revocation check")
    p.add_argument("--no-revocation", action="store_true",
                   help="do not check revocation (otherwise, without a usable CRL the list is not valid)")
    p.add_argument("--at", metavar="ISO-8601", help="verification time, e.g. 2025-01-01T00:00:00Z (default: now)")
    p.add_argument("--json", action="store_true", help="machine-readable report (reasons, signer, chain, domains)")
    p.set_defaults(handler=run)


def _at(value: str | None) -> datetime:
    from drimcheck.cli import UsageError

    if value is None:
        return datetime.now(timezone.utc)
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at: not an ISO-8601 date or date-time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _read(path: Path, what: str) -> bytes:
    from drimcheck.cli import UsageError

    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


def _load(path: Path, loader, what: str):
    """Read and decode one input file; one UsageError line when it cannot be."""
    from drimcheck.cli import UsageError

    _read(path, f"cannot read {what}")
    try:
        return loader(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from drimcheck import whitelist as wl
    from drimcheck.cli import UsageError

    at = _at(args.at)
    data = _read(args.file, "cannot read")
    anchors = [c for path in args.trust_anchor for c in _load(path, wl.load_certificates, "trust anchor")] \
        if args.trust_anchor else None
    crls = [_load(path, wl.load_crl, "CRL") for path in args.crl]
    try:
        report = wl.verify_whitelist(data, trust_anchors=anchors, crls=crls, check_revocation=not args.no_revocation,
                                     at=at)
    except wl.UnusableInput as exc:
        raise UsageError(f"{args.file}: unusable input: {exc}") from None
    if args.json:
        print(json.dumps({"file": str(args.file), **report.to_dict()}, ensure_ascii=False, indent=2))
    else:
        _print_text(args.file, report)
    return ExitCode.CONFORMANT if report.valid else ExitCode.NON_CONFORMANT


def _print_text(path: Path, report) -> None:
    verdict = "VALIDE" if report.valid else "NON VALIDE"
    print(f"{path} : liste blanche {verdict} (vérifiée au {report.checked_at})")
    if report.signer:
        print(f"  signataire : {report.signer['subject']} (valide du {report.signer['not_before'][:10]} "
              f"au {report.signer['not_after'][:10]})")
    if report.signing_time:
        print(f"  signée le : {report.signing_time}")
    if report.chain:
        print(f"  chaîne : {' <- '.join(reversed(report.chain))}")
    for step, state in report.checks.items():
        print(f"  {step:<11} {state}")
    for p in report.problems:
        print(f"  - [{p.code}] {p.message}")
    if report.valid:
        print(f"  {len(report.domains)} domaine(s) signé(s) : {', '.join(d.db for d in report.domains)}")
