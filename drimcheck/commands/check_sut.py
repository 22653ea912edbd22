"""`drimcheck check-sut [FILE] [--json]`: validate a sut.toml and print the effective configuration.

Exit codes: 0 valid, 2 invalid or unreadable (one line on stderr naming the section and key).
Without FILE, the embedded reference description is shown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check-sut", help="vérifier un sut.toml et afficher sa configuration effective",
        description="Vérifie une description du SUT (sut.toml) sans lancer de campagne : sections et clés connues, "
                    "types, ports, durées, titres AE, URL, conflits d'adresses. Affiche la configuration effective "
                    "(valeurs par défaut comprises). Code retour : 0 valide, 2 invalide.")
    p.add_argument("file", type=Path, nargs="?", metavar="FICHIER",
                   help="la description du SUT (par défaut : celle de la DRIMbox de référence intégrée)")
    p.add_argument("--json", action="store_true",
                   help="configuration effective en JSON (champs verdict et valid, puis chaque section)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from drimcheck.config import load

    sut = load(args.file)  # ConfigError -> exit 2, one line (cli.main)
    effective = sut.effective()
    if args.json:
        print(json.dumps({"verdict": "VALIDE", "valid": True, **effective}, ensure_ascii=False, indent=2))
    else:
        print(render_text(effective))
    return 0


def _v(value: Any) -> str:
    from drimcheck.config import printable

    if value is None:
        return "—"
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, float):
        return f"{value:g} s"
    if isinstance(value, (list, tuple)):
        return ", ".join(_v(v) for v in value) or "—"
    return printable(str(value), 200)


def _table(title: str, rows: list[tuple[str, Any]]) -> list[str]:
    out = [title if title.startswith("[") else f"[{title}]"]
    if not rows:
        return out + ["  (rien de déclaré)"]
    width = max(len(k) for k, _ in rows)
    return out + [f"  {k:<{width}}  {_v(v)}" for k, v in rows]


def render_text(e: dict[str, Any]) -> str:
    """The effective configuration as French tables, one per section."""
    from drimcheck.config import printable

    s = e["sut"]
    lines = [f"{printable(e['file'], 200)} : description du SUT valide", ""]
    lines += _table("sut", [("nom", s["name"]), ("éditeur", s["editor"]), ("version", s["version"]),
                            ("rôles", s["roles"]), ("ID_Registre", s["registry"]),
                            ("DRIMbox intégrée", s["embedded"] or "non (DRIMbox externe)")])
    for i, p in enumerate(e["pacs"], 1):
        lines += [""] + _table(f"[[pacs]] n°{i}", [
            ("nom", p["name"]), ("FQDN db", p["db"]), ("FQDN vi", p["vi"]), ("titre AE", p["aet"]),
            ("port DICOM", p["dicom_port"]), ("port DICOMweb (HTTP)", p["http_port"]),
            ("identifiant DICOMweb", p["dicomweb_user"] or "choisi à chaque campagne"),
            ("mot de passe DICOMweb", p["dicomweb_password"] or "choisi à chaque campagne")])
    lines += [""] + _table("network", [(f"{fqdn} {scheme}", addr) for fqdn, ep in e["network"].items()
                                       for scheme, addr in ep.items() if addr is not None])
    lines += [""] + _table("health", [("url", e["health"]["url"])])
    lines += [""] + _table("tls", [("trust_anchors", e["tls"]["trust_anchors"] or "PKI de test de la campagne"),
                                   ("market_trust_anchors", e["tls"]["market_trust_anchors"] or "PKI web publique (certifi)")])
    lines += [""] + _table("pki", [("kit", e["pki"]["kit"] or "aucun : PKI de test jetable à chaque campagne")])
    lines += [""] + _table("timeouts", list(e["timeouts"].items()))
    lines += [""] + _table("hooks", list(e["hooks"].items()))
    lines += [""] + _table("simulators", list(e["simulators"].items()))
    lines += [""] + _table("dut", list(e["dut"].items()))
    return "\n".join(lines)
