"""`drimcheck kit`: create the stable test kit of an external DRIMbox, or show what its DUT must be told.

Exit codes: 0 done, 2 unusable sut.toml, arguments or kit, 3 a simulator address cannot be bound.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from drimcheck.verdicts import ExitCode


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "kit", help="créer le kit de test stable d'une DRIMbox externe (AC, ses certificats, dut-settings.json)",
        description="Crée le kit de test qu'un éditeur installe une fois sur sa DRIMbox : AC de test type IGC-Santé "
                    "et « marché », certificats et clés de la DRIMbox (SERV_SSL par dbN, OV par viN, ORG AUTH_CLI, "
                    "ORG SIGN), magasins de confiance, dut-settings.json et extrait de fichier hosts. Les clés des "
                    "AC restent dans harness/, jamais donné à la DRIMbox. Déclarez ensuite [pki] kit = \"DIR\" dans "
                    "sut.toml. --show affiche les réglages de la DRIMbox sous forme de tableau.")
    p.add_argument("--sut", type=Path, metavar="FICHIER", help="description du SUT (sut.toml) de la DRIMbox externe")
    p.add_argument("--out", type=Path, metavar="DOSSIER", help="dossier du kit à créer (absent ou vide)")
    p.add_argument("--days", type=int, default=None, metavar="N", help="validité du kit en jours (par défaut 90)")
    p.add_argument("--force", action="store_true", help="vider d'abord un dossier de kit existant")
    p.add_argument("--show", nargs="?", const=True, default=None, metavar="DOSSIER",
                   help="afficher les réglages de la DRIMbox en tableau (du DOSSIER, de --out ou du [pki] kit du sut.toml)")
    p.add_argument("--json", action="store_true", help="avec --show : afficher dut-settings.json lui-même")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from drimcheck import kit
    from drimcheck.cli import UsageError, _load_sut, os_reason

    show_dir = Path(args.show) if isinstance(args.show, str) else None
    existing = args.out is not None and kit.manifest_path(args.out).is_file()
    # create: --sut and --out, unless `--show` asks for an existing kit as it is
    create = show_dir is None and args.sut is not None and args.out is not None and \
        not (args.show is not None and existing and not args.force)
    if not create and args.show is None:
        raise UsageError("kit : « --sut FICHIER --out DOSSIER » crée un kit ; « --show [DOSSIER] » en affiche un")
    try:
        if create:
            sut = _load_sut(args.sut)
            document = kit.create_kit(sut, args.out, days=kit.DEFAULT_DAYS if args.days is None else args.days, force=args.force)
            target = args.out
            if args.show is None:
                print(f"Kit de test créé dans {target.resolve()} (valide jusqu'au {document['valid_until']}).")
                print(f"  À installer sur la DRIMbox : {kit.dut_dir(target).resolve()}/ (dut-settings.json, hosts, "
                      "certs/, trust/)")
                print(f"  Réservé à drimcheck : {kit.harness_dir(target).resolve()}/ (clés des AC, ne pas copier)")
                # [pki] kit is resolved against the sut.toml's folder, not the current directory
                in_sut = os.path.relpath(target.resolve(), args.sut.resolve().parent)
                print(f"  Dans {args.sut} : [pki] kit = \"{in_sut}\" ; détails : {target}/README.txt")
                return ExitCode.CONFORMANT
        else:
            target = show_dir or args.out
            if target is None and args.sut is not None:
                target = _load_sut(args.sut).pki_kit
            if target is None:
                raise UsageError("kit --show : donnez le dossier du kit (ou --out DOSSIER, ou --sut dont [pki] kit le désigne)")
            kit.read_manifest(target)
            try:
                document = json.loads(kit.settings_path(target).read_text(encoding="utf-8"))
            except OSError as exc:
                raise UsageError(f"{kit.settings_path(target)} : illisible ({os_reason(exc)})") from None
            except ValueError:
                raise UsageError(f"{kit.settings_path(target)} : JSON invalide (régénérez le kit : drimcheck kit)") from None
    except kit.KitError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(kit.show_text(document, target), end="")
    return ExitCode.CONFORMANT
