"""The catalogue lock: a catalogue version designates one content of requirements.toml."""

from __future__ import annotations

import subprocess
import sys

import pytest

from drimcheck import catalogue
from drimcheck import catalogue_lock as cl


def test_current_catalogue_matches_its_lock():
    st = cl.state()
    assert cl.problems(st) == [], cl.problems(st)
    assert st.locked[st.version] == st.sha256
    # the digest locked is the one every report carries (results.json catalogue.sha256)
    assert catalogue.load().sha256 == st.sha256 and catalogue.load().version == st.version


def test_locked_versions_only_grow():
    versions = list(cl.state().locked)
    assert versions == sorted(versions, key=cl._key)
    assert cl._key("2026.12.10") > cl._key("2026.12.9")


def _copy(tmp_path):
    cat, lock = tmp_path / "requirements.toml", tmp_path / "catalogue.lock"
    cat.write_bytes(cl.CATALOGUE.read_bytes())
    lock.write_bytes(cl.LOCK.read_bytes())
    return cat, lock


def test_changed_entry_without_version_bump_fails(tmp_path):
    cat, lock = _copy(tmp_path)
    text = cat.read_text(encoding="utf-8")
    cat.write_text(text.replace('strength = "required"', 'strength = "inferred"', 1), encoding="utf-8")
    found = cl.problems(cl.state(cat, lock))
    assert len(found) == 1 and "sans changement de version" in found[0] and "--update" in found[0]
    # and --update refuses to rewrite the locked version: the fix is a bump
    with pytest.raises(cl.LockError, match="déjà verrouillée"):
        cl.update(cat, lock)
    assert cl.problems(cl.state(cat, lock))  # unchanged lock, still failing


def test_bumped_version_is_recorded_by_update(tmp_path):
    cat, lock = _copy(tmp_path)
    old = cl.state(cat, lock)
    text = cat.read_text(encoding="utf-8").replace(f'catalogue_version = "{old.version}"', 'catalogue_version = "2999.1.0"')
    cat.write_text(text.replace('strength = "required"', 'strength = "inferred"', 1), encoding="utf-8")
    assert "absent de catalogue.lock" in cl.problems(cl.state(cat, lock))[0]
    proc = subprocess.run([sys.executable, "-m", "drimcheck.catalogue_lock", "--update", "--catalogue", str(cat),
                           "--lock", str(lock)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "2999.1.0 verrouillé" in proc.stdout, proc.stderr
    new = cl.state(cat, lock)
    assert new.locked == {**old.locked, "2999.1.0": cl.digest(cat.read_bytes())}
    assert cl.problems(new) == []
    check = subprocess.run([sys.executable, "-m", "drimcheck.catalogue_lock", "--catalogue", str(cat), "--lock", str(lock)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "conforme" in check.stdout


def test_update_refuses_a_version_older_than_the_last_one(tmp_path):
    cat, lock = _copy(tmp_path)
    version = cl.state(cat, lock).version
    cat.write_text(cat.read_text(encoding="utf-8").replace(f'catalogue_version = "{version}"', 'catalogue_version = "2000.1.0"'),
                   encoding="utf-8")
    with pytest.raises(cl.LockError, match="ne suit pas"):
        cl.update(cat, lock)


def test_check_command_reports_a_mismatch_on_one_line_and_exits_1(tmp_path):
    cat, lock = _copy(tmp_path)
    cat.write_text(cat.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "drimcheck.catalogue_lock", "--catalogue", str(cat), "--lock", str(lock)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "augmentez catalogue_version" in proc.stderr


def test_malformed_lock_is_refused(tmp_path):
    cat, lock = _copy(tmp_path)
    lock.write_text(lock.read_text(encoding="utf-8") + "2030.1.0 not-a-digest\n", encoding="utf-8")
    with pytest.raises(cl.LockError, match="ligne"):
        cl.state(cat, lock)
