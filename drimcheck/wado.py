"""WADO-RS between DRIMboxes: Accept negotiation, multipart/related streaming, timed retrieval.

Pure helpers shared by the peer Source simulator (server side), by drimcheck when it plays a Conso
(client side), by the benchmark, and by checks that judge recorded WADO-RS headers.

Accept header (drimbox-spec §5.3, ANS samples in ansdata/wado-rs/)::

    multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.70;q=0.9;boundary=**,
    multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.1;q=0.4;boundary=**,

* :func:`parse_accept` — RFC 7231 list syntax (empty elements, like the sample's trailing comma, are
  allowed); raises :class:`AcceptError` on a syntax error, a bad ``q`` or a bad ``transfer-syntax``.
* :func:`check_drimbox_accept` — the shape of the ANS WADO-RS validator sample, the only one the ANS
  PoC Source can parse (its 400 answers): every element carries ``transfer-syntax=`` and ``q=``, and
  the first one carries ``boundary=``. DICOM PS3.18 does not require any of this: only CON-04 (the
  Conso's request) uses it, and only for a warning; no Source simulator enforces it.
* :func:`negotiate` — the acceptable transfer syntaxes, best first (q descending, client order for
  ties; q=0 means "not acceptable"; ``transfer-syntax=*`` stands for the server's preferred syntax).
* :func:`acceptable_syntaxes` — what a request accepts, whatever the server supports (checks use it).

Content negotiation follows DICOM PS3.18 §8.7 (Content Negotiation) and §8.7.3 (media types and
transfer syntaxes of the DICOM media type, ``transfer-syntax`` parameter: §8.7.3.4 « Transfer
Syntax » of the 2020-2025 editions): a ``multipart/related; type="application/dicom"`` range without
``transfer-syntax`` means Explicit VR Little Endian (1.2.840.10008.1.2.1, the default every origin
server supports), ``transfer-syntax=*`` lets the server choose, ``q`` and ``boundary`` are optional
(RFC 9110 §12.4.2/§12.5.1: no q means q=1; an absent Accept header means ``*/*``). Nothing acceptable
is 406; only a syntactically broken header is 400 (the Orthanc DICOMweb plugin and dcm4chee behave so).

Multipart: :class:`MultipartReader` splits a ``multipart/related`` body incrementally (uses each part's
``Content-Length`` when present, scans for the delimiter otherwise), so a client can time the first
instance and a server can re-frame a stream without buffering it. :func:`retrieve` performs one timed
streaming GET and returns a :class:`Retrieval`.

Bounds (drimcheck.limits): at most MAX_MULTIPART_PARTS parts, part headers of MAX_PART_HEADER_BYTES,
a body of ``max_bytes`` decoded bytes (MAX_RESPONSE_BODY; content codings are inflated piece by
piece), the whole exchange within ``timeout_s``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from drimcheck import limits

__all__ = [
    "TS_NAMES", "EXPLICIT_VR_LE", "IMPLICIT_VR_LE", "ANS_SAMPLE_ACCEPT", "AcceptError", "MediaRange",
    "parse_accept", "check_drimbox_accept", "negotiate", "acceptable_syntaxes", "parse_media_type", "dicom_accept",
    "MultipartError", "Part", "MultipartReader", "iter_parts", "part_sop_uid", "Retrieval", "retrieve",
]

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"

#: Transfer syntaxes that appear in DRIMbox traffic, with their DICOM names.
TS_NAMES: dict[str, str] = {
    IMPLICIT_VR_LE: "Implicit VR Little Endian",
    EXPLICIT_VR_LE: "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian (retired)",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 & 4)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless (Process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.100": "MPEG2 MP@ML",
    "1.2.840.10008.1.2.4.101": "MPEG2 MP@HL",
    "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 HP@4.1",
    "1.2.840.10008.1.2.4.103": "MPEG-4 AVC/H.264 BD HP@4.1",
}

#: The Accept value of the ANS WADO-RS validator sample (ansdata/wado-rs/requete-wado-rs-serie.txt), verbatim.
ANS_SAMPLE_ACCEPT = ",".join(
    f'multipart/related; type="application/dicom";transfer-syntax={ts};q={q};boundary=**'
    for ts, q in (("1.2.840.10008.1.2.4.70", "0.9"), ("1.2.840.10008.1.2.4.80", "0.8"),
                  ("1.2.840.10008.1.2.4.91", "0.6"), ("1.2.840.10008.1.2.4.50", "0.5"),
                  ("1.2.840.10008.1.2.4.51", "0.5"), ("1.2.840.10008.1.2.4.100", "0.5"),
                  ("1.2.840.10008.1.2.4.101", "0.5"), ("1.2.840.10008.1.2.4.102", "0.5"),
                  ("1.2.840.10008.1.2.4.103", "0.5"), (EXPLICIT_VR_LE, "0.4"))) + ","

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_QVALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")
_UID = re.compile(r"^[0-9]+(?:\.[0-9]+)*$")
_DICOM_RANGES = {"multipart/related", "multipart/*", "*/*"}


class AcceptError(ValueError):
    """A malformed or incomplete Accept header (the Source answers 400 with this message)."""


@dataclass(frozen=True)
class MediaRange:
    """One element of an Accept list: media range and its parameters (names lower-cased, values unquoted)."""

    media_type: str
    params: dict[str, str]
    raw: str
    index: int  # position in the list (ties in q keep the client's order)

    @property
    def q(self) -> float:
        return float(self.params.get("q", "1") or "1")

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")

    @property
    def boundary(self) -> str | None:
        return self.params.get("boundary")

    def is_dicom(self) -> bool:
        """Whether the range can select multipart/related DICOM (type param absent or application/dicom)."""
        kind = self.params.get("type")
        return self.media_type in _DICOM_RANGES and (kind is None or kind.lower() == "application/dicom")


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            escaped = True
        elif ch == '"':
            cur.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise AcceptError(f"unterminated quoted string in {text.strip()!r}")
    out.append("".join(cur))
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_media_type(text: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; name=value; ...`` -> (lower-cased type/subtype, params); AcceptError when malformed."""
    pieces = _split_outside_quotes(text, ";")
    media = pieces[0].strip().lower()
    kind, slash, sub = media.partition("/")
    if not slash or not _TOKEN.match(kind) or not _TOKEN.match(sub):
        raise AcceptError(f"not a media range: {pieces[0].strip()!r}")
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        piece = piece.strip()
        if not piece:
            continue
        name, eq, value = piece.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not eq or not _TOKEN.match(name) or not value:
            raise AcceptError(f"malformed parameter {piece!r} in {text.strip()!r}")
        if not (_TOKEN.match(value) or (value.startswith('"') and value.endswith('"') and len(value) >= 2)):
            raise AcceptError(f"malformed value of {name} in {text.strip()!r}")
        params[name] = _unquote(value)
    return media, params


def parse_accept(value: str | None) -> list[MediaRange]:
    """Parse an Accept header value; empty list elements are skipped (RFC 7230 §7).

    Raises AcceptError when the header is missing or empty, when an element is not a media range,
    when a q value is not an RFC 7231 qvalue, or when a transfer-syntax is neither a UID nor ``*``.
    """
    if value is None or not value.strip():
        raise AcceptError("missing Accept header")
    out: list[MediaRange] = []
    for element in _split_outside_quotes(value, ","):
        if not element.strip():
            continue
        media, params = parse_media_type(element)
        q = params.get("q")
        if q is not None and not _QVALUE.match(q):
            raise AcceptError(f"invalid q value {q!r} in {element.strip()!r}")
        ts = params.get("transfer-syntax")
        if ts is not None and ts != "*" and not (_UID.match(ts) and len(ts) <= 64):
            raise AcceptError(f"invalid transfer-syntax {ts!r} in {element.strip()!r}")
        out.append(MediaRange(media, params, element.strip(), len(out)))
    if not out:
        raise AcceptError("empty Accept header")
    return out


def check_drimbox_accept(ranges: Sequence[MediaRange]) -> None:
    """The ANS PoC's rules (InstanceAPI.wadoRS): transfer-syntax and q everywhere, boundary in the first element."""
    for r in ranges:
        if r.transfer_syntax is None:
            raise AcceptError(f"transfer-syntax absent de « {r.raw} »")
        if "q" not in r.params:
            raise AcceptError(f"q absent de « {r.raw} »")
    if ranges and not ranges[0].boundary:
        raise AcceptError(f"boundary absent du premier élément « {ranges[0].raw} »")


def negotiate(ranges: Sequence[MediaRange], supported: Sequence[str]) -> list[str]:
    """Acceptable transfer syntaxes among ``supported``, best first; [] when none is acceptable.

    A range without transfer-syntax means Explicit VR Little Endian (PS3.18 default); ``*`` means the
    server's preferred syntax (``supported[0]``). Ranges that are not DICOM multipart, or have q=0, are ignored.
    """
    ranked = sorted((r for r in ranges if r.is_dicom() and r.q > 0), key=lambda r: (-r.q, r.index))
    out: list[str] = []
    for r in ranked:
        ts = r.transfer_syntax or EXPLICIT_VR_LE
        if ts == "*":
            ts = supported[0] if supported else ""
        if ts in supported and ts not in out:
            out.append(ts)
    return out


def acceptable_syntaxes(ranges: Sequence[MediaRange]) -> set[str]:
    """Transfer syntaxes a request accepts for DICOM multipart (PS3.18 §8.7.3): the default Explicit VR
    Little Endian for a range without ``transfer-syntax``, ``"*"`` when any syntax is acceptable; q=0
    ranges and non-DICOM ranges accept nothing."""
    out: set[str] = set()
    refused: set[str] = set()
    for r in ranges:
        if not r.is_dicom():
            continue
        ts = r.transfer_syntax or EXPLICIT_VR_LE
        (out if r.q > 0 else refused).add(ts)
    return out - refused


def dicom_accept(*syntaxes: tuple[str, float] | str, boundary: str | None = "**") -> str:
    """Build an Accept value in the ANS sample's shape from (syntax, q) pairs (bare syntax: q=1)."""
    items = []
    for item in syntaxes:
        ts, q = (item, 1.0) if isinstance(item, str) else item
        text = f'multipart/related; type="application/dicom";transfer-syntax={ts};q={q:g}'
        items.append(text + (f";boundary={boundary}" if boundary else ""))
    return ",".join(items)


# --------------------------------------------------------------------------- multipart


class MultipartError(ValueError):
    """A multipart body that does not follow RFC 2046 framing."""


@dataclass
class Part:
    """One body part: its headers (names lower-cased) and its content."""

    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def transfer_syntax(self) -> str | None:
        """The transfer-syntax parameter of the part's Content-Type, if any."""
        try:
            return parse_media_type(self.content_type)[1].get("transfer-syntax") if self.content_type else None
        except AcceptError:
            return None


class MultipartReader:
    """Incremental multipart splitter: ``feed(chunk)`` returns the parts completed by that chunk.

    ``close()`` raises MultipartError if the closing delimiter was never seen. Memory use is one part
    plus one chunk.
    """

    def __init__(self, boundary: str, *, max_parts: int = limits.MAX_MULTIPART_PARTS,
                 max_part_bytes: int = limits.MAX_RESPONSE_BODY) -> None:
        if not boundary:
            raise MultipartError("empty boundary")
        self.max_parts = max_parts
        self.max_part_bytes = max_part_bytes  # one part (or a preamble) still incomplete may not grow past this
        self.boundary = boundary
        self._delim = b"--" + boundary.encode("latin-1")
        self._body_delim = b"\r\n" + self._delim
        self._buf = bytearray()
        self._state = "preamble"
        self._headers: dict[str, str] = {}
        self._scan_from = 0
        self.finished = False
        self.count = 0

    def feed(self, data: bytes) -> list[Part]:
        if self.finished:
            return []
        self._buf += data
        if len(self._buf) > self.max_part_bytes + limits.MAX_PART_HEADER_BYTES and self._state in ("preamble", "body"):
            self._parts_within_buffer_or_raise()
        out: list[Part] = []
        while True:
            if self._state == "preamble":
                idx = self._buf.find(self._delim, self._scan_from)
                if idx < 0:  # next time, scan only what may hold a delimiter (no quadratic rescans)
                    self._scan_from = max(0, len(self._buf) - len(self._delim) - 2)
                    return out
                if len(self._buf) < idx + len(self._delim) + 2:
                    self._scan_from = max(0, idx - 2)
                    return out
                if idx > 0 and self._buf[idx - 2:idx] != b"\r\n":
                    raise MultipartError("delimiter not at the start of a line")
                del self._buf[:idx + len(self._delim)]
                self._state = "after-delim"
            elif self._state == "after-delim":
                if len(self._buf) < 2:
                    return out
                if self._buf[:2] == b"--":
                    self.finished = True
                    self._buf.clear()
                    return out
                eol = self._buf.find(b"\r\n")
                if eol < 0:
                    return out
                if self._buf[:eol].strip(b" \t"):
                    raise MultipartError("garbage after a delimiter")
                del self._buf[:eol + 2]
                self._state = "headers"
            elif self._state == "headers":
                if self._buf[:2] == b"\r\n":
                    block, consumed = b"", 2
                else:
                    end = self._buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(self._buf) > limits.MAX_PART_HEADER_BYTES:
                            raise MultipartError(limits.too_large("en-têtes de partie trop volumineux",
                                                                  limits.MAX_PART_HEADER_BYTES))
                        return out
                    block, consumed = bytes(self._buf[:end]), end + 4
                self._headers = _parse_part_headers(block)
                del self._buf[:consumed]
                self._state = "body"
                self._scan_from = 0
            elif self._state == "body":
                end = self._body_end()
                if end is None:
                    return out
                body = bytes(self._buf[:end])
                del self._buf[:end + len(self._body_delim)]
                out.append(Part(self._headers, body))
                self.count += 1
                self._state = "after-delim"
                if self.count > self.max_parts:
                    raise MultipartError(limits.too_large("trop de parties", self.max_parts, "parties"))

    def _parts_within_buffer_or_raise(self) -> None:
        """The buffer is past the cap of one part: fine only if it already holds the next delimiter."""
        delim = self._delim if self._state == "preamble" else self._body_delim
        if self._buf.find(delim, 0, self.max_part_bytes + limits.MAX_PART_HEADER_BYTES + len(delim)) < 0:
            raise MultipartError(limits.too_large("partie trop volumineuse", self.max_part_bytes))

    def _body_end(self) -> int | None:
        length = self._headers.get("content-length")
        if length and length.isdigit():
            n = int(length)
            if len(self._buf) < n + len(self._body_delim):
                return None
            if self._buf[n:n + len(self._body_delim)] == self._body_delim:
                return n
            # a wrong Content-Length: fall back to scanning for the delimiter
        idx = self._buf.find(self._body_delim, self._scan_from)
        if idx < 0:
            self._scan_from = max(0, len(self._buf) - len(self._body_delim))
            return None
        return idx

    def close(self) -> None:
        if not self.finished:
            raise MultipartError(f"multipart body truncated (no closing delimiter after {self.count} part(s))")


def _parse_part_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"malformed part header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def iter_parts(chunks: Iterable[bytes], boundary: str) -> Iterator[Part]:
    """Parts of a multipart body given as chunks; MultipartError if it is truncated."""
    reader = MultipartReader(boundary)
    for chunk in chunks:
        yield from reader.feed(chunk)
    reader.close()


_META_SOP_UID = b"\x02\x00\x03\x00UI"  # (0002,0003) MediaStorageSOPInstanceUID; file meta is always explicit VR LE


def part_sop_uid(dicom: bytes) -> str | None:
    """MediaStorageSOPInstanceUID of a DICOM Part 10 body, read from its file meta without parsing the
    dataset (works whatever the transfer syntax, deflated included); None when absent."""
    idx = dicom.find(_META_SOP_UID, 128, 1024)
    if idx < 0:
        return None
    length = int.from_bytes(dicom[idx + 6:idx + 8], "little")
    return dicom[idx + 8:idx + 8 + length].rstrip(b"\x00 ").decode("ascii", "replace")


# --------------------------------------------------------------------------- timed retrieval


@dataclass
class Retrieval:
    """One WADO-RS GET as seen by the caller; times are seconds from the start of the request."""

    url: str
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    media_type: str = ""
    media_params: dict[str, str] = field(default_factory=dict)
    parts: list[Part] = field(default_factory=list)  # only when keep_parts=True
    part_count: int = 0
    body_bytes: int = 0  # bytes of the whole HTTP body
    error_body: bytes = b""  # body of a non-multipart answer (error message), first 64 KiB
    t_headers_s: float | None = None
    t_first_part_s: float | None = None
    t_total_s: float | None = None
    error: str | None = None

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def to_dict(self) -> dict[str, Any]:
        """Evidence-friendly summary (no part bodies)."""
        return {"url": self.url, "status": self.status, "content_type": self.header("content-type"),
                "part_count": self.part_count, "body_bytes": self.body_bytes,
                "t_headers_s": self.t_headers_s, "t_first_part_s": self.t_first_part_s,
                "t_total_s": self.t_total_s, "error": self.error,
                "error_body": self.error_body.decode("utf-8", "replace")[:2000] if self.error_body else None}


def retrieve(client: httpx.Client, url: str, *, headers: dict[str, str] | None = None,
             keep_parts: bool = True, on_part: Callable[[Part], None] | None = None,
             timeout_s: float = 60.0, extensions: dict[str, Any] | None = None,
             max_bytes: int | None = None) -> Retrieval:
    """GET ``url`` streaming and split the multipart answer as it arrives; never raises on transport errors.

    The whole exchange is bounded by ``timeout_s`` (checked as the body arrives; each read is also
    bounded by the client's timeout, or by its deadline with a drimcheck.net.BoundedTransport) and
    by ``max_bytes`` of decoded body (default: MAX_RESPONSE_BODY when the parts are kept; a streaming
    consumer, keep_parts=False, is bounded by time and by the size of one part). A non-multipart answer
    (an error) keeps its first 64 KiB in ``error_body``.
    """
    from drimcheck.net import check_headers, iter_body

    result = Retrieval(url=url)
    t0 = time.monotonic()
    try:
        with client.stream("GET", url, headers=headers or {}, extensions=extensions or {}) as resp:
            result.t_headers_s = time.monotonic() - t0
            result.status = resp.status_code
            result.headers = list(resp.headers.multi_items())
            ctype = resp.headers.get("content-type", "")
            try:
                result.media_type, result.media_params = parse_media_type(ctype) if ctype else ("", {})
            except AcceptError:
                result.media_type, result.media_params = "", {}
            reader = None
            if result.media_type.startswith("multipart/") and result.media_params.get("boundary"):
                reader = MultipartReader(result.media_params["boundary"])
            check_headers(resp)
            cap = max_bytes if max_bytes is not None else (limits.MAX_RESPONSE_BODY if keep_parts else 1 << 62)
            for chunk in iter_body(resp, max_body=cap, max_wire=cap, deadline=t0 + timeout_s):
                result.body_bytes += len(chunk)
                if reader is not None:
                    for part in reader.feed(chunk):
                        if result.t_first_part_s is None:
                            result.t_first_part_s = time.monotonic() - t0
                        result.part_count += 1
                        if keep_parts:
                            result.parts.append(part)
                        if on_part is not None:
                            on_part(part)
                elif len(result.error_body) < 65536:
                    result.error_body += chunk[:65536 - len(result.error_body)]
                if time.monotonic() - t0 > timeout_s:
                    raise httpx.ReadTimeout(f"body not complete within {timeout_s:g} s")
            if reader is not None:
                reader.close()
    except MultipartError as exc:
        result.error = f"multipart: {exc}"
    except limits.LimitExceeded as exc:
        result.error = str(exc)
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.t_total_s = time.monotonic() - t0
    return result
