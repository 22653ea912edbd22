"""`drimcheck check-whitelist FILE`: verify an ANS whitelist offline, the way a DRIMbox must.

Exit codes: 0 valid, 1 not valid (every reason printed, or in --json), 2 unusable input or
arguments (unreadable file, not XML, bad date, unreadable trust anchor or CRL).

Every input is read with a size cap before it is parsed (the whitelist: drimcheck.whitelist.MAX_SIZE;
a CRL or a trust anchor file: MAX_PKI_BYTES), so /dev/zero or a huge file ends in exit 2 with
bounded memory.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from drimcheck.verdicts import ExitCode

MAX_PKI_BYTES = 16 * 1024 * 1024  # a CRL or a certificate bundle


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check-whitelist", help="vérifier la signature XAdES, le signataire, la chaîne, la validité et la révocation "
                                "d'une liste blanche de l'ANS",
        description="Vérifie une liste blanche DRIM-M comme une DRIMbox doit le faire : intégrité XMLDSig de chaque "
                    "référence, propriétés XAdES signées, chaîne vers une ancre de confiance, CN et OU du signataire, "
                    "validité à la date donnée, révocation par CRL, domaines exactement ceux qui sont signés. "
                    "Sans CRL utilisable, la révocation est inconnue et la liste NON VALIDE : donnez la CRL de l'AC "
                    "émettrice avec --crl, ou vérifiez sans révocation avec --no-revocation. "
                    "Code retour : 0 valide, 1 non valide, 2 entrée inutilisable.")
    p.add_argument("file", type=Path, metavar="FICHIER", help="la liste blanche (XML)")
    p.add_argument("--trust-anchor", action="append", type=Path, metavar="PEM", default=[],
                   help="certificat(s) d'ancre de confiance (PEM ou DER ; répétable) ; par défaut : la racine IGC-Santé "
                        "TEST et l'intermédiaire ORGANISATIONS publics, livrés avec drimcheck")
    p.add_argument("--crl", action="append", type=Path, metavar="FICHIER", default=[],
                   help="CRL (PEM ou DER ; répétable) pour le contrôle de révocation")
    p.add_argument("--no-revocation", action="store_true",
                   help="ne pas contrôler la révocation (sinon, sans CRL utilisable, la liste n'est pas valide)")
    p.add_argument("--at", metavar="ISO-8601",
                   help="date de vérification, par ex. 2025-01-01T00:00:00Z (par défaut : maintenant)")
    p.add_argument("--json", action="store_true",
                   help="rapport en JSON (verdict, raisons, signataire, chaîne ; domains n'est rempli que si la liste "
                        "est valide, domain_count compte les domaines trouvés même sinon, hint donne l'action à mener)")
    p.set_defaults(handler=run)


def _at(value: str | None) -> datetime:
    from drimcheck.cli import UsageError

    if value is None:
        return datetime.now(timezone.utc)
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at : date ou date-heure ISO 8601 attendue, pas « {value} »") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _certificates(path: Path) -> list:
    """PEM (one or more) or DER certificates, read with a size cap; one UsageError line otherwise."""
    from cryptography import x509

    from drimcheck.cli import UsageError, read_input
    from drimcheck.config import printable

    data = read_input(path, MAX_PKI_BYTES, "ancre de confiance")
    try:
        return x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise UsageError(f"ancre de confiance {printable(str(path), 200)} : aucun certificat X.509 lisible "
                         "(PEM ou DER attendu)") from None


def _crl(path: Path):
    """One CRL (PEM or DER), read with a size cap; one UsageError line otherwise."""
    from cryptography import x509

    from drimcheck.cli import UsageError, read_input
    from drimcheck.config import printable

    data = read_input(path, MAX_PKI_BYTES, "CRL")
    try:
        return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except ValueError:
        raise UsageError(f"CRL {printable(str(path), 200)} : illisible (PEM ou DER attendu)") from None


def run(args: argparse.Namespace) -> int:
    from drimcheck import whitelist as wl
    from drimcheck.cli import UsageError

    from drimcheck.cli import read_input
    from drimcheck.config import printable

    at = _at(args.at)
    data = read_input(args.file, wl.MAX_SIZE, "liste blanche")
    anchors = [c for path in args.trust_anchor for c in _certificates(path)] if args.trust_anchor else None
    crls = [_crl(path) for path in args.crl]
    try:
        report = wl.verify_whitelist(data, trust_anchors=anchors, crls=crls, check_revocation=not args.no_revocation,
                                     at=at)
    except wl.UnusableInput as exc:
        raise UsageError(f"{printable(str(args.file), 200)} : entrée inutilisable : {exc}") from None
    except RecursionError:
        raise UsageError(f"{printable(str(args.file), 200)} : entrée inutilisable : XML imbriqué trop "
                         "profondément") from None
    hint = revocation_hint(report, crl_given=bool(args.crl))
    if args.json:
        data = report.to_dict()
        if not report.valid:
            data["domains"] = []  # an unverified list vouches for no domain (domain_count still says how many)
        print(json.dumps({"file": str(args.file), "verdict": "VALIDE" if report.valid else "NON VALIDE", **data,
                          "hint": hint}, ensure_ascii=False, indent=2))
    else:
        _print_text(args.file, report)
        if hint:
            print(f"  indice : {hint}")
    return ExitCode.CONFORMANT if report.valid else ExitCode.NON_CONFORMANT


def revocation_hint(report, *, crl_given: bool) -> str | None:
    """What to do when the only reason the list is not valid may be a missing or stale CRL."""
    if not any(p.code == "revocation-inconnue" for p in report.problems):
        return None
    if crl_given:
        return ("aucune des CRL données n'est signée par l'AC émettrice ou valide à la date de vérification : "
                "téléchargez la CRL en cours (point de distribution du certificat signataire, pour la liste TEST "
                "http://igc-sante.esante.gouv.fr/CRL/ACI-EL-ORG-TEST.crl) et passez-la avec --crl FICHIER, ou "
                "vérifiez sans révocation avec --no-revocation")
    return ("la révocation du signataire n'a pas pu être vérifiée faute de CRL : téléchargez la CRL de l'AC émettrice "
            "(point de distribution du certificat signataire, pour la liste TEST "
            "http://igc-sante.esante.gouv.fr/CRL/ACI-EL-ORG-TEST.crl) et passez-la avec --crl FICHIER, ou vérifiez "
            "sans révocation avec --no-revocation")


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
