"""Bench: verification time of a national-scale whitelist (10,000 domains), drimcheck vs the xmlsec1 CLI, same run.

Sizes 20 / 1,000 / 10,000 domains, signed once by the test PKI's whitelist signer (XAdES-B as ANS).
Timed, median of --repeat runs:
  * sign        fixtures.whitelist (lxml exc-c14n + RSA-SHA256), for reference;
  * drimcheck   drimcheck.whitelist.verify_whitelist: full verdict (prolog scan, safe parse, profile,
                XAdES, python-xmlsec integrity + independent digest recomputation, path, CRL);
  * xmlsec      python-xmlsec verify() alone (integrity only, key pinned);
  * xmlsec1     the xmlsec1 CLI process (integrity + chain to the trusted root), as a DRIMbox might shell out.
Prints a table and writes runs/bench/whitelist.json. Compare ratios within one run, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures import whitelist as wl  # noqa: E402
from fixtures.pki import TestPKI  # noqa: E402


def domains(n: int) -> list[wl.Domain]:
    return [wl.Domain(str(i), f"db{i}.{100 + i % 900}.mesimagesmedicales.fr", f"vi{i}.{100 + i % 900}.mesimagesmedicales.fr",
                      f"OPERATEUR {i}", f"CN=db{i}.{100 + i % 900}.mesimagesmedicales.fr,OU=3000000{i:08d},"
                      f"O=CENTRE IMAGERIE {i},ST=Paris (75),C=FR", f"support{i}@operateur.fr", "2026-01-01T00:00:00Z")
            for i in range(1, n + 1)]


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,1000,10000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "whitelist.json")
    args = parser.parse_args()

    import xmlsec
    from cryptography.hazmat.primitives import serialization
    from lxml import etree

    from drimcheck.whitelist import verify_whitelist

    work = Path(tempfile.mkdtemp(prefix="bench-wl-"))
    pki = TestPKI(work / "pki")
    signer = pki.whitelist_signer()
    anchors = [pki.igc_root.cert, pki.igc_org.cert]
    crl = pki.crl()
    xmlsec1 = shutil.which("xmlsec1")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        doms = domains(n)
        sign_ms, data = timed(lambda: wl.signed_whitelist(doms, signer, generated_at=datetime.now(UTC)),
                              args.repeat)
        path = work / f"list-{n}.xml"
        path.write_bytes(data)
        full_ms, report = timed(lambda: verify_whitelist(data, trust_anchors=anchors, crls=[crl]), args.repeat)
        assert report.valid and len(report.domains) == n, report.problems

        def pyxmlsec():
            root = etree.fromstring(data)
            xmlsec.tree.add_ids(root, ["Id"])
            ctx = xmlsec.SignatureContext()
            ctx.key = xmlsec.Key.from_memory(signer.cert.public_bytes(serialization.Encoding.PEM), xmlsec.KeyFormat.CERT_PEM)
            ctx.verify(root.find(f"{{{wl.DS}}}Signature"))

        xmlsec_ms, _ = timed(pyxmlsec, args.repeat)
        cli_ms = None
        if xmlsec1:
            cmd = [xmlsec1, "--verify", "--trusted-pem", str(pki.igc_trust_pem), "--untrusted-pem",
                   str(pki.igc_org.cert_path), "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties",
                   str(path)]
            cli_ms, proc = timed(lambda: subprocess.run(cmd, capture_output=True), args.repeat)
            assert proc.returncode == 0, proc.stderr
        rows.append({"domains": n, "bytes": len(data), "sign_ms": round(sign_ms, 1), "drimcheck_ms": round(full_ms, 1),
                     "python_xmlsec_ms": round(xmlsec_ms, 1), "xmlsec1_cli_ms": round(cli_ms, 1) if cli_ms else None})
    shutil.rmtree(work, ignore_errors=True)
    print(f"{'domaines':>9} {'octets':>10} {'signature':>10} {'drimcheck':>10} {'py-xmlsec':>10} {'xmlsec1':>10}  (ms, médiane de {args.repeat})")
    for r in rows:
        print(f"{r['domains']:>9} {r['bytes']:>10} {r['sign_ms']:>10} {r['drimcheck_ms']:>10} {r['python_xmlsec_ms']:>10} "
              f"{r['xmlsec1_cli_ms'] if r['xmlsec1_cli_ms'] is not None else '-':>10}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"bench": "whitelist-verification", "repeat": args.repeat, "rows": rows,
                                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
