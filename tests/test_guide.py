"""Keeps docs/guide-editeur.md honest: what the vendor guide shows must exist in the code.

* every `drimcheck <command> --option` it shows (code blocks and inline code) is accepted by the parser;
* every `make <target>` it shows is a Makefile target;
* every dut-settings.json key of its settings table exists in docs/dut-settings.schema.json, and every
  top-level and second-level property of the schema is documented there;
* every sut.toml section it names is a section config.py knows, and every such section is documented;
* every repository path it cites exists;
* every error line it quotes (section 10) matches a message template of the code;
* the example examples/external-dut/ follows the guide (its README's commands are the guide's).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

import pytest

from drimcheck import config
from drimcheck.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide-editeur.md"
SCHEMA = ROOT / "docs" / "dut-settings.schema.json"
EXAMPLE = ROOT / "examples" / "external-dut"

#: Quoted error lines whose message exists only on a branch not yet merged into main (substring of the quoted
#: line -> branch). The lead empties this once the branch is merged; a quote listed here is still checked
#: against the code, it is only allowed to match nothing until then.
PENDING_BRANCH_MESSAGES: dict[str, str] = {}
#: Commands the guide shows that exist only on a branch not yet merged (command -> branch); same rule.
PENDING_BRANCH_COMMANDS: dict[str, str] = {}

#: Where message templates are looked for
CODE_DIRS = ("drimcheck", "simulators", "steps", "fixtures", "examples")
#: A template must carry at least this many literal characters to vouch for a quoted line
MIN_LITERAL = 15
#: ... and at least this many spaces in them (a sentence, not an identifier such as "before_campaign")
MIN_SPACES = 3


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def inline_code(text: str) -> list[str]:
    """Inline `code` spans outside fenced blocks."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", prose)


def section(text: str, heading_prefix: str) -> str:
    """The text of the `## <heading_prefix>…` section, up to the next `## ` heading."""
    m = re.search(rf"^## {re.escape(heading_prefix)}.*?$(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"section « {heading_prefix} » absente du guide"
    return m.group(1)


# --------------------------------------------------------------------------- CLI commands and options


def drimcheck_invocations(text: str) -> list[tuple[str, list[str], str]]:
    """(command, options, source line) of every `drimcheck <command> ...` the guide shows."""
    lines = [line for _, body in code_blocks(text) for line in body.splitlines()]
    lines += [span for span in inline_code(text) if re.match(r"(\S*/)?drimcheck ", span)]
    found = []
    for line in lines:
        line = re.split(r"\s#\s", line)[0]  # shell comment
        for segment in re.split(r"&&|\|\||[;|]", line):
            tokens = segment.split()
            for i, tok in enumerate(tokens):
                if (tok == "drimcheck" or tok.endswith("/drimcheck")) and i + 1 < len(tokens):
                    command = tokens[i + 1]
                    if not re.fullmatch(r"[a-z][a-z-]*", command):
                        continue
                    options = [t.split("=")[0] for t in tokens[i + 2:] if t.startswith("--")]
                    found.append((command, options, line.strip()))
    return found


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("build_parser() has no subcommands")


def test_guide_shows_the_main_commands():
    shown = {command for command, _, _ in drimcheck_invocations(guide_text())}
    assert {"init", "kit", "run", "verify-package", "check-sut"} <= shown


def test_every_command_and_option_shown_exists():
    commands = subcommands()
    problems = []
    for command, options, line in drimcheck_invocations(guide_text()):
        if command not in commands:
            if command not in PENDING_BRANCH_COMMANDS:
                problems.append(f"commande inconnue « drimcheck {command} » : {line}")
            continue
        known = commands[command]._option_string_actions
        problems += [f"option inconnue {opt} de « drimcheck {command} » : {line}" for opt in options if opt not in known]
    assert not problems, "\n".join(problems)


def test_every_make_target_shown_exists():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    text = guide_text()
    shown = set(re.findall(r"(?:^|[\s`])make ([a-z][a-z-]*)", text, re.M))
    assert shown, "le guide ne montre aucune cible make"
    assert shown <= targets, f"cibles make inconnues : {sorted(shown - targets)}"


# --------------------------------------------------------------------------- dut-settings.json keys


def _schema() -> dict:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def _segments(path: str) -> list[str]:
    return [s for s in path.replace("[]", ".[]").split(".") if s]


def _resolve(schema: dict, segments: list[str]) -> bool:
    node = schema
    for seg in segments:
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        if seg == "[]":
            if "items" not in node:
                return False
            node = node["items"]
        elif seg in node.get("properties", {}):
            node = node["properties"][seg]
        elif seg.startswith("<") and seg.endswith(">") and isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        elif seg in node.get("required", ()):
            node = {}
        else:
            return False
    return True


def documented_settings() -> list[str]:
    """The dut-settings.json keys named in the first column of the guide's settings table (section 5)."""
    table = section(guide_text(), "5.")
    keys = []
    for row in re.findall(r"^\|([^|\n]+)\|", table, re.M):
        if "Clé de" not in row:  # header
            keys += re.findall(r"`([^`]+)`", row)
    assert len(keys) > 30, "tableau des réglages introuvable"
    return keys


def test_every_documented_setting_exists_in_the_schema():
    schema = _schema()
    unknown = [k for k in documented_settings() if not _resolve(schema, _segments(k))]
    assert not unknown, f"clés absentes de {SCHEMA.name} : {unknown}"


def test_every_schema_property_is_documented():
    schema = _schema()
    documented = set()
    for key in documented_settings():
        segs = [s for s in _segments(key) if s != "[]"]
        documented.add(tuple(segs[:1]))
        documented.add(tuple(segs[:2]))
    expected = set()
    for top, node in schema["properties"].items():
        expected.add((top,))
        for sub in node.get("properties", {}):
            expected.add((top, sub))
        for sub in node.get("items", {}).get("properties", {}):
            expected.add((top, sub))
    missing = sorted(".".join(k) for k in expected - documented)
    assert not missing, f"propriétés du schéma non documentées dans le guide : {missing}"


# --------------------------------------------------------------------------- sut.toml sections


def known_sections() -> set[str]:
    sections = getattr(config, "SECTIONS", None)
    if sections is None:  # main before strict-cli: the set is local to parse()
        source = Path(config.__file__).read_text(encoding="utf-8")
        m = re.search(r"known = \{([^}]*)\}", source)
        assert m, "sections connues introuvables dans drimcheck/config.py"
        sections = re.findall(r'"(\w+)"', m.group(1))
    return set(sections)


def named_sections(text: str) -> set[str]:
    names = {m.group(1) for span in inline_code(text) if (m := re.match(r"\[\[?([A-Za-z_]+)\]\]?", span))}
    for lang, body in code_blocks(text):
        if lang == "toml":
            names |= set(re.findall(r"^\s*\[\[?([A-Za-z_]+)\]\]?\s*$", body, re.M))
    return names


def test_every_sut_toml_section_named_exists():
    known = known_sections()
    named = named_sections(guide_text())
    assert named, "le guide ne nomme aucune section de sut.toml"
    assert named <= known, f"sections inconnues de drimcheck/config.py : {sorted(named - known)}"


def test_every_sut_toml_section_is_documented():
    table = section(guide_text(), "2.")
    documented = {m.group(1) for m in re.finditer(r"^\| `\[\[?(\w+)\]\]?`", table, re.M)}
    assert known_sections() <= documented, f"sections non décrites en section 2 : {sorted(known_sections() - documented)}"


# --------------------------------------------------------------------------- repository paths

PATH_RE = re.compile(r"(?:docs|examples|drimcheck|tests|fixtures|simulators|scripts|features|steps|bench)/[\w./-]+"
                     r"|Makefile|README\.md")


def test_every_repository_path_cited_exists():
    cited = {span for span in inline_code(guide_text()) if PATH_RE.fullmatch(span)}
    assert "docs/dut-settings.schema.json" in cited
    missing = sorted(p for p in cited if not (ROOT / p).exists())
    assert not missing, f"chemins cités absents du dépôt : {missing}"


# --------------------------------------------------------------------------- quoted error lines


BARE_PREFIXES = {"drimcheck : erreur :", "drimcheck : erreur interne :"}


def _template(node: ast.AST) -> tuple[re.Pattern[str], int] | None:
    """A regex for an f-string or a str constant with {placeholders}, and its count of literal characters."""
    if isinstance(node, ast.JoinedStr):
        parts, literal, texts = [], 0, []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(re.escape(value.value))
                texts.append(value.value)
                literal += len(value.value)
            else:
                parts.append("(.+?)")
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        chunks = re.split(r"\{[^{}]*\}", node.value)
        parts = [p for c in chunks for p in (re.escape(c), "(.+?)")][:-1]
        literal, texts = sum(len(c) for c in chunks), chunks
    else:
        return None
    if literal < MIN_LITERAL or "".join(texts).count(" ") < MIN_SPACES:  # a message, not an identifier
        return None
    if len(parts) == 2 and parts[1] == "(.+?)":  # a bare prefix such as "drimcheck : erreur : {exc}" vouches for nothing
        return None
    if "".join(texts).strip() in BARE_PREFIXES:  # the prefix constants themselves (cli.ERROR_PREFIX...)
        return None
    try:
        return re.compile("".join(parts), re.S), literal
    except re.error:
        return None


def message_templates() -> list[re.Pattern[str]]:
    templates = []
    for directory in CODE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and getattr(node, "_in_fstring", False):
                    continue
                if isinstance(node, ast.JoinedStr):
                    for value in node.values:  # the constants of an f-string are not templates of their own
                        value._in_fstring = True  # type: ignore[attr-defined]
                made = _template(node)
                if made is not None:
                    templates.append(made[0])
    return templates


def quoted_error_lines() -> list[str]:
    errors = section(guide_text(), "10.")
    return [line.strip() for lang, body in code_blocks(errors) if lang == "text" for line in body.splitlines()
            if line.strip()]


def test_ten_error_lines_are_quoted():
    assert len(quoted_error_lines()) >= 10


@pytest.fixture(scope="module")
def templates():
    return message_templates()


@pytest.mark.parametrize("line", quoted_error_lines())
def test_each_quoted_error_line_is_a_message_of_the_code(line, templates):
    if any(t.search(line) for t in templates):
        return
    pending = [branch for fragment, branch in PENDING_BRANCH_MESSAGES.items() if fragment in line]
    assert pending, f"aucun message du code ne produit cette ligne citée par le guide : {line}"


def test_pending_messages_are_quoted_in_the_guide():
    lines = quoted_error_lines()
    stale = [fragment for fragment in PENDING_BRANCH_MESSAGES if not any(fragment in line for line in lines)]
    assert not stale, f"PENDING_BRANCH_MESSAGES cite des lignes que le guide ne cite plus : {stale}"


def test_a_made_up_error_line_is_not_accepted(templates):
    """The matching is not vacuous: an invented message matches no template."""
    invented = ("drimcheck : erreur : banc/sut.toml : [hooks] before_campaign : la DRIMbox db1.349.mesimagesmedicales.fr "
                "refuse refresh_whitelist, borne normative")
    assert not any(t.search(invented) for t in templates)


# --------------------------------------------------------------------------- README and example


def test_readme_links_the_guide_on_its_first_screen():
    first_screen = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:12]
    assert any("docs/guide-editeur.md" in line for line in first_screen)


def test_example_readme_commands_are_the_guides():
    guide = guide_text()
    readme = next(EXAMPLE.glob("README*")).read_text(encoding="utf-8")
    commands = [re.split(r"\s#\s", line)[0].strip() for _, body in code_blocks(readme) for line in body.splitlines()
                if line.strip().startswith("drimcheck ")]
    assert commands, "le README de l'exemple ne montre aucune commande drimcheck"
    missing = [c for c in commands if c not in guide]
    assert not missing, f"commandes de l'exemple absentes du guide : {missing}"


def test_example_sut_toml_is_the_guides_layout():
    sut = config.load(EXAMPLE / "sut.toml")
    assert sut.pki_kit == (EXAMPLE / "kit").resolve()  # [pki] kit = "kit", as in the guide
    hooks_py = (EXAMPLE / "hooks.py").read_text(encoding="utf-8")
    guide = guide_text()
    for name in ("before_campaign", "after_campaign", "refresh_whitelist", "kpi"):
        command = sut.hooks[name]
        assert command.startswith("python3 examples/external-dut/hooks.py ")  # run from the repository root
        action = command.split()[-1]
        assert f'"{action}"' in hooks_py and f"`{action}`" in guide
