"""The project's files, with or without git.

`git ls-files` needs a git checkout that the current user owns (git refuses another user's clone as
"dubious ownership") and nothing at all from a tarball. Without it, the tree is walked with the
exclusions of the .gitignore files: the same files git would list as tracked or addable.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path


def git_files(root: Path) -> list[str] | None:
    """Tracked files and untracked files not ignored, relative to `root`; None when git cannot say."""
    try:
        proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                              capture_output=True, cwd=root, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, cwd=root, timeout=60)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != Path(root).resolve():
        return None  # root is inside another repository, not a checkout of its own
    return sorted({f for f in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if f and (root / f).is_file()})


class _Rule:
    def __init__(self, base: str, line: str):
        self.negate = line.startswith("!")
        if self.negate:
            line = line[1:]
        self.dir_only = line.endswith("/")
        line = line.rstrip("/")
        self.anchored = "/" in line
        self.pattern = line.lstrip("/")
        self.base = base  # directory of the .gitignore, relative to the root ("" at the top)

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.base:
            if not rel.startswith(self.base + "/"):
                return False
            rel = rel[len(self.base) + 1:]
        if self.anchored:
            return _glob(rel, self.pattern)
        return _glob(rel.rsplit("/", 1)[-1], self.pattern)


def _glob(path: str, pattern: str) -> bool:
    """gitignore globbing: `*` and `?` stop at `/`, `**` crosses directories."""
    if "**" in pattern:
        return fnmatch.fnmatchcase(path, pattern.replace("**/", "*").replace("/**", "/*"))
    parts, pats = path.split("/"), pattern.split("/")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pats))


def _rules(directory: Path, base: str) -> list[_Rule]:
    try:
        text = (directory / ".gitignore").read_text(encoding="utf-8")
    except OSError:
        return []
    lines = [ln.rstrip() for ln in text.splitlines()]
    return [_Rule(base, ln) for ln in lines if ln and not ln.startswith("#")]


def _ignored(rules: list[_Rule], rel: str, is_dir: bool) -> bool:
    ignored = False
    for rule in rules:  # the last matching rule wins, as in git
        if rule.matches(rel, is_dir):
            ignored = not rule.negate
    return ignored


def walked_files(root: Path) -> list[str]:
    """The tree under `root` minus .git and what its .gitignore files exclude (an ignored directory is
    not entered: git cannot re-include a file below it either)."""
    root = Path(root)
    out: list[str] = []

    def walk(directory: Path, rel_dir: str, rules: list[_Rule]) -> None:
        rules = rules + _rules(directory, rel_dir)
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.name == ".git":
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if _ignored(rules, rel, is_dir):
                continue
            if is_dir:
                walk(Path(entry.path), rel, rules)
            elif entry.is_file(follow_symlinks=False):
                out.append(rel)

    walk(root, "", [])
    return sorted(out)


def project_files(root: Path) -> list[str]:
    """The project's files (relative paths): from git when `root` is a checkout git accepts, else walked."""
    files = git_files(root)
    return files if files is not None else walked_files(root)
