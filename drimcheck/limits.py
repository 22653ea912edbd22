"""Every cap on what a DUT (or anything else outside drimcheck) can make the harness read, in one place.

A DUT under test is buggy or hostile by assumption: whatever it writes is read with a bound in time
(``[timeouts]`` of the SUT description) *and* in size (below). Exceeding a cap is never a traceback
nor unbounded memory: the reader stops, closes the connection and records a clear error (in French
where it reaches reports, see :func:`too_large`), which the checks judge like any other failure.

Client side (drimcheck reading the DUT's answers: ``drimcheck.net``, ``drimcheck.browser``,
``drimcheck.wado``):

``MAX_RESPONSE_BODY``
    Ceiling of one HTTP response body *after* content decoding (gzip/deflate are inflated by
    drimcheck itself, piece by piece, and the decoded bytes counted as they stream): 64 MiB. This is
    the cap of answers that carry images (WADO-RS series/instances asked as a peer DRIMbox, with an
    Accept of ``multipart/related``/``application/dicom``): a series answer in the campaigns is a few
    MB (synthetic studies of a few instances); 64 MiB leaves a wide margin and keeps a campaign far
    below 300 MB.
``MAX_DOCUMENT_BODY``
    Cap of every other answer (HealthCheck JSON, HTML pages of the Conso, TLS and plain-HTTP probes,
    error pages): 1 MiB, the default of ``DutClient`` and ``Browser``. Such answers are a few KiB;
    the lower cap also bounds what a poller retains (the Météo keeps each poll's answer).
``MAX_RESPONSE_WIRE``
    Bytes of one HTTP response body as received on the wire (before content decoding): 64 MiB; a
    ``Content-Length`` above the applicable cap is refused before the body is read. A compression
    bomb trips the decoded cap long before its wire size matters.
``MAX_KEPT_ON_ERROR``
    When an answer is cut (cap exceeded, deadline passed), the prefix received so far is kept as
    evidence, up to 1 MiB (enough to show the DICOM objects it started to serve).
``MAX_HEADERS`` / ``MAX_HEADER_BYTES``
    Count and total size (names + values) of the header fields of one HTTP message: 100 fields, 64 KiB.
    (h11 already refuses a header block over 64 KiB while reading; these caps also bound what is kept.)
``MAX_REDIRECTS``
    Redirects one navigation of the simulated browser follows: 10 (what browsers allow is ~20; the
    DRIM-M flows need 3).
``MAX_MULTIPART_PARTS`` / ``MAX_PART_HEADER_BYTES``
    Parts of one multipart body (WADO-RS answer: one part per instance): 10 000; header block of one
    part: 64 KiB.

Every blocking operation of an exchange (connect, TLS handshake, each write and read) gets the time
left until the exchange's deadline, so ``request_s`` bounds the whole exchange, body included.

Server side (simulators reading what the DUT sends them; imported by ``simulators/*``):

``MAX_REQUEST_BODY``
    Bytes of one HTTP request body received by a simulator (a DMP ProvideAndRegister with its CDA and
    KOS, a STOW, a form post): 32 MiB.
``MAX_MLLP_FRAME``
    Bytes of one MLLP frame (an HL7 v2 message, between 0x0B and 0x1C 0x0D): 1 MiB (real ORM/ORU
    messages are a few KiB).
``MAX_XML_BYTES`` / ``MAX_XML_DEPTH``
    Bytes of one XML document parsed by drimcheck (SOAP envelopes, CDA, SAML/VIHF, whitelists):
    16 MiB; element nesting depth: 256 (real documents nest < 30 levels).
``MAX_DICOM_PDU``
    Bytes of one DICOM P-DATA PDU accepted by a simulated DICOM node: 1 MiB (the maximum PDU length
    the harness advertises is far smaller; anything larger is a protocol violation).
``MAX_JSON_BYTES``
    Bytes of one JSON document parsed from a DUT (health answers, token responses): 4 MiB.

Names are stable: other modules import them; change values here only, with this docstring.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB

# -- client side: answers from the DUT ---------------------------------------------------------
MAX_RESPONSE_BODY = 64 * MIB
MAX_DOCUMENT_BODY = 1 * MIB
MAX_RESPONSE_WIRE = 64 * MIB
MAX_KEPT_ON_ERROR = 1 * MIB
MAX_CONTENT_CODINGS = 3  # "gzip, gzip, gzip, ..." beyond this is refused
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * KIB
MAX_REDIRECTS = 10
MAX_MULTIPART_PARTS = 10_000
MAX_PART_HEADER_BYTES = 64 * KIB

# -- server side: requests and messages the DUT sends to simulators -----------------------------
MAX_REQUEST_BODY = 32 * MIB
MAX_MLLP_FRAME = 1 * MIB
MAX_XML_BYTES = 16 * MIB
MAX_XML_DEPTH = 256
MAX_DICOM_PDU = 1 * MIB
MAX_JSON_BYTES = 4 * MIB


class LimitExceeded(Exception):
    """A peer wrote more than a cap allows; ``str()`` is the French finding text."""

    def __init__(self, message: str, *, limit: int, what: str):
        super().__init__(message)
        self.limit = limit
        self.what = what


def human_bytes(n: int) -> str:
    """A byte count for French reports: ``64 Mio``, ``512 Kio``, ``300 octets``."""
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} Mio"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} Kio"
    return f"{n} octets"


def too_large(subject: str, limit: int, unit: str = "") -> str:
    """Finding text for a cap exceeded, e.g. ``too_large("réponse trop volumineuse", MAX_RESPONSE_BODY)`` ->
    ``réponse trop volumineuse : plus de 64 Mio (67108864 octets)``; with a unit (``"en-têtes"``), a count:
    ``trop d'en-têtes : plus de 100 en-têtes``."""
    if unit:
        return f"{subject} : plus de {limit} {unit}"
    return f"{subject} : plus de {human_bytes(limit)} ({limit} octets)"
