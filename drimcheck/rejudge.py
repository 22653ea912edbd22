"""Re-judging a campaign offline: every verdict computed again from the run's evidence alone.

Inputs, both under RUN_DIR: ``results.json`` for what was run (scenarios, their steps and errors, the SUT,
the campaign's mode and timeouts) and ``evidence/<scenario>/NNN-judgement.json``, one per ``judge(...)`` of a
scenario (``drimcheck.checks.record_judgement``): the check calls with their arguments (``drimcheck.codec``),
the judged facts they relied on, and the order of the findings judged. Each recorded call is made again —
no network, no simulator, no DUT — and its findings go through what ``judge`` does: unknown requirement ->
ERROR, then the strength policy of the catalogue (the run's own, or ``--catalogue FILE``) with the run's
``--strict``. The findings the harness itself added (a scenario in error, a requirement without verdict,
a skipped scenario) are facts of the run, taken from results.json. A recorded call that cannot be re-judged
(not storable at the time, unreadable record) gives ERROR, never the old verdict silently.

Every read of RUN_DIR is bounded (file sizes, number of records, nesting); bad input is a RejudgeError:
one French line, exit 2.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drimcheck import catalogue as catalogue_mod
from drimcheck import codec
from drimcheck.catalogue import Catalogue, CatalogueError
from drimcheck.checks import RECORD_LABEL, REGISTRY, load_all, replay
from drimcheck.config import InputError, printable, read_capped
from drimcheck.evidence import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from drimcheck.results import CampaignInfo, RunResult, ScenarioResult, StepResult
from drimcheck.verdicts import Finding, Verdict, errored

MAX_RESULTS_BYTES = 64 * 1024 * 1024
MAX_RECORD_FILE = 3 * codec.MAX_RECORD  # base64 and JSON around the values a record may hold
MAX_RECORDS = 100_000
MAX_CATALOGUE_BYTES = 4 * 1024 * 1024
MAX_EVIDENCE_COPY = 8 * 1024 * 1024 * 1024  # what rejudge copies beside the new reports
_RECORD_NAME = re.compile(rf"^(\d{{3,}})-{RECORD_LABEL}\.json$")


class RejudgeError(ValueError):
    """RUN_DIR, --out or --catalogue cannot be used (one French line, exit 2)."""


@dataclass
class Stats:
    """What re-judging did, for the console and the tests."""

    scenarios: int = 0
    calls: int = 0  # check calls made again
    findings: int = 0  # findings of those calls judged by the campaign
    same_verdict: int = 0  # ... whose re-judged raw verdict equals the recorded one
    same_message: int = 0  # ... with the same message too
    harness: int = 0  # findings of the harness taken from results.json
    differing: list[str] = field(default_factory=list)  # "scenario: REQ recorded -> re-judged"
    not_rejudged: list[str] = field(default_factory=list)  # "scenario: check: reason"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _fail(what: str, path: Path, why: str) -> RejudgeError:
    return RejudgeError(f"{what} {printable(str(path), 200)} : {why}")


def _read_json(path: Path, limit: int, what: str) -> Any:
    try:
        raw = read_capped(path, limit, what)
    except InputError as exc:
        raise RejudgeError(str(exc)) from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _fail(what, path, "n'est pas encodé en UTF-8") from None
    except (ValueError, RecursionError):
        raise _fail(what, path, "JSON invalide") from None


def load_results(run_dir: Path) -> dict[str, Any]:
    """results.json of RUN_DIR, checked for what re-judging needs."""
    if not run_dir.is_dir():
        raise RejudgeError(f"campagne {printable(str(run_dir), 200)} : dossier introuvable "
                           "(attendu : le dossier --out d'une campagne, avec results.json et evidence/)")
    path = run_dir / "results.json"
    data = _read_json(path, MAX_RESULTS_BYTES, "résultats")
    if not isinstance(data, dict) or not isinstance(data.get("run"), dict) or not isinstance(data.get("scenarios"), list) \
            or not isinstance(data.get("requirements"), list):
        raise _fail("résultats", path, "pas un results.json de drimcheck (run, scenarios, requirements)")
    for s in data["scenarios"]:
        if not isinstance(s, dict) or not isinstance(s.get("id"), str) or not isinstance(s.get("findings"), list):
            raise _fail("résultats", path, "scénario sans identifiant ni constats")
    if not (run_dir / "evidence").is_dir():
        raise RejudgeError(f"campagne {printable(str(run_dir), 200)} : pas de dossier evidence/ (rien à rejuger)")
    return data


def load_records(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every judgement record of RUN_DIR/evidence, by scenario id, in the order of the campaign."""
    root = run_dir / "evidence"
    found: list[tuple[str, int, Path]] = []
    try:
        scopes = sorted(os.scandir(root), key=lambda e: e.name)
        for scope in scopes:
            if not scope.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(scope.path):
                m = _RECORD_NAME.match(entry.name)
                if m and entry.is_file(follow_symlinks=False):
                    found.append((scope.name, int(m.group(1)), Path(entry.path)))
                    if len(found) > MAX_RECORDS:
                        raise _fail("preuves", root, f"plus de {MAX_RECORDS} enregistrements de jugement")
    except OSError as exc:
        raise _fail("preuves", root, f"lecture impossible ({exc.strerror or exc})") from None
    out: dict[str, list[dict[str, Any]]] = {}
    for _, _, path in sorted(found):
        record = _read_json(path, MAX_RECORD_FILE, "enregistrement de jugement")
        if not isinstance(record, dict) or record.get("format") != codec.FORMAT or not isinstance(record.get("scenario"), str) \
                or not isinstance(record.get("calls"), list) or not isinstance(record.get("judged"), list):
            raise _fail("enregistrement de jugement", path, f"format inconnu (attendu : format {codec.FORMAT})")
        out.setdefault(record["scenario"], []).append(record)
    return out


def load_catalogue(path: Path | None) -> Catalogue:
    if path is None:
        return catalogue_mod.load()
    try:
        text = read_capped(path, MAX_CATALOGUE_BYTES, "catalogue").decode("utf-8")
    except InputError as exc:
        raise RejudgeError(str(exc)) from None
    except UnicodeDecodeError:
        raise _fail("catalogue", path, "n'est pas encodé en UTF-8") from None
    try:
        return catalogue_mod.parse(text)
    except CatalogueError as exc:
        raise _fail("catalogue", path, printable(str(exc), 300)) from None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _verdict(value: Any, default: Verdict = Verdict.ERROR) -> Verdict:
    try:
        return Verdict(value)
    except ValueError:
        return default


def finding_from_dict(d: Any, *, raw: bool = True) -> Finding:
    """A Finding back from its to_dict(): with raw, the verdict before the strength policy."""
    if not isinstance(d, dict):
        raise codec.CodecError("constat mal formé")
    verdict = _verdict(d.get("raw_verdict") if raw else d.get("verdict"))
    f = Finding(str(d.get("requirement", "")), verdict, str(d.get("message", "")), check=str(d.get("check", "")),
                evidence=[str(e) for e in d.get("evidence") or [] if isinstance(e, str)],
                details=_dict(d.get("details")))
    if not raw:
        recorded_raw = _verdict(d.get("raw_verdict"), verdict)
        f.raw_verdict = recorded_raw if recorded_raw is not verdict else None
    return f


def _judge(f: Finding, catalogue: Catalogue, strict: bool) -> Finding:
    """What DrimcheckPlugin.judge does to a finding."""
    if f.requirement not in catalogue:
        f = errored(f.requirement, f"harness defect: finding for unknown requirement ({f.message})", check=f.check)
    catalogue.apply_strength(f, strict=strict)
    return f


def _rejudged_findings(sid: str, records: list[dict[str, Any]], catalogue: Catalogue, strict: bool,
                       stats: Stats) -> list[Finding]:
    out: list[Finding] = []
    for record in records:
        calls = record["calls"]
        results: list[list[Finding] | str] = []
        for call in calls:
            name = str(call.get("check", "?"))[:80] if isinstance(call, dict) else "?"
            try:
                if not isinstance(call, dict):
                    raise codec.CodecError("appel mal formé")
                results.append(replay(call))
                stats.calls += 1
            except (codec.CodecError, RecursionError) as exc:
                results.append(str(exc))
                stats.not_rejudged.append(f"{sid} : {name} : {exc}")
            except Exception as exc:  # noqa: BLE001 - a check that raises on its own evidence: said, never hidden
                results.append(f"{type(exc).__name__}: {exc}")
                stats.not_rejudged.append(f"{sid} : {name} : {type(exc).__name__}: {printable(str(exc), 200)}")
        for item in record["judged"]:
            if not isinstance(item, dict):
                raise codec.CodecError("constat jugé mal formé")
            if "finding" in item:  # judged as such by a step, outside any check
                stats.harness += 1
                out.append(_judge(finding_from_dict(item["finding"]), catalogue, strict))
                continue
            ci, index = item.get("call"), item.get("index")
            if not isinstance(ci, int) or not isinstance(index, int) or not 0 <= ci < len(calls):
                raise codec.CodecError("renvoi vers un appel de contrôle absent")
            recorded_list = calls[ci].get("findings") or []
            recorded = finding_from_dict(recorded_list[index]) if 0 <= index < len(recorded_list) else None
            result = results[ci]
            stats.findings += 1
            if isinstance(result, str) or index >= len(result):
                why = result if isinstance(result, str) else "le contrôle rejugé rend moins de constats"
                req = recorded.requirement if recorded else "?"
                was = f" (verdict de la campagne : {recorded.verdict.value})" if recorded else ""
                out.append(_judge(errored(req, f"rejugement impossible : {why}{was}", check="drimcheck.rejudge"),
                                  catalogue, strict))
                continue
            f = result[index]
            if recorded is not None and (f.requirement, f.verdict) == (recorded.requirement, recorded.verdict):
                stats.same_verdict += 1
                stats.same_message += f.message == recorded.message
            else:
                stats.differing.append(f"{sid} : {f.requirement} {recorded.verdict.value if recorded else '?'} -> "
                                       f"{f.verdict.value}")
            out.append(_judge(f, catalogue, strict))
    return out


def _scenario(s: dict[str, Any], records: list[dict[str, Any]], catalogue: Catalogue, strict: bool,
              stats: Stats) -> ScenarioResult:
    sid = s["id"]
    try:
        findings = _rejudged_findings(sid, records, catalogue, strict, stats)
    except (codec.CodecError, KeyError, TypeError, AttributeError) as exc:
        raise RejudgeError(f"enregistrement de jugement du scénario {printable(sid, 120)} mal formé ({exc})") from None
    judged = sum(len(r["judged"]) for r in records)
    recorded = s["findings"]
    if len(recorded) < judged:
        raise RejudgeError(f"scénario {printable(sid, 120)} : plus de constats enregistrés dans evidence/ que dans "
                           "results.json (preuves d'une autre campagne ?)")
    for d in recorded[judged:]:  # added by the harness after the judgements: facts of the run
        f = finding_from_dict(d, raw=False)
        if f.check in REGISTRY:  # a check's finding without its record: it cannot be re-judged
            stats.not_rejudged.append(f"{sid} : {f.check} : aucun enregistrement dans evidence/")
            f = _judge(errored(f.requirement, f"rejugement impossible : aucun enregistrement de l'appel dans evidence/ "
                                              f"(verdict de la campagne : {f.verdict.value})", check="drimcheck.rejudge"),
                       catalogue, strict)
        else:
            stats.harness += 1
        findings.append(f)
    steps = [StepResult(str(st.get("keyword", "")), str(st.get("text", "")), str(st.get("outcome", "")),
                        float(st.get("duration_s") or 0)) for st in s.get("steps") or [] if isinstance(st, dict)]
    return ScenarioResult(
        id=sid, feature=str(s.get("feature", "")), feature_file=str(s.get("feature_file", "")), name=str(s.get("name", sid)),
        requirements=_strings(s.get("requirements")), tags=_strings(s.get("tags")),
        findings=findings, steps=steps, error=s.get("error") if isinstance(s.get("error"), str) else None,
        duration_s=float(s.get("duration_s") or 0), interrupted=bool(s.get("interrupted")))


def _signal_number(name: Any) -> int | None:
    try:
        return int(signal.Signals[name]) if isinstance(name, str) else None
    except KeyError:
        return None


def rejudge(run_dir: Path, catalogue: Catalogue | None = None, *,
            command: list[str] | None = None) -> tuple[RunResult, Stats]:
    """The run of RUN_DIR judged again from its evidence, with `catalogue` (default: the shipped one)."""
    data = load_results(run_dir)
    records = load_records(run_dir)
    catalogue = catalogue or catalogue_mod.load()
    load_all()
    try:
        return _rejudge(run_dir, data, records, catalogue, command)
    except RejudgeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # a field of the wrong type
        raise _fail("résultats", run_dir / "results.json", f"mal formés ({type(exc).__name__})") from None


def _timeouts(value: Any) -> list[dict[str, Any]]:
    """The campaign's timeout rows that have the shape results.py reads (name, value in seconds)."""
    rows = value if isinstance(value, list) else []
    return [t for t in rows if isinstance(t, dict) and isinstance(t.get("name"), str)
            and isinstance(t.get("value_s"), (int, float)) and not isinstance(t.get("value_s"), bool)]


def _rejudge(run_dir: Path, data: dict[str, Any], records: dict[str, list[dict[str, Any]]], catalogue: Catalogue,
             command: list[str] | None) -> tuple[RunResult, Stats]:
    run = data["run"]
    strict = bool(run.get("strict"))
    stats = Stats()
    known = {s["id"] for s in data["scenarios"]}
    if len(known) < len(data["scenarios"]):
        raise RejudgeError("results.json : identifiants de scénario en double (les preuves ne peuvent leur être rattachées)")
    stray = sorted(set(records) - known)
    if stray:
        raise RejudgeError(f"enregistrements de jugement de scénarios absents de results.json : "
                           f"{printable(', '.join(stray[:3]), 200)} (preuves d'une autre campagne ?)")
    if not records and any(isinstance(f, dict) and f.get("check") in REGISTRY
                           for s in data["scenarios"] for f in s["findings"]):
        raise RejudgeError(f"campagne {printable(str(run_dir), 200)} : aucun enregistrement de jugement dans evidence/ "
                           "(campagne exécutée par un drimcheck antérieur à « rejudge » ?)")
    scenarios = [_scenario(s, records.get(s["id"], []), catalogue, strict, stats) for s in data["scenarios"]]
    stats.scenarios = len(scenarios)
    c = _dict(data.get("campaign"))
    campaign = CampaignInfo(referencing=bool(c.get("referencing")), mutant=_text(c.get("mutant")),
                            requirements_selected=_strings(c.get("requirements_selected")) or None,
                            timeouts=_timeouts(c.get("timeouts")), loosened=_strings(c.get("loosened_bounds")),
                            sut_file=_text(c.get("sut_file")), sut_sha256=_text(c.get("sut_sha256")))
    automated = {r["id"] for r in data["requirements"] if isinstance(r, dict) and r.get("automated")}
    automated |= {r for s in scenarios for r in s.requirements}
    interrupted = _dict(run.get("interrupted"))
    result = RunResult(
        run_id=str(run.get("id", run_dir.name)), started_at=str(run.get("started_at", "")),
        finished_at=str(run.get("finished_at", "")), duration_s=float(run.get("duration_s") or 0), strict=strict,
        sut=_dict(data.get("sut")), catalogue=catalogue, scenarios=scenarios,
        automated_ids=automated, infrastructure_error=_text(run.get("infrastructure_error")),
        command=command or _strings(run.get("command")), campaign=campaign,
        interrupted_by=_signal_number(interrupted.get("signal")),
        not_run=_strings(interrupted.get("scenarios_not_run")))
    return result, stats


def prepare_out(out: Path, run_dir: Path) -> None:
    """--out: absent or empty, and not RUN_DIR nor inside it."""
    try:
        if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
            raise RejudgeError(f"--out {printable(str(out), 200)} : doit être hors de la campagne rejugée")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise RejudgeError(f"--out {printable(str(out), 200)} : existe et n'est pas un dossier vide")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RejudgeError(f"--out {printable(str(out), 200)} : écriture impossible ({exc.strerror or exc})") from None


def copy_evidence(run_dir: Path, out: Path) -> None:
    """RUN_DIR/evidence beside the new reports (their links and embedded views point there): regular files only,
    0600 in 0700, at most MAX_EVIDENCE_COPY bytes."""
    total = 0
    src_root = run_dir / "evidence"
    for dirpath, dirnames, filenames in os.walk(src_root, followlinks=False):
        rel = Path(dirpath).relative_to(src_root)
        target = out / "evidence" / rel
        target.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(target, PRIVATE_DIR_MODE)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            src = Path(dirpath) / name
            if src.is_symlink() or not src.is_file():
                continue
            total += src.stat().st_size
            if total > MAX_EVIDENCE_COPY:
                raise _fail("preuves", src_root, f"plus de {MAX_EVIDENCE_COPY // 2**30} Gio à copier")
            dst = target / name
            shutil.copyfile(src, dst, follow_symlinks=False)
            os.chmod(dst, PRIVATE_FILE_MODE)


def write_reports(result: RunResult, run_dir: Path, out: Path) -> dict[str, Path]:
    from drimcheck.reports import write_all

    try:
        copy_evidence(run_dir, out)
        return write_all(result, out)
    except OSError as exc:
        raise RejudgeError(f"--out {printable(str(out), 200)} : écriture impossible ({exc.strerror or exc})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a value of results.json the reports cannot show
        raise _fail("résultats", run_dir / "results.json", f"mal formés, rapports impossibles ({type(exc).__name__})") from None


__all__ = ["RejudgeError", "Stats", "load_results", "load_records", "load_catalogue", "rejudge", "prepare_out",
           "copy_evidence", "write_reports", "finding_from_dict"]
