"""A small typed codec for what checks read: their inputs are stored in the evidence and read back to re-judge.

``encode(value)`` turns a check argument into a JSON-safe tree; ``decode(tree)`` rebuilds an equivalent value.
Every non-primitive node is an object tagged ``"$"``:

========== ==================================================================================================
``dict``     ``items``: ``[[key, value], ...]`` (any encodable keys, order kept)
``tuple``    ``set``, ``frozenset``: ``items``
``bytes``    ``b64`` (redacted like every byte body of the evidence, unless DICOM), ``size``
``float``    ``repr``: ``nan``, ``inf``, ``-inf`` (plain JSON numbers otherwise)
``enum``     ``type`` (``module:QualName``), ``value``
``datetime`` ``date``, ``time``: ``iso``; ``timedelta``: ``seconds``
``x509``     ``der``: an X.509 certificate (public: stored whole)
``xml``      ``doc`` (index in the record's table of XML documents, each stored once, redacted), ``path``
             (child indexes from the root)
``dicom``    ``b64``: a pydicom Dataset written as a DICOM file
``dc``       ``type``, ``fields``: an instance of a drimcheck dataclass, rebuilt as that class
``record``   ``type``, ``fields``: any other object (e.g. a simulator's record, a plain class): its fields
             and the values of its properties, read back as a :class:`Record` with the same attributes
========== ==================================================================================================

Strings and bytes are redacted as every other piece of evidence (``drimcheck.evidence``). A check that judges a
secret (the signature of a VIHF, a bearer credential) must not see the redacted value on re-judging: the helper
that judges it is a *judged fact* (:func:`judged_fact`): while a check runs, its results are recorded; while a
check is re-judged they are replayed, in call order, each one matched by a digest of its (redacted) arguments.

Bounds: one value of at most ``MAX_VALUE`` bytes (the largest body the harness reads from a DUT,
``limits.MAX_RESPONSE_BODY``), one encoded record of at most ``MAX_RECORD`` bytes, ``MAX_DEPTH`` levels of nesting;
beyond them ``CodecError`` (the call is then recorded as not re-judgeable, never truncated silently). Decoding
rebuilds only dataclasses of ``drimcheck`` modules already loaded (never imports a module a record names; no
finaliser), without calling their constructors; anything else is a ``CodecError``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import contextvars
import dataclasses
import enum
import functools
import hashlib
import io
import json
import math
import re
import sys
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from drimcheck import limits
from drimcheck.evidence import SECRET_HEADERS, is_dicom, marker, redact_bytes, redact_text, secret_key

FORMAT = 1
MAX_VALUE = limits.MAX_RESPONSE_BODY
MAX_RECORD = 2 * limits.MAX_RESPONSE_WIRE
MAX_DEPTH = 64
MAX_DOCS = 10_000
_PRIMITIVES = (str, int, bool, type(None))
_F = TypeVar("_F", bound=Callable[..., Any])


class CodecError(ValueError):
    """A value that cannot be stored or read back (unsupported type, too large, malformed)."""


class Record:
    """An object of a class outside drimcheck, read back from evidence: the same attributes, no behaviour."""

    _type: str

    def __init__(self, type_name: str, attrs: dict[str, Any]):
        object.__setattr__(self, "_type", type_name)
        self.__dict__.update(attrs)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k != "_type")
        return f"Record[{self._type}]({shown[:300]})"


# Every pattern of evidence.redact_text needs one of these (a quote, =, :, <, a PEM armour, a JWT-like run):
# a string without any is returned as is, without the dozen substitutions (most strings a check reads: UIDs, codes).
_MAYBE_SECRET = re.compile(r'[=:"<]|-----|[eICD][A-Za-z0-9_-]{7,}\.')


@functools.lru_cache(maxsize=16384)
def _redacted_short(text: str) -> str:
    return redact_text(text)


class _LargeCache:
    """Redactions of large texts and bodies, by digest: one exchange is read by several checks, hence stored in
    several records; it is redacted once. At most MAX_BYTES of results are kept (oldest dropped first)."""

    MAX_BYTES = 32 * 1024 * 1024

    def __init__(self) -> None:
        self._items: collections.OrderedDict[bytes, tuple[Any, int]] = collections.OrderedDict()
        self._size = 0

    def get(self, data: str | bytes, compute: Callable[[Any], Any]) -> Any:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        key = hashlib.blake2b(raw, digest_size=20).digest() + (b"s" if isinstance(data, str) else b"b")
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit[0]
        result = compute(data)
        if len(raw) <= self.MAX_BYTES // 4:
            self._items[key] = (result, len(raw))
            self._size += len(raw)
            while self._size > self.MAX_BYTES:
                _, (_, size) = self._items.popitem(last=False)
                self._size -= size
        return result


_LARGE = _LargeCache()


def _redacted(text: str) -> str:
    if not _MAYBE_SECRET.search(text):
        return text
    if len(text) < 512:
        return _redacted_short(text)
    return str(_LARGE.get(text, redact_text))


def _redacted_bytes(data: bytes) -> bytes:
    return data if is_dicom(data) or len(data) < 512 else bytes(_LARGE.get(data, redact_bytes))


#: a marker written by drimcheck.evidence (``[REDACTED]`` or ``[REDACTED <what> size=N sha256=HEX]``), exactly
_ALREADY_REDACTED = re.compile(r"\[REDACTED(?: [\w-]+)?(?: size=\d+ sha256=[0-9a-f]{64})?\]")


def _credential(name: str, value: str) -> str:
    """The value of a credential header without the credential: its scheme or cookie names stay readable, each
    secret becomes a marker with its size and SHA-256 (two equal credentials stay equal)."""
    low = name.lower()
    if value.startswith("[REDACTED"):
        return value
    if low in ("authorization", "proxy-authorization"):
        scheme, sep, rest = value.strip().partition(" ")
        if sep and _ALREADY_REDACTED.fullmatch(rest):  # redacted upstream (evidence, a simulator's record): kept as is
            return value
        return f"{scheme} {marker(rest, 'credential')}" if sep and scheme.isalpha() else marker(value, "credential")
    if low in ("cookie", "set-cookie"):
        head, sep, attributes = value.partition(";") if low == "set-cookie" else (value, "", "")
        cookies = [c.strip().partition("=") for c in head.split(";")]
        shown = "; ".join(f"{k}={marker(v, 'cookie')}" if eq else marker(k, "cookie") for k, eq, v in cookies)
        return shown + sep + attributes
    return marker(value, "credential")


def _pair(items: Any) -> Any:
    """A header as a (name, value) pair: a credential header's value redacted (``Cookie``, ``Authorization``...)."""
    if isinstance(items, (list, tuple)) and len(items) == 2 and isinstance(items[0], str) and isinstance(items[1], str) \
            and items[0].lower() in SECRET_HEADERS:
        return [items[0], _credential(items[0], items[1])]
    return items


def _field(key: Any, value: Any) -> Any:
    """A field or key named like a secret (password, client_secret, token...) holds a marker, not the secret."""
    if isinstance(key, str) and isinstance(value, str) and value and not value.startswith("[REDACTED"):
        if key.lower() in SECRET_HEADERS:
            return _credential(key, value)
        if secret_key(key):
            return marker(value, key)
    return value


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(name: Any) -> type:
    """The drimcheck class named ``module:QualName``; CodecError for any other name."""
    if not isinstance(name, str) or ":" not in name:
        raise CodecError(f"type illisible : {str(name)[:80]!r}")
    module, _, qual = name.partition(":")
    if module != "drimcheck" and not module.startswith("drimcheck."):
        raise CodecError(f"type hors de drimcheck : {name[:80]}")
    obj: Any = sys.modules.get(module)  # never imported on the word of a record: the checks' modules are loaded
    try:
        for part in qual.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise CodecError(f"type inconnu : {name[:80]}") from None
    if not isinstance(obj, type):
        raise CodecError(f"pas une classe : {name[:80]}")
    return obj


class Encoder:
    """One record: XML documents shared by its values are stored once; sizes are bounded."""

    def __init__(self) -> None:
        self.docs: list[str] = []
        self._doc_index: dict[int, int] = {}
        self._roots: list[Any] = []  # keeps the roots alive while their id() indexes the table
        self.size = 0

    def _count(self, n: int) -> None:
        if n > MAX_VALUE:
            raise CodecError(f"valeur de {n} octets, au-delà de {MAX_VALUE}")
        self.size += n
        if self.size > MAX_RECORD:
            raise CodecError(f"enregistrement au-delà de {MAX_RECORD} octets")

    def encode(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError("imbrication trop profonde")
        d = depth + 1
        if isinstance(value, enum.Enum):
            return {"$": "enum", "type": _type_name(type(value)), "value": self.encode(value.value, d)}
        if isinstance(value, str):
            self._count(len(value))
            return _redacted(value)
        if isinstance(value, _PRIMITIVES):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$": "float", "repr": repr(value)}
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            self._count(len(data))
            kept = data if is_dicom(data) else (_redacted_bytes(data) if len(data) >= 512 else redact_bytes(data))
            return {"$": "bytes", "size": len(data), "b64": base64.b64encode(kept).decode("ascii")}
        if isinstance(value, (list, KeysView, ValuesView, ItemsView, range, collections.deque)):
            return [self.encode(v, d) for v in _pair(value)]  # views and sequences are read back as lists
        if isinstance(value, dict):
            return {"$": "dict", "items": [[self.encode(k, d), self.encode(_field(k, v), d)] for k, v in value.items()]}
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return {"$": "tuple", "items": [self.encode(v, d) for v in _pair(value)]}
        if isinstance(value, (set, frozenset)):
            tag = "set" if isinstance(value, set) else "frozenset"
            return {"$": tag, "items": [self.encode(v, d) for v in value]}
        if isinstance(value, datetime):
            return {"$": "datetime", "iso": value.isoformat()}
        if isinstance(value, date):
            return {"$": "date", "iso": value.isoformat()}
        if isinstance(value, time):
            return {"$": "time", "iso": value.isoformat()}
        if isinstance(value, timedelta):
            return {"$": "timedelta", "seconds": value.total_seconds()}
        special = self._special(value)
        if special is not None:
            return special
        return self._object(value, d)

    def _special(self, value: Any) -> dict[str, Any] | None:
        module = type(value).__module__
        if module.startswith("cryptography.") and hasattr(value, "public_bytes") and hasattr(value, "serial_number"):
            from cryptography.hazmat.primitives.serialization import Encoding

            der = value.public_bytes(Encoding.DER)
            self._count(len(der))
            return {"$": "x509", "der": base64.b64encode(der).decode("ascii")}
        if module.startswith("lxml.") and hasattr(value, "getroottree"):
            return self._xml(value)
        if module.startswith("pydicom."):
            import pydicom

            if isinstance(value, pydicom.Dataset):
                return self._dicom(value)
        return None

    def _xml(self, element: Any) -> dict[str, Any]:
        from lxml import etree

        tree = element.getroottree()
        root = tree.getroot()
        index = self._doc_index.get(id(root))
        if index is None:
            text = etree.tostring(root, encoding="unicode")
            self._count(len(text))
            if len(self.docs) >= MAX_DOCS:
                raise CodecError("trop de documents XML")
            index = len(self.docs)
            self.docs.append(_redacted(text))
            self._doc_index[id(root)] = index
            self._roots.append(root)
        path: list[int] = []  # child indexes from the root (comments and processing instructions count)
        node = element
        while node is not root:
            parent = node.getparent()
            if parent is None:
                raise CodecError("élément XML hors de son document")
            path.append(parent.index(node))
            node = parent
        return {"$": "xml", "doc": index, "path": path[::-1]}

    def _dicom(self, dataset: Any) -> dict[str, Any]:
        import pydicom

        buffer = io.BytesIO()
        try:
            pydicom.dcmwrite(buffer, dataset)
        except Exception as exc:  # noqa: BLE001 - any dataset pydicom cannot write back is not storable
            raise CodecError(f"jeu de données DICOM non réécrivable ({type(exc).__name__})") from None
        data = buffer.getvalue()
        self._count(len(data))
        return {"$": "dicom", "b64": base64.b64encode(data).decode("ascii")}

    def _object(self, value: Any, depth: int) -> dict[str, Any]:
        cls = type(value)
        if callable(value) or isinstance(value, (Iterator, type, io.IOBase)):
            raise CodecError(f"valeur non enregistrable : {cls.__qualname__}")
        own = (cls.__module__ == "drimcheck" or cls.__module__.startswith("drimcheck.")) and dataclasses.is_dataclass(cls)
        attrs: dict[str, Any] = {}
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                attrs[f.name] = getattr(value, f.name)
        elif hasattr(value, "__dict__"):
            attrs.update(vars(value))
        else:
            raise CodecError(f"type non pris en charge : {_type_name(cls)[:80]}")
        if not own:  # a foreign record: its properties too, since its class is not rebuilt
            for klass in cls.__mro__:
                for name, member in vars(klass).items():
                    if isinstance(member, property) and not name.startswith("_") and name not in attrs:
                        try:
                            attrs[name] = getattr(value, name)
                        except Exception:  # noqa: BLE001 - a property that raises is simply absent
                            pass
        fields = {str(k): self.encode(_field(k, v), depth) for k, v in attrs.items()}
        return {"$": "dc" if own else "record", "type": _type_name(cls), "fields": fields}


class Decoder:
    def __init__(self, docs: list[Any] | None = None):
        self._doc_texts = docs or []
        self._trees: dict[int, Any] = {}

    def _tree(self, index: Any) -> Any:
        from lxml import etree

        from drimcheck import safexml

        if not isinstance(index, int) or not 0 <= index < len(self._doc_texts):
            raise CodecError("document XML absent de l'enregistrement")
        if index not in self._trees:
            text = self._doc_texts[index]
            if not isinstance(text, str):
                raise CodecError("document XML illisible")
            try:
                self._trees[index] = etree.fromstring(text.encode("utf-8"), safexml.parser()).getroottree()
            except etree.XMLSyntaxError as exc:
                raise CodecError(f"document XML illisible ({exc})") from None
        return self._trees[index]

    def decode(self, node: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError("imbrication trop profonde")
        d = depth + 1
        if isinstance(node, (str, int, float, bool)) or node is None:
            return node
        if isinstance(node, list):
            return [self.decode(v, d) for v in node]
        if not isinstance(node, dict) or not isinstance(node.get("$"), str):
            raise CodecError("nœud non typé")
        tag = node["$"]
        try:
            return self._decode(tag, node, d)
        except CodecError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, binascii.Error) as exc:
            raise CodecError(f"nœud « {tag[:20]} » mal formé ({type(exc).__name__})") from None

    def _decode(self, tag: str, node: dict[str, Any], d: int) -> Any:
        if tag == "dict":
            return {self.decode(k, d): self.decode(v, d) for k, v in node["items"]}
        if tag in ("tuple", "set", "frozenset"):
            items = [self.decode(v, d) for v in node["items"]]
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "bytes":
            return base64.b64decode(node["b64"], validate=True)
        if tag == "float":
            if node["repr"] not in ("nan", "inf", "-inf"):
                raise CodecError("flottant mal formé")
            return float(node["repr"])
        if tag == "enum":
            cls = _class(node["type"])
            if not issubclass(cls, enum.Enum):
                raise CodecError("pas une énumération")
            return cls(self.decode(node["value"], d))
        if tag == "datetime":
            return datetime.fromisoformat(node["iso"])
        if tag == "date":
            return date.fromisoformat(node["iso"])
        if tag == "time":
            return time.fromisoformat(node["iso"])
        if tag == "timedelta":
            return timedelta(seconds=float(node["seconds"]))
        if tag == "x509":
            from cryptography import x509

            return x509.load_der_x509_certificate(base64.b64decode(node["der"], validate=True))
        if tag == "xml":
            element = self._tree(node["doc"]).getroot()
            for i in node["path"]:
                if not isinstance(i, int) or not 0 <= i < len(element):
                    raise CodecError("élément XML introuvable dans son document")
                element = element[i]
            return element
        if tag == "dicom":
            import pydicom

            return pydicom.dcmread(io.BytesIO(base64.b64decode(node["b64"], validate=True)), force=True)
        if tag == "dc":
            cls = _class(node["type"])
            if not dataclasses.is_dataclass(cls) or hasattr(cls, "__del__") or issubclass(cls, BaseException):
                raise CodecError(f"classe non reconstructible : {node['type'][:80]}")
            obj = object.__new__(cls)
            for name, value in node["fields"].items():
                object.__setattr__(obj, str(name), self.decode(value, d))
            return obj
        if tag == "record":
            return Record(str(node["type"])[:200], {str(k): self.decode(v, d) for k, v in node["fields"].items()})
        raise CodecError(f"type de nœud inconnu : {tag[:20]}")


def encode(value: Any) -> dict[str, Any]:
    """One value as a self-contained document ``{"value": ..., "docs": [...]}``."""
    enc = Encoder()
    return {"value": enc.encode(value), "docs": enc.docs}


def decode(document: Any) -> Any:
    if not isinstance(document, dict):
        raise CodecError("document non typé")
    docs = document.get("docs") or []
    if not isinstance(docs, list):
        raise CodecError("table des documents XML mal formée")
    return Decoder(docs).decode(document.get("value"))


def digest(tree: Any) -> str:
    """SHA-256 of an encoded tree (canonical JSON): what identifies a judged fact's arguments."""
    return hashlib.sha256(json.dumps(tree, sort_keys=True, ensure_ascii=True).encode("ascii")).hexdigest()


# ------------------------------------------------------------------------------------------- judged facts

class FactLog:
    """The judged facts of one check call: recorded while it runs, replayed while it is re-judged."""

    def __init__(self, replay: list[dict[str, Any]] | None = None):
        self.replaying = replay is not None
        self.entries: list[dict[str, Any]] = list(replay or [])
        self._next = 0
        self.error: str | None = None  # first fact that could not be recorded

    def _key(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return digest(encode([list(args), kwargs]))

    def call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        name = f"{func.__module__}.{func.__qualname__}"
        if self.replaying:
            if self._next >= len(self.entries):
                raise CodecError(f"fait jugé {name} absent des preuves")
            entry = self.entries[self._next]
            self._next += 1
            if not isinstance(entry, dict) or entry.get("fact") != name or entry.get("key") != self._key(func, args, kwargs):
                raise CodecError(f"fait jugé {name} différent de celui des preuves")
            return decode(entry.get("result"))
        result = func(*args, **kwargs)
        try:
            self.entries.append({"fact": name, "key": self._key(func, args, kwargs), "result": encode(result)})
        except CodecError as exc:
            self.error = self.error or f"fait jugé {name} non enregistrable ({exc})"
        return result


_FACTS: contextvars.ContextVar[FactLog | None] = contextvars.ContextVar("drimcheck_judged_facts", default=None)


@contextlib.contextmanager
def facts(log: FactLog) -> Iterator[FactLog]:
    """Record (or replay) the judged facts of the code run inside."""
    token = _FACTS.set(log)
    try:
        yield log
    finally:
        _FACTS.reset(token)


def judged_fact(func: _F) -> _F:
    """Mark a pure helper whose verdict rests on a secret the evidence redacts (e.g. the verification of a VIHF's
    signature): its result, not its secret input, is what re-judging reads back."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        log = _FACTS.get()
        if log is None:
            return func(*args, **kwargs)
        return log.call(func, args, kwargs)

    return wrapper  # type: ignore[return-value]
