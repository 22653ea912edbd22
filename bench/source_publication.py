"""Benchmark: a 3,000-instance study (20 series x 150) flows end to end through the reference Source.

Measures, on a real campaign runtime (two Orthanc PACS, the DMP simulator over mTLS, the reference
DRIMbox process): storing the study, the ACK (validation + C-FIND IMAGE on the PACS), the time from
the ACK to the DMP submission (KOS build, ITI-41 with VIHF and signature, MTOM over mTLS), and the
time of each check on that publication. Prints one JSON document; `--series/--instances` resize it.

    .venv/bin/python bench/source_publication.py [--series 20] [--instances 150]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--instances", type=int, default=150, help="instances per series")
    args = parser.parse_args()

    from drimcheck import config
    from drimcheck.campaign import CampaignRuntime
    from drimcheck.checks import fqdn, kos
    from drimcheck.checks import xds as xds_checks
    from drimcheck.hl7 import read_ack
    from drimcheck.kos import KosDocument
    from fixtures import hl7 as messages
    from fixtures.cda import report_for
    from fixtures.pki import POLICY_OIDS
    from simulators.ris import RisSimulator

    figures: dict[str, float | int | str] = {"instances": args.series * args.instances, "series": args.series}
    t = time.monotonic()
    rt = CampaignRuntime(config.load(None), Path(tempfile.mkdtemp(prefix="drimcheck-bench-")))
    rt.ensure_started()
    figures["campaign_start_s"] = round(time.monotonic() - t, 2)
    try:
        pacs = rt.pacs_entry(0)
        t = time.monotonic()
        study = rt.seed_study(f"bench-{args.series}x{args.instances}", pacs=pacs, n_series=args.series,
                              n_instances=args.instances)
        figures["store_study_s"] = round(time.monotonic() - t, 2)
        report = report_for(study, pacs.vi)
        addr = rt.dut_address("mllp")
        ris = RisSimulator(addr.host, addr.port, timeout_s=120)
        dmp = rt.sims["dmp"]
        ex = ris.send(messages.oru_r01(report))
        ack = read_ack(ex.ack)
        if ack.code != "AA":
            print(json.dumps({"error": f"ACK {ack.code or ack.problem} {ack.text}"}))
            return 1
        figures["ack_s"] = round(ex.elapsed_s, 3)
        published = dmp.wait_for(lambda e: e.success and study.study_uid in e.study_uids, since=ex.sent_at,
                                 deadline_s=120)
        if published is None:
            print(json.dumps({"error": "no publication within 120 s", **figures}))
            return 1
        figures["ack_to_dmp_submission_s"] = round(published.received_at - ex.acked_at, 3)
        figures["kos_bytes"] = len(published.kos_bytes())
        figures["submission_bytes"] = len(published.body)
        doc = KosDocument.from_bytes(published.kos_bytes(), label="KOS")
        trust = xds_checks.TrustMaterial(rt.trust_anchors(), [rt.pki.igc_org.cert], (POLICY_OIDS["org_auth_cli"],),
                                         (POLICY_OIDS["org_sign"],))
        t = time.monotonic()
        rows = rt.orthanc(pacs).instances_of_study(study.study_uid)
        figures["qido_instances_s"] = round(time.monotonic() - t, 3)
        p = study.patient
        expected = kos.ExpectedIdentity(study.study_uid, p.ins, p.ins_oid, p.ipp, study.accession_number,
                                        study.accession_issuer_oid, study.order_placer_number, study.order_placer_oid)
        timings = {}
        verdicts = {}
        for name, call in (
                ("read_kos", lambda: [KosDocument.from_bytes(published.kos_bytes())]),
                ("KOS-01", lambda: kos.iod_valid(doc)), ("KOS-02", lambda: kos.manifest_template(doc)),
                ("KOS-03", lambda: kos.references_pacs_content(doc, rows, pacs.name)),
                ("KOS-04", lambda: kos.identity(doc, expected)), ("KOS-05", lambda: kos.retrieve_location(doc)),
                ("FQDN-01", lambda: fqdn.retrieve_urls_on_dbn(doc, pacs.db)),
                ("XDS-01", lambda: xds_checks.kos_metadata(published, expected)),
                ("XDS-02", lambda: xds_checks.client_certificate([published], trust)),
                ("XDS-03", lambda: xds_checks.vihf([published], trust)),
                ("XDS-04", lambda: xds_checks.signature_document(published, trust))):
            t = time.monotonic()
            out = call()
            timings[name] = round(time.monotonic() - t, 3)
            if name != "read_kos":
                verdicts[name] = out[0].verdict.value
                if out[0].verdict.value != "PASS":
                    figures.setdefault("messages", {})[name] = out[0].message[:300]
        figures["check_s"] = timings
        figures["checks_total_s"] = round(sum(timings.values()), 3)
        figures["verdicts"] = verdicts
    finally:
        rt.stop()
    print(json.dumps(figures, indent=2))
    return 0 if all(v == "PASS" for v in figures.get("verdicts", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
