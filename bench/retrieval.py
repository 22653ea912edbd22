"""Benchmark: WADO-RS retrieval of a 1,300-instance CT study, straight from Orthanc vs through a peer Source.

    .venv/bin/python bench/retrieval.py [--instances 1300] [--series 4] [--size 256] [--rounds 3] [--out runs/bench]

One run, same machine, same study (synthetic CT, 256x256 uint16, ~170 MB for 1,300 instances, the size of
ANS's performance dataset), measured by the same client code (``drimcheck.wado.retrieve``: httpx
streaming + incremental multipart split), series by series as a Conso does:

  (a)  drimcheck's own WADO-RS retrieval straight from Orthanc's DICOMweb (native syntax, HTTP, basic auth);
  (a') the same as one study-level request;
  (b)  the same study through the peer Source simulator (HTTPS + mTLS, PSC token introspected at every
       request, Accept negotiated, multipart re-framed), asking for Explicit VR Little Endian: no transcoding;
  (c)  through the peer with the ANS sample Accept list: Orthanc transcodes to JPEG Lossless SV1.

The measuring client runs in its own process (as a DUT Conso would), so it competes with the simulators
only for CPU, not for the interpreter lock. Rounds are interleaved (a, a', b, c, a, ...) after one
warm-up round, and the median round is reported for each mode, with
latency to the first instance and throughput (MB of DICOM part bodies per second). The ratio (b)/(a)
compares throughputs and latencies: figures are only meaningful as ratios on the same machine.
Results are printed as a table and written as JSON under --out. Exit codes: 0 ok, 2 bad arguments,
3 infrastructure failure (Orthanc missing, a retrieval incomplete).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from drimcheck.wado import ANS_SAMPLE_ACCEPT, EXPLICIT_VR_LE, dicom_accept, part_sop_uid, retrieve  # noqa: E402

CONSO = "db1.349.mesimagesmedicales.fr"
PEER = "db7.350.mesimagesmedicales.fr"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/retrieval.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--instances", type=int, default=1300, help="instances in the study (default 1300)")
    p.add_argument("--series", type=int, default=4, help="series in the study (default 4)")
    p.add_argument("--size", type=int, default=256, help="rows = columns of each image (default 256)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per mode, median reported (default 3)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench", help="directory of the JSON result")
    args = p.parse_args(argv)
    if args.instances < args.series or args.series < 1 or args.size < 8 or args.rounds < 1:
        p.error("need --series >= 1, --instances >= --series, --size >= 8, --rounds >= 1")
    return args


class Mode:
    """One way of retrieving the study: (url, headers) requests sent with one client (built from the plan)."""

    def __init__(self, key: str, label: str, client: httpx.Client, requests: list[tuple[str, dict]]) -> None:
        self.key, self.label, self.client, self.requests = key, label, client, requests
        self.rounds: list[dict] = []

    def run(self, expected: set[str]) -> dict:
        seen: set[str] = set()
        stats = {"bytes": 0}

        def on_part(part) -> None:
            stats["bytes"] += len(part.body)
            seen.add(part_sop_uid(part.body))

        t0 = time.monotonic()
        first = None
        syntaxes = set()
        for url, headers in self.requests:
            result = retrieve(self.client, url, headers=headers, keep_parts=False, on_part=on_part, timeout_s=300)
            if result.status != 200 or result.error:
                raise RuntimeError(f"{self.label}: {url} -> {result.status} {result.error or result.error_body[:200]!r}")
            syntaxes.add(result.media_params.get("transfer-syntax", "native"))
            if first is None:
                first = result.t_first_part_s  # the first request starts at t0
        total = time.monotonic() - t0
        if seen != expected:
            raise RuntimeError(f"{self.label}: {len(seen)} distinct instances received, {len(expected)} expected")
        row = {"instances": len(seen), "part_bytes": stats["bytes"], "seconds": total, "first_instance_s": first,
               "mb_per_s": stats["bytes"] / total / 1e6, "instances_per_s": len(seen) / total,
               "transfer_syntax": sorted(syntaxes)}
        self.rounds.append(row)
        return row

    def median(self) -> dict:
        ordered = sorted(self.rounds, key=lambda r: r["seconds"])
        mid = ordered[len(ordered) // 2]
        return {**mid, "rounds_seconds": [round(r["seconds"], 4) for r in self.rounds],
                "first_instance_median_s": statistics.median(r["first_instance_s"] for r in self.rounds)}


def measure(plan_path: Path) -> int:
    """Child process: run the plan's modes (warm-up, then interleaved rounds); print the results as JSON."""
    import ssl

    from simulators.httpsim import mapped_client

    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    clients: dict[str, httpx.Client] = {}
    for name, spec in plan["clients"].items():
        if spec.get("basic_auth"):
            clients[name] = httpx.Client(auth=tuple(spec["basic_auth"]), timeout=httpx.Timeout(300.0, connect=5.0),
                                         trust_env=False)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            for path in spec["trust"]:
                ctx.load_verify_locations(cafile=path)
            ctx.load_cert_chain(spec["cert"], spec["key"])
            clients[name] = mapped_client(spec["hosts"], verify=ctx, timeout=300.0)
    modes = [Mode(m["key"], m["label"], clients[m["client"]], [tuple(r) for r in m["requests"]]) for m in plan["modes"]]
    expected = set(plan["expected"])
    try:
        for mode in modes:  # warm-up: connections, PACS caches (not measured)
            mode.run(expected)
            mode.rounds.clear()
        for _ in range(plan["rounds"]):
            for mode in modes:
                mode.run(expected)
    except RuntimeError as exc:
        print(json.dumps({"error": str(exc)}))
        return 3
    finally:
        for c in clients.values():
            c.close()
    print(json.dumps({m.key: {"label": m.label, **m.median()} for m in modes}))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--client":
        return measure(Path(argv[1]))
    args = parse_args(argv)
    from fixtures.pki import TestPKI
    from simulators.pacs import Orthanc, OrthancConfig, OrthancError, make_study
    from simulators.peer_source import PeerSource
    from simulators.psc import PscSimulator

    per_series = args.instances // args.series
    if per_series * args.series != args.instances:
        print(f"note: {args.instances} instances are not divisible by {args.series} series; "
              f"using {per_series * args.series}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="drimcheck-bench-"))
    orthanc = psc = peer = None
    try:
        orthanc = Orthanc(OrthancConfig(aet="BENCH_PACS"), work / "pacs")
        try:
            orthanc.start()
        except OrthancError as exc:
            print(f"bench: Orthanc cannot start: {exc.message}", file=sys.stderr)
            return 3
        study = make_study("bench-retrieval", n_series=args.series, n_instances=per_series, rows=args.size,
                           columns=args.size)
        t0 = time.monotonic()
        orthanc.store(study.datasets())
        upload_s = time.monotonic() - t0
        expected = study.instance_uids()
        pki = TestPKI(work / "pki")
        psc = PscSimulator(pki).start()
        peer = PeerSource(pki, orthanc, fqdn=PEER, psc=psc).start()
        kos = peer.register_study(study, store=False)
        token = psc.issue_token(lifetime_s=3600).access_token

        conso = pki.serv_ssl(CONSO)
        native = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=' + EXPLICIT_VR_LE}
        peer_headers = {"Authorization": f"Bearer {token}", "KOS-SOPInstanceUID": kos.sop_uid}
        plan = {
            "rounds": args.rounds, "expected": sorted(expected),
            "clients": {"direct": {"basic_auth": list(orthanc.auth)},
                        "peer": {"hosts": peer.hosts(), "trust": [str(pki.igc_trust_pem)],
                                 "cert": str(conso.chain_path), "key": str(conso.key_path)}},
            "modes": [
                {"key": "a", "label": "(a) Orthanc DICOMweb, series by series", "client": "direct",
                 "requests": [(f"{orthanc.dicomweb_url}/studies/{study.study_uid}/series/{s.series_uid}", native)
                              for s in study.series]},
                {"key": "a_study", "label": "(a') Orthanc DICOMweb, one study request", "client": "direct",
                 "requests": [(f"{orthanc.dicomweb_url}/studies/{study.study_uid}", native)]},
                {"key": "b", "label": "(b) peer Source, Explicit VR LE", "client": "peer",
                 "requests": [(peer.retrieve_url(study.study_uid, s.series_uid),
                               {**peer_headers, "Accept": dicom_accept((EXPLICIT_VR_LE, 1.0))}) for s in study.series]},
                {"key": "c", "label": "(c) peer Source, ANS Accept (JPEG Lossless)", "client": "peer",
                 "requests": [(peer.retrieve_url(study.study_uid, s.series_uid),
                               {**peer_headers, "Accept": ANS_SAMPLE_ACCEPT}) for s in study.series]},
            ],
        }
        plan_path = work / "plan.json"
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
        os.chmod(plan_path, 0o600)  # it holds a token and the PACS password
        child = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--client", str(plan_path)],
                               capture_output=True, text=True, timeout=1800, cwd=str(REPO))
        try:
            results = json.loads(child.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"measuring process failed (exit {child.returncode}): {child.stderr.strip()[-500:]}")
        if "error" in results:
            raise RuntimeError(results["error"])
        server_side = [e for e in peer.requests if e.get("status") == 200 and e.get("reason") == "ok"]
        peer_stats = {"requests": len(server_side),
                      "introspection_median_s": statistics.median(e["introspection"]["elapsed_s"] for e in server_side),
                      "presence_check_median_s": statistics.median(e["presence_check_s"] for e in server_side),
                      "pacs_headers_median_s": statistics.median(e["pacs_attempts"][-1]["headers_s"]
                                                                 for e in server_side)}
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 3
    finally:
        for sim in (peer, psc):
            if sim is not None:
                sim.stop()
        if orthanc is not None:
            orthanc.stop(graceful=False)
        shutil.rmtree(work, ignore_errors=True)

    a, b = results["a"], results["b"]
    ratios = {"throughput_b_over_a": b["mb_per_s"] / a["mb_per_s"],
              "time_b_over_a": b["seconds"] / a["seconds"],
              "first_instance_b_over_a": b["first_instance_median_s"] / a["first_instance_median_s"],
              "throughput_c_over_a": results["c"]["mb_per_s"] / a["mb_per_s"]}
    size_mb = a["part_bytes"] / 1e6
    print(f"\nStudy: {len(expected)} CT instances {args.size}x{args.size} uint16 in {args.series} series, "
          f"{size_mb:.1f} MB of DICOM; STOW-RS upload {upload_s:.2f} s; {args.rounds} rounds, median shown\n")
    header = f"{'mode':46} {'time s':>8} {'1st inst ms':>12} {'MB/s':>8} {'inst/s':>8}  syntax"
    print(header)
    print("-" * len(header))
    for r in results.values():
        print(f"{r['label']:46} {r['seconds']:8.3f} {r['first_instance_median_s'] * 1000:12.1f} "
              f"{r['mb_per_s']:8.1f} {r['instances_per_s']:8.0f}  {','.join(r['transfer_syntax'])}")
    print(f"\nPeer Source, per request (median): introspection {peer_stats['introspection_median_s'] * 1000:.1f} ms, "
          f"KOS/PACS presence check {peer_stats['presence_check_median_s'] * 1000:.1f} ms, "
          f"PACS answer headers {peer_stats['pacs_headers_median_s'] * 1000:.1f} ms")
    print(f"(b)/(a): throughput x{ratios['throughput_b_over_a']:.2f}, time x{ratios['time_b_over_a']:.2f}, "
          f"latency to first instance x{ratios['first_instance_b_over_a']:.2f}; "
          f"(c)/(a) throughput x{ratios['throughput_c_over_a']:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out / f"retrieval-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "wado-rs retrieval", "time": stamp, "host": platform.node(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "study": {"instances": len(expected), "series": args.series,
                                                       "rows": args.size, "columns": args.size,
                                                       "dicom_mb": round(size_mb, 2), "upload_stow_s": upload_s},
        "rounds": args.rounds, "results": results, "ratios": ratios, "peer_server_side": peer_stats},
        indent=2), encoding="utf-8")
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
