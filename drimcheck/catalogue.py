"""The requirement catalogue: one versioned data file, loaded and validated here, with the registry of the
documents its requirements cite (data/documents.toml): every source is a document id + section."""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable

from drimcheck.verdicts import Finding, Verdict

STRENGTHS = ("required", "inferred")
ACTORS = ("source", "conso", "both")


class CatalogueError(ValueError):
    """The catalogue file is malformed (a harness defect, not a DUT problem)."""


@dataclass(frozen=True)
class Bound:
    """A deadline stated by the requirement itself: `[timeouts] <timeout>` must not exceed value_s."""

    timeout: str  # a field of drimcheck.config.Timeouts
    value_s: float


DOCUMENT_FIELDS = ("id", "title", "short", "publisher", "version", "date", "url", "note")
_DOC_ID = re.compile(r"[a-z0-9][a-z0-9.-]*")


@dataclass(frozen=True)
class Document:
    """A public document requirements cite: exact title, version and/or date, address when it has one."""

    id: str
    title: str
    short: str  # the label of one-line citations
    publisher: str
    version: str | None = None
    date: str | None = None
    url: str | None = None
    note: str | None = None

    def label(self) -> str:
        """e.g. « RFC 5280 (2008-05) » or « Guide d'intégration … v1.1 (2025-09-17) »."""
        return f"{self.short} ({self.date})" if self.date and self.date not in self.short else self.short


@dataclass(frozen=True)
class Citation:
    doc: str  # a Document id
    section: str  # section, table, question or repository path (French)


@dataclass(frozen=True)
class Requirement:
    id: str
    title: str
    strength: str
    actor: str
    area: str
    sources: tuple[Citation, ...] = ()
    inferred_from: str | None = None
    not_tested: str | None = None
    bound: Bound | None = None
    source: str = ""  # the citations as one French line (rendered by parse(): reports, coverage, CLI)

    @property
    def inferred(self) -> bool:
        return self.strength == "inferred"


@dataclass(frozen=True)
class Catalogue:
    version: str
    sha256: str  # of requirements.toml (the versioned catalogue); documents.toml is the citation registry
    requirements: tuple[Requirement, ...]
    documents: tuple[Document, ...] = ()

    def document(self, doc_id: str) -> Document:
        for d in self.documents:
            if d.id == doc_id:
                return d
        raise KeyError(doc_id)

    def documents_cited(self, req_ids: Iterable[str]) -> list[dict]:
        """The documents the given requirements cite, in registry order, each with the requirements citing it
        and the sections cited: the `documents` list of results.json."""
        wanted = set(req_ids)
        cited: dict[str, dict] = {}
        for r in self.requirements:
            if r.id not in wanted:
                continue
            for c in r.sources:
                entry = cited.setdefault(c.doc, {"cited_by": [], "sections": []})
                if r.id not in entry["cited_by"]:
                    entry["cited_by"].append(r.id)
                if c.section not in entry["sections"]:
                    entry["sections"].append(c.section)
        return [{"id": d.id, "title": d.title, "publisher": d.publisher, "version": d.version, "date": d.date,
                 "url": d.url, "note": d.note, "cited_by": cited[d.id]["cited_by"],
                 "sections": cited[d.id]["sections"]}
                for d in self.documents if d.id in cited]

    def __contains__(self, req_id: str) -> bool:
        return any(r.id == req_id for r in self.requirements)

    def get(self, req_id: str) -> Requirement:
        for r in self.requirements:
            if r.id == req_id:
                return r
        raise KeyError(req_id)

    def ids(self) -> list[str]:
        return [r.id for r in self.requirements]

    def apply_strength(self, finding: Finding, *, strict: bool) -> Finding:
        """Inferred requirements yield WARN instead of FAIL unless strict: keep the raw verdict."""
        finding.raw_verdict = finding.raw_verdict or finding.verdict
        if finding.raw_verdict is Verdict.FAIL and not strict and self.get(finding.requirement).inferred:
            finding.verdict = Verdict.WARN
            finding.message = f"{finding.message} (exigence inférée : avertissement ; FAIL avec --strict)"
        return finding


def parse_documents(text: str) -> tuple[Document, ...]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"document registry is not valid TOML: {exc}") from None
    docs: list[Document] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("document", [])):
        if not isinstance(entry, dict):
            raise CatalogueError(f"document #{i + 1} is not a table")
        missing = [k for k in ("id", "title", "short", "publisher") if not entry.get(k)]
        if missing:
            raise CatalogueError(f"document #{i + 1} lacks {', '.join(missing)}")
        unknown = set(entry) - set(DOCUMENT_FIELDS)
        if unknown:
            raise CatalogueError(f"document {entry['id']}: unknown field(s) {', '.join(sorted(unknown))}")
        if not all(isinstance(v, str) for v in entry.values()):
            raise CatalogueError(f"document {entry['id']}: every field is a string")
        if not _DOC_ID.fullmatch(entry["id"]):
            raise CatalogueError(f"document {entry['id']}: id must be lower-case letters, digits, '.' and '-'")
        if not (entry.get("version") or entry.get("date")):
            raise CatalogueError(f"document {entry['id']}: a version or a date is required")
        if entry["id"] in seen:
            raise CatalogueError(f"document {entry['id']} is declared twice")
        seen.add(entry["id"])
        docs.append(Document(**entry))
    if not docs:
        raise CatalogueError("document registry is empty")
    return tuple(docs)


def parse(text: str, documents: tuple[Document, ...] | None = None) -> Catalogue:
    """The catalogue in `text`; its citations are resolved against `documents` (default: the shipped registry)."""
    if documents is None:
        documents = load_documents()
    by_id = {d.id: d for d in documents}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"requirements catalogue is not valid TOML: {exc}") from None
    version = data.get("catalogue_version")
    if not isinstance(version, str) or not version:
        raise CatalogueError("requirements catalogue has no catalogue_version")
    reqs: list[Requirement] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("requirement", [])):
        if "source" in entry:
            raise CatalogueError(f"requirement {entry.get('id', f'#{i + 1}')}: 'source' is replaced by "
                                 f"sources = [{{ doc = \"<document id>\", section = \"...\" }}]")
        missing = [k for k in ("id", "title", "sources", "strength", "actor", "area") if not entry.get(k)]
        if missing:
            raise CatalogueError(f"requirement #{i + 1} lacks {', '.join(missing)}")
        unknown = set(entry) - {"id", "title", "sources", "inferred_from", "strength", "actor", "area",
                                "not_tested", "bound"}
        if unknown:
            raise CatalogueError(f"requirement {entry['id']}: unknown field(s) {', '.join(sorted(unknown))}")
        if entry["id"] in seen:
            raise CatalogueError(f"requirement {entry['id']} is declared twice")
        if entry["strength"] not in STRENGTHS:
            raise CatalogueError(f"requirement {entry['id']}: strength must be one of {STRENGTHS}")
        if entry["actor"] not in ACTORS:
            raise CatalogueError(f"requirement {entry['id']}: actor must be one of {ACTORS}")
        if entry["strength"] == "inferred" and not entry.get("inferred_from"):
            raise CatalogueError(f"requirement {entry['id']}: an inferred requirement says what it is inferred "
                                 f"from (inferred_from)")
        seen.add(entry["id"])
        sources = _citations(entry, by_id)
        fields = {k: v for k, v in entry.items() if k not in ("sources", "bound")}
        reqs.append(Requirement(**fields, sources=sources, bound=_bound(entry),
                                source=render_source(sources, entry.get("inferred_from"), by_id, entry["strength"])))
    if not reqs:
        raise CatalogueError("requirements catalogue is empty")
    return Catalogue(version, hashlib.sha256(text.encode()).hexdigest(), tuple(reqs), tuple(documents))


def _citations(entry: dict, by_id: dict[str, Document]) -> tuple[Citation, ...]:
    raw = entry["sources"]
    if not isinstance(raw, list):
        raise CatalogueError(f"requirement {entry['id']}: sources must be a list of {{ doc, section }}")
    out = []
    for c in raw:
        if not isinstance(c, dict) or set(c) != {"doc", "section"} or not all(isinstance(v, str) and v.strip()
                                                                             for v in c.values()):
            raise CatalogueError(f"requirement {entry['id']}: each source is {{ doc = \"<document id>\", "
                                 f"section = \"<section>\" }}")
        if c["doc"] not in by_id:
            raise CatalogueError(f"requirement {entry['id']}: unknown document id {c['doc']!r} "
                                 f"(not in data/documents.toml)")
        out.append(Citation(c["doc"], c["section"]))
    if entry.get("inferred_from") is not None and not isinstance(entry["inferred_from"], str):
        raise CatalogueError(f"requirement {entry['id']}: inferred_from is a text")
    return tuple(out)


def render_source(sources: Iterable[Citation], inferred_from: str | None, by_id: dict[str, Document],
                  strength: str = "required") -> str:
    """The citations as one French line: « <document> — <section> ; <section> · <document> — … », then what
    is inferred (« exigence inférée : … » or, for a required one, « part inférée : … »)."""
    grouped: dict[str, list[str]] = {}
    for c in sources:
        grouped.setdefault(c.doc, []).append(c.section)
    line = " · ".join(f"{by_id[doc].label()} — {' ; '.join(sections)}" for doc, sections in grouped.items())
    if inferred_from:
        line += f" · {'exigence inférée' if strength == 'inferred' else 'part inférée'} : {inferred_from}"
    return line


def _bound(entry: dict) -> Bound | None:
    from dataclasses import fields

    from drimcheck.config import Timeouts

    raw = entry.get("bound")
    if raw is None:
        return None
    names = {f.name for f in fields(Timeouts)}
    if (not isinstance(raw, dict) or set(raw) != {"timeout", "value_s"} or raw["timeout"] not in names
            or not isinstance(raw["value_s"], (int, float)) or isinstance(raw["value_s"], bool) or not raw["value_s"] > 0):
        raise CatalogueError(f"requirement {entry['id']}: bound must be {{ timeout = <one of {', '.join(sorted(names))}>, "
                             f"value_s = <positive number> }}")
    return Bound(raw["timeout"], float(raw["value_s"]))


@lru_cache(maxsize=1)
def load_documents() -> tuple[Document, ...]:
    """The document registry shipped with this drimcheck version."""
    return parse_documents(resources.files("drimcheck").joinpath("data/documents.toml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def load() -> Catalogue:
    """The catalogue shipped with this drimcheck version."""
    text = resources.files("drimcheck").joinpath("data/requirements.toml").read_text(encoding="utf-8")
    return parse(text, load_documents())


def unknown_ids(ids: Iterable[str], catalogue: Catalogue | None = None) -> list[str]:
    cat = catalogue or load()
    return sorted({i for i in ids if i not in cat})
