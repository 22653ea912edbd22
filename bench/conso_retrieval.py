"""Benchmark: the reference DRIMbox Conso retrieving a 1,300-instance study from a peer Source (DUT-to-peer),
compared in the same run with drimcheck's own retrieval of the same study straight from Orthanc's DICOMweb.

    .venv/bin/python bench/conso_retrieval.py [--instances 1300] [--series 4] [--size 256] [--rounds 3] [--out runs/bench]

One campaign runtime (simulators + the embedded reference DRIMbox as a separate process), one synthetic CT
study (256x256 uint16 by default: ~170 MB for 1,300 instances, the size of ANS's performance dataset)
held by the Orthanc of the peer Source simulators and announced by a KOS in the DMP simulator. Modes:

  (a)  drimcheck straight from Orthanc's DICOMweb, series by series, native syntax (plain HTTP, basic auth);
  (a') the same, asking Orthanc for JPEG Lossless SV1 (the syntax the peer negotiates with the ANS Accept list);
  (b)  the reference DRIMbox Conso, driven as the practitioner does: contextual call, (PSC login on the first
       round), page; behind the page: ITI-18 + ITI-43 at the DMP, then WADO-RS series by series to the peer
       Source (HTTPS + mTLS, ANS Accept list, PSC token introspected by the peer at every request, JPEG Lossless
       transcoded by Orthanc, multipart re-framed by the peer), every instance held in the DUT's memory.

Figures for (b) are the DUT's own measure of its WADO-RS retrieval (sum over series, published by its page)
and its latency to the first instance; the visit's wall time and the peer's server-side times are also
given. Rounds are interleaved after one warm-up round; the median round is reported. Only ratios on the
same machine are meaningful. Table on stdout, JSON under --out. Exit 0 ok, 2 bad arguments, 3 failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/conso_retrieval.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--instances", type=int, default=1300, help="instances in the study (default 1300)")
    p.add_argument("--series", type=int, default=4, help="series in the study (default 4)")
    p.add_argument("--size", type=int, default=256, help="rows = columns of each image (default 256)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per mode, median reported (default 3)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench", help="directory of the JSON result")
    args = p.parse_args(argv)
    if args.instances < args.series or args.series < 1 or args.size < 8 or args.rounds < 1:
        p.error("need --series >= 1, --instances >= --series, --size >= 8, --rounds >= 1")
    return args


def direct(orthanc, study, syntax: str | None) -> dict:
    """drimcheck's own WADO-RS retrieval, series by series, straight from Orthanc."""
    import httpx

    from drimcheck.wado import part_sop_uid, retrieve

    accept = 'multipart/related; type="application/dicom"' + (f"; transfer-syntax={syntax}" if syntax else "")
    seen: set[str] = set()
    stats = {"bytes": 0}

    def on_part(part) -> None:
        stats["bytes"] += len(part.body)
        seen.add(part_sop_uid(part.body))

    first = None
    with httpx.Client(auth=orthanc.auth, timeout=httpx.Timeout(600.0, connect=5.0), trust_env=False) as client:
        t0 = time.monotonic()
        for s in study.series:
            r = retrieve(client, f"{orthanc.dicomweb_url}/studies/{study.study_uid}/series/{s.series_uid}",
                         headers={"Accept": accept}, keep_parts=False, on_part=on_part, timeout_s=600)
            if r.status != 200 or r.error:
                raise RuntimeError(f"Orthanc: {r.status} {r.error}")
            first = r.t_first_part_s if first is None else first
        total = time.monotonic() - t0
    if seen != study.instance_uids():
        raise RuntimeError(f"direct retrieval: {len(seen)} instances of {len(study.instance_uids())}")
    return {"instances": len(seen), "part_bytes": stats["bytes"], "seconds": total, "first_instance_s": first}


def through_dut(runtime, visit, fields, peer, study) -> dict:
    """One visit of the practitioner: the DUT retrieves the study from the peer before showing its page."""
    mark = peer.recorder.last_seq
    t0 = time.monotonic()
    opened = visit.open_record(fields, label="bench")
    wall = time.monotonic() - t0
    if opened.page is None:
        raise RuntimeError(f"DUT page not obtained: {opened.call.to_dict()}")
    html = opened.page.text()
    row = re.search(rf'<tr data-study="{re.escape(study.study_uid)}"[^>]*>', html)
    if row is None:
        raise RuntimeError("study absent from the DUT's page")
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', row.group(0)))
    if int(attrs["instances"]) != len(study.instance_uids()):
        raise RuntimeError(f"DUT received {attrs['instances']} instances of {len(study.instance_uids())}")
    served = [r for r in peer.requests if r["seq"] > mark and r.get("status") == 200]
    return {"instances": int(attrs["instances"]), "part_bytes": int(attrs["bytes"]), "seconds": float(attrs["seconds"]),
            "first_instance_s": float(attrs["first-instance-s"]), "visit_wall_s": wall,
            "peer_requests": len(served),
            "peer_first_part_s": served[0].get("t_first_part_s") if served else None,
            "peer_introspection_s": statistics.median(r["introspection"]["elapsed_s"] for r in served) if served else None,
            "transfer_syntax": sorted({r.get("transfer_syntax") for r in served})}


def median(rounds: list[dict]) -> dict:
    ordered = sorted(rounds, key=lambda r: r["seconds"])
    mid = dict(ordered[len(ordered) // 2])
    mid["rounds_seconds"] = [round(r["seconds"], 4) for r in rounds]
    mid["first_instance_median_s"] = statistics.median(r["first_instance_s"] for r in rounds)
    mid["mb_per_s"] = mid["part_bytes"] / mid["seconds"] / 1e6
    mid["instances_per_s"] = mid["instances"] / mid["seconds"]
    return mid


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from drimcheck import config as sut_config
    from drimcheck.campaign import CampaignRuntime
    from simulators.conso_visit import ConsoVisit, contextual_call_fields
    from simulators.dmp.consultation import preload_peer_study
    from simulators.pacs import make_patient, make_study

    per_series = args.instances // args.series
    work = Path(tempfile.mkdtemp(prefix="bench-conso-", dir=os.environ.get("TMPDIR")))
    runtime = CampaignRuntime(sut_config.load(None), work / "run")
    visit = None
    modes = {"a": ("(a) drimcheck <- Orthanc DICOMweb, native", []),
             "a_jpeg": ("(a') drimcheck <- Orthanc DICOMweb, JPEG Lossless", []),
             "b": ("(b) DUT Conso <- peer Source (WADO-RS, mTLS, PSC)", [])}
    try:
        t0 = time.monotonic()
        runtime.ensure_started()
        startup_s = time.monotonic() - t0
        peer = runtime.sims["peers"].whitelisted[0]
        patient = make_patient("bench-conso")
        study = make_study("bench-conso", n_series=args.series, n_instances=per_series, rows=args.size,
                           columns=args.size, patient=patient)
        t0 = time.monotonic()
        preload_peer_study(runtime.sims["dmp"], peer, study)
        upload_s = time.monotonic() - t0
        visit = ConsoVisit(runtime, timeout_s=900)
        fields = contextual_call_fields(patient)
        runs = {"a": lambda: direct(peer.orthanc, study, None),
                "a_jpeg": lambda: direct(peer.orthanc, study, JPEG_LOSSLESS),
                "b": lambda: through_dut(runtime, visit, fields, peer, study)}
        for key, run in runs.items():  # warm-up (connections, PSC login, Orthanc caches): not measured
            run()
        for _ in range(args.rounds):
            for key, run in runs.items():
                modes[key][1].append(run())
    except Exception as exc:  # noqa: BLE001 - one line, exit 3
        print(f"bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    finally:
        if visit is not None:
            visit.close()
        runtime.stop()
        shutil.rmtree(work, ignore_errors=True)

    results = {key: {"label": label, **median(rounds)} for key, (label, rounds) in modes.items()}
    a, aj, b = results["a"], results["a_jpeg"], results["b"]
    ratios = {"time_b_over_a": b["seconds"] / a["seconds"], "time_b_over_a_jpeg": b["seconds"] / aj["seconds"],
              "instances_per_s_b_over_a": b["instances_per_s"] / a["instances_per_s"],
              "first_instance_b_over_a": b["first_instance_median_s"] / a["first_instance_median_s"]}
    print(f"\nStudy: {len(study.instance_uids())} CT instances {args.size}x{args.size} uint16 in {args.series} series, "
          f"{a['part_bytes'] / 1e6:.1f} MB native; campaign start {startup_s:.1f} s, upload to the peer's Orthanc "
          f"{upload_s:.1f} s; {args.rounds} rounds, median shown\n")
    header = f"{'mode':52} {'time s':>8} {'1st inst ms':>12} {'MB/s':>8} {'inst/s':>8}"
    print(header)
    print("-" * len(header))
    for r in results.values():
        print(f"{r['label']:52} {r['seconds']:8.2f} {r['first_instance_median_s'] * 1000:12.1f} {r['mb_per_s']:8.1f} "
              f"{r['instances_per_s']:8.0f}")
    print(f"\n(b) as the practitioner sees it: page in {b['visit_wall_s']:.2f} s (DMP consultation + retrieval); peer: "
          f"{b['peer_requests']} requests, first part after {1000 * (b['peer_first_part_s'] or 0):.0f} ms server-side, "
          f"introspection {1000 * (b['peer_introspection_s'] or 0):.1f} ms median; syntax {', '.join(b['transfer_syntax'])}")
    print(f"(b)/(a): time x{ratios['time_b_over_a']:.2f}, instances/s x{ratios['instances_per_s_b_over_a']:.2f}, "
          f"latency to first instance x{ratios['first_instance_b_over_a']:.2f}; (b)/(a') time "
          f"x{ratios['time_b_over_a_jpeg']:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out / f"conso-retrieval-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "conso retrieval (DUT-to-peer vs direct)", "time": stamp, "host": platform.node(),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "study": {"instances": len(study.instance_uids()), "series": args.series, "rows": args.size,
                  "columns": args.size, "native_mb": round(a["part_bytes"] / 1e6, 2), "upload_s": upload_s},
        "campaign_start_s": startup_s, "rounds": args.rounds, "results": results, "ratios": ratios}, indent=2),
        encoding="utf-8")
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
