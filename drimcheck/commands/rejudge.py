"""`drimcheck rejudge RUN_DIR --out DIR [--catalogue FILE] [--json]`: every verdict of a campaign judged again from
its evidence alone (no network, no simulator, no DUT), reports written into DIR.

Exit codes, as `drimcheck run`: 0 conformant, 1 non-conformant, 2 unusable RUN_DIR / --out / --catalogue (one
French line), 3 ERROR verdicts only (e.g. a call that could not be re-judged), 130/143 for a run that was
interrupted. See drimcheck/rejudge.py for what is read and how.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rejudge",
        help="rejuger une campagne à partir de ses seules preuves (sans réseau, simulateur ni DRIMbox)",
        description="Recalcule chaque verdict d'une campagne à partir de son dossier (results.json et evidence/) : "
                    "les contrôles sont rappelés sur les entrées enregistrées, avec le catalogue livré ou celui de "
                    "--catalogue. Écrit results.json, junit.xml, report.html (et une copie de evidence/) dans --out. "
                    "Code retour : 0 conforme, 1 non conforme, 2 dossier, --out ou catalogue inutilisable, "
                    "3 verdicts en erreur seulement.")
    p.add_argument("run_dir", type=Path, metavar="CAMPAGNE", help="dossier d'une campagne (son --out)")
    p.add_argument("--out", type=Path, metavar="DOSSIER", required=True,
                   help="dossier des nouveaux rapports (vide ou inexistant)")
    p.add_argument("--catalogue", type=Path, metavar="FICHIER",
                   help="catalogue d'exigences (requirements.toml) à appliquer au lieu du catalogue livré")
    p.add_argument("--json", action="store_true", help="bilan en JSON (champ verdict)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from drimcheck.cli import UsageError
    from drimcheck.rejudge import RejudgeError, load_catalogue, prepare_out, rejudge, write_reports

    try:
        catalogue = load_catalogue(args.catalogue)
        command = ["drimcheck", "rejudge", str(args.run_dir), "--out", str(args.out),
                   *(["--catalogue", str(args.catalogue)] if args.catalogue else [])]  # what wrote these reports
        result, stats = rejudge(args.run_dir, catalogue, command=command)
        prepare_out(args.out, args.run_dir)
        paths = write_reports(result, args.run_dir, args.out)
    except RejudgeError as exc:
        raise UsageError(str(exc)) from None
    code = int(result.exit_code)
    if args.json:
        print(json.dumps({"verdict": result.verdict_fr, "exit_code": code, "catalogue_version": catalogue.version,
                          "reports": {k: str(v) for k, v in paths.items()}, **stats.to_dict()},
                         ensure_ascii=False, indent=2))
        return code
    out = sys.stdout
    print(f"Rejugement de {args.run_dir} (campagne {result.run_id}, catalogue {catalogue.version}"
          f"{' de ' + str(args.catalogue) if args.catalogue else ''}) : {stats.scenarios} scénarios, "
          f"{stats.calls} appels de contrôles rejugés hors ligne, {stats.harness} constats du banc repris", file=out)
    print(f"Verdicts bruts identiques à ceux de la campagne : {stats.same_verdict}/{stats.findings} constats"
          f" (messages identiques : {stats.same_message})", file=out)
    for line in stats.differing[:20]:
        print(f"  différent : {line}", file=out)
    if stats.not_rejudged:
        print(f"Non rejugeables ({len(stats.not_rejudged)}, verdict ERROR) :", file=out)
        for line in stats.not_rejudged[:20]:
            print(f"  {line}", file=out)
    print(f"Verdict : {result.verdict_fr}", file=out)
    print(f"Rapports : {paths['html']}", file=out)
    return code
