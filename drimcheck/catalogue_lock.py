"""Catalogue lock: every released catalogue version with the SHA-256 of its requirements.toml.

The catalogue's own rule is that `catalogue_version` changes whenever an entry changes, so that a
version named in a report designates one content. `drimcheck/data/catalogue.lock` records, for each
version, the SHA-256 of `drimcheck/data/requirements.toml` as released (the `catalogue.sha256` of
results.json); tests/test_catalogue_lock.py fails when the current file does not match the hash
locked for its version (an entry changed without a bump) or when the version is not locked yet.

    python -m drimcheck.catalogue_lock            # check (exit 0 ok, 1 not ok)
    python -m drimcheck.catalogue_lock --update   # after bumping catalogue_version: record it

`--update` appends the current version; it never rewrites a locked version, and refuses a version
that does not come after the last locked one.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CATALOGUE = DATA / "requirements.toml"
LOCK = DATA / "catalogue.lock"
UPDATE_HINT = "python -m drimcheck.catalogue_lock --update"
_LINE = re.compile(r"^(?P<version>\S+)\s+(?P<sha>[0-9a-f]{64})\s*$")
_HEADER = """\
# drimcheck catalogue lock: each catalogue version (catalogue_version of requirements.toml) with the
# SHA-256 of drimcheck/data/requirements.toml as released under it. A locked version is never
# rewritten: change an entry -> bump catalogue_version -> `python -m drimcheck.catalogue_lock --update`.
# Checked by tests/test_catalogue_lock.py.
"""


class LockError(ValueError):
    """The lock file is malformed or cannot take the requested update (one line)."""


@dataclass(frozen=True)
class State:
    version: str
    sha256: str
    locked: dict[str, str]  # version -> sha256, in file order


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def catalogue_version(data: bytes) -> str:
    try:
        version = tomllib.loads(data.decode("utf-8")).get("catalogue_version")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LockError(f"catalogue illisible : {exc}") from None
    if not isinstance(version, str) or not version:
        raise LockError("catalogue sans catalogue_version")
    return version


def parse_lock(text: str) -> dict[str, str]:
    locked: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise LockError(f"catalogue.lock ligne {n} : attendu « <version> <sha256 en hexadécimal> », lu « {line[:80]} »")
        if m["version"] in locked:
            raise LockError(f"catalogue.lock ligne {n} : version {m['version']} verrouillée deux fois")
        locked[m["version"]] = m["sha"]
    return locked


def _key(version: str) -> tuple:
    """Order of versions: numeric fields compared as numbers (2026.12.10 > 2026.12.9)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-]", version))


def state(catalogue: Path = CATALOGUE, lock: Path = LOCK) -> State:
    data = catalogue.read_bytes()
    try:
        text = lock.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    return State(catalogue_version(data), digest(data), parse_lock(text))


def problems(st: State) -> list[str]:
    """Why the catalogue does not match its lock (French, one line each); empty when it does."""
    out = []
    versions = list(st.locked)
    for a, b in zip(versions, versions[1:]):
        if _key(b) <= _key(a):
            out.append(f"catalogue.lock : la version {b} suit {a} mais ne lui est pas postérieure")
    locked = st.locked.get(st.version)
    if locked is None:
        out.append(f"catalogue {st.version} absent de catalogue.lock : après avoir changé catalogue_version, "
                   f"lancez « {UPDATE_HINT} »")
    elif locked != st.sha256:
        out.append(f"requirements.toml a changé sans changement de version : {st.version} est verrouillée avec "
                   f"{locked[:12]}…, le fichier actuel a {st.sha256[:12]}… ; augmentez catalogue_version puis "
                   f"lancez « {UPDATE_HINT} »")
    return out


def update(catalogue: Path = CATALOGUE, lock: Path = LOCK) -> str:
    """Record the current version; returns a French line saying what was done. Raises LockError."""
    st = state(catalogue, lock)
    locked = st.locked.get(st.version)
    if locked == st.sha256:
        return f"catalogue {st.version} déjà verrouillé ({st.sha256[:12]}…) : rien à faire"
    if locked is not None:
        raise LockError(f"la version {st.version} est déjà verrouillée avec un autre contenu ({locked[:12]}…) : "
                        "augmentez catalogue_version dans requirements.toml, une version publiée ne change pas")
    if st.locked:
        last = list(st.locked)[-1]
        if _key(st.version) <= _key(last):
            raise LockError(f"la version {st.version} ne suit pas la dernière version verrouillée {last}")
    text = lock.read_text(encoding="utf-8") if lock.exists() else _HEADER
    if text and not text.endswith("\n"):
        text += "\n"
    lock.write_text(text + f"{st.version}  {st.sha256}\n", encoding="utf-8")
    return f"catalogue {st.version} verrouillé : {st.sha256}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m drimcheck.catalogue_lock",
                                description="Vérifie (ou complète avec --update) le verrou du catalogue d'exigences.")
    p.add_argument("--update", action="store_true", help="enregistre la version courante du catalogue dans le verrou")
    p.add_argument("--catalogue", type=Path, default=CATALOGUE, help=argparse.SUPPRESS)
    p.add_argument("--lock", type=Path, default=LOCK, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        if args.update:
            print(update(args.catalogue, args.lock))
            return 0
        found = problems(state(args.catalogue, args.lock))
    except (LockError, OSError) as exc:
        print(f"catalogue_lock : {exc}", file=sys.stderr)
        return 2 if isinstance(exc, OSError) else 1
    for line in found:
        print(f"catalogue_lock : {line}", file=sys.stderr)
    if not found:
        st = state(args.catalogue, args.lock)
        print(f"catalogue {st.version} conforme à son verrou ({st.sha256[:12]}…)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
