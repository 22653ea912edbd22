"""Translate a drimcheck kit's dut-settings.json into the reference DRIMbox's own configuration file.

What a vendor writes for their DRIMbox (a few lines of their configuration format): the reference is
configured ONLY from the kit's dut/ directory -- dut-settings.json (schema docs/dut-settings.schema.json)
and the certificate and trust files it names, relative to that directory.

    python examples/external-dut/configure.py --settings KIT/dut/dut-settings.json --workdir STATE [--mutant ID]

writes STATE/drimbox.json for ``python -m simulators.drimbox --config STATE/drimbox.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from simulators.drimbox.settings import config_from_settings  # noqa: E402  (the reference's config format)

SUPPORTED = ("1.",)  # schema_version major this translator understands


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", type=Path, required=True, help="dut-settings.json of the kit (in its dut/ directory)")
    p.add_argument("--workdir", type=Path, required=True, help="the DRIMbox's working directory (config, KPI, logs)")
    p.add_argument("--mutant", default=None, help="run the reference as this mutant (drimcheck mutants)")
    args = p.parse_args(argv)
    document = json.loads(args.settings.read_text(encoding="utf-8"))
    if not str(document.get("schema_version", "")).startswith(SUPPORTED):
        print(f"configure.py: schema_version {document.get('schema_version')!r} non prise en charge", file=sys.stderr)
        return 2
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = config_from_settings(document, base=args.settings.resolve().parent)
    cfg.update(mutant=args.mutant or None, workdir=str(workdir), ready_file=str(workdir / "drimbox.ready"))
    out = workdir / "drimbox.json"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the PACS and PSC secrets
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(cfg, fh, indent=2)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
