"""The wheel works outside the repository: built, installed into a fresh venv, run from elsewhere.

The wheel is built from a copy of the project's files (the repository stays clean: no build/ or
egg-info), installed with --no-deps into a new venv whose only link to this environment is a .pth
naming this interpreter's site-packages, for the pinned dependencies. A .pth line only adds a path:
.pth files inside that directory (the editable install's link to the checkout) are not processed,
and the test checks that drimcheck, steps, simulators, fixtures and features come from the new venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import drimcheck
from projectfiles import project_files

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(cmd, *, cwd, env=None, timeout=300):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _install(base: Path) -> dict:
    src, dist, venv, cwd = base / "src", base / "dist", base / "venv", base / "elsewhere"
    for rel in project_files(REPO):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check",
                  str(src), "-w", str(dist)], cwd=base)
    assert built.returncode == 0, built.stderr[-2000:]
    wheels = list(dist.glob("drimcheck-*.whl"))
    assert len(wheels) == 1, wheels
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base)
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    inst = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                 "--disable-pip-version-check", str(wheels[0])], cwd=base)
    assert inst.returncode == 0, inst.stderr[-2000:]
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=base).stdout.strip()
    Path(purelib, "_drimcheck_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DRIMCHECK_", "PYTEST_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return {"wheel": wheels[0], "venv": venv, "py": py, "cwd": cwd, "env": env, "purelib": Path(purelib)}


def _wheel_holds_what_a_campaign_needs(installed):
    with zipfile.ZipFile(installed["wheel"]) as z:
        names = set(z.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(meta).decode()
    # every project file of the packaged directories: code, features, catalogues, samples, assets
    packaged = [f for f in project_files(REPO) if f.split("/")[0] in ("drimcheck", "simulators", "fixtures", "steps", "features")]
    assert not set(packaged) - names, sorted(set(packaged) - names)
    features = sorted(str(p.relative_to(REPO)) for p in (REPO / "features").rglob("*.feature"))
    assert features and set(features) <= names, set(features) - names
    mutant_files = sorted(str(p.relative_to(REPO)) for p in (REPO / "simulators" / "drimbox").glob("*.toml"))
    ans = sorted(str(p.relative_to(REPO)) for p in (REPO / "fixtures" / "ans").rglob("*") if p.is_file())
    data = ["drimcheck/data/requirements.toml", "drimcheck/data/catalogue.lock", "drimcheck/data/sut-reference.toml",
            "drimcheck/data/sut-template.toml", "steps/test_scenarios.py", "steps/_plugin.py"]
    missing = set(mutant_files + ans + data) - names
    assert mutant_files and ans and not missing, missing
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # nothing of the checkout beyond the packages: no tests, venv, root conftest, bytecode
    assert not [n for n in names if n.startswith(("tests/", ".venv/", "runs/", "conftest.py")) or "__pycache__" in n]
    # one version source: drimcheck/__init__.py
    assert f"\nVersion: {drimcheck.__version__}\n" in metadata
    assert installed["wheel"].name.startswith(f"drimcheck-{drimcheck.__version__}-")
    assert "\nLicense-Expression: MIT\n" in metadata


def _installed_code_comes_from_the_fresh_venv_not_the_checkout(installed):
    code = ("import json, sys, importlib.util, drimcheck, steps, simulators, fixtures, drimcheck.coverage as c;"
            "print(json.dumps({'files': [drimcheck.__file__, steps.__file__, simulators.__file__, fixtures.__file__,"
            " importlib.util.find_spec('steps.test_scenarios').origin, str(c.FEATURES)], 'path': sys.path}))")
    proc = _run([str(installed["py"]), "-c", code], cwd=installed["cwd"], env=installed["env"])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for f in out["files"]:
        assert Path(f).resolve().is_relative_to(installed["purelib"].resolve()), f
    assert any(Path(out["files"][-1]).rglob("*.feature"))
    assert not [p for p in out["path"] if p and Path(p).resolve().is_relative_to(REPO) and ".venv" not in Path(p).parts]


def _installed_command_lists_the_catalogue_like_the_checkout(installed):
    proc = _run(["drimcheck", "requirements"], cwd=installed["cwd"], env=installed["env"])
    assert proc.returncode == 0, proc.stderr
    assert "None" not in proc.stdout and "exigences automatisées sur" in proc.stdout
    # the installed wheel sees the same features and checks as the checkout: same coverage, line for line
    here = _run([sys.executable, "-m", "drimcheck", "requirements"], cwd=REPO)
    assert here.returncode == 0 and proc.stdout == here.stdout
    version = _run(["drimcheck", "--version"], cwd=installed["cwd"], env=installed["env"])
    assert version.stdout.strip() == f"drimcheck {drimcheck.__version__}"
    lock = _run([str(installed["py"]), "-m", "drimcheck.catalogue_lock"], cwd=installed["cwd"], env=installed["env"])
    assert lock.returncode == 0, lock.stderr


def _installed_command_runs_a_conformant_campaign_from_elsewhere(installed):
    out = installed["cwd"] / "run-hlt01"
    proc = _run(["drimcheck", "run", "--req", "HLT-01", "--out", str(out)], cwd=installed["cwd"], env=installed["env"],
                timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Verdict : CONFORME" in proc.stdout
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    by_id = {r["id"]: r for r in results["requirements"]}
    assert by_id["HLT-01"]["verdict"] == "PASS"
    assert results["run"]["raw_verdict"] == "CONFORME" and results["run"]["infrastructure_error"] is None
    assert results["harness"]["version"] == drimcheck.__version__
    assert (out / "report.html").is_file() and any((out / "evidence").rglob("*.json"))



def test_wheel_installed_in_a_fresh_venv_runs_a_campaign_from_elsewhere(tmp_path):
    """One test (one build and install: xdist workers would each build for a module fixture)."""
    installed = _install(tmp_path)
    _wheel_holds_what_a_campaign_needs(installed)
    _installed_code_comes_from_the_fresh_venv_not_the_checkout(installed)
    _installed_command_lists_the_catalogue_like_the_checkout(installed)
    _installed_command_runs_a_conformant_campaign_from_elsewhere(installed)

# ------------------------------------------------------------------------------ fresh Debian machines


def test_make_setup_installs_the_venv_module_stock_debian_lacks():
    proc = _run(["make", "-n", "-B", "--no-print-directory", ".venv/.setup-stamp"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    apt_line = next(ln for ln in proc.stdout.splitlines() if "scripts/setup-system.sh" in ln)
    packages = set(apt_line.split("scripts/setup-system.sh", 1)[1].split())
    assert {"python3", "python3-venv", "orthanc", "orthanc-dicomweb", "dcmtk", "xmlsec1"} <= packages
    lines = proc.stdout.splitlines()
    venv = next(i for i, ln in enumerate(lines) if "python3 -m venv" in ln)
    assert lines.index(apt_line) < venv  # Debian packages first, then the venv
    assert "test -x .venv/bin/pip || rm -rf .venv" in lines[venv - 1]  # a venv left without pip is made again


def test_setup_system_script_does_nothing_when_packages_are_there_and_says_what_is_missing():
    ok = _run(["bash", "scripts/setup-system.sh", "dpkg", "bash"], cwd=REPO, timeout=60)
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run the script as an unprivileged user")
    proc = _run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(REPO / "scripts/setup-system.sh"),
                 "dpkg", "drimcheck-no-such-package"], cwd="/", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == ("setup : paquets Debian manquants : drimcheck-no-such-package "
                           "(lancez « make setup » en root, ou installez-les avec apt-get)\n")
