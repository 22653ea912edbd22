"""HL7 v2 over MLLP and CDA reading for the reference Source DRIMbox (its own code, not the harness's).

* `Message`: a tolerant HL7 v2 parser (segments on CR or LF, separators from MSH-1/MSH-2).
* `ack`: an ACK (MSA-1 AA/AE/AR, MSA-2 = the message's control id, ERR when not AA).
* `MllpServer`: threaded MLLP listener (0x0B … 0x1C 0x0D), one ACK per message.
* `read_cda`: what the Source needs from the CI-SIS IMG-CR-IMG report (drimbox-spec §4.1).
"""

from __future__ import annotations

import base64
import binascii
import logging
import socketserver
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from simulators.drimbox.source_kos import Identity

log = logging.getLogger("drimbox.source.hl7")

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
INS_OIDS = {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"}
CDA_NS = {"cda": "urn:hl7-org:v3", "ps3-20": "urn:dicom-org:ps3-20"}
MAX_MESSAGE = 64 * 1024 * 1024


class Hl7Error(Exception):
    """The message cannot be processed: ACK code (AE or AR) and a French reason."""

    def __init__(self, code: str, reason: str, segment: str = ""):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.segment = segment


class Message:
    def __init__(self, text: str):
        lines = [ln for ln in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if ln.strip()]
        if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
            raise Hl7Error("AR", "message sans segment MSH")
        self.field_sep = lines[0][3]
        enc = lines[0][4:8]
        self.comp, self.rep, self.esc, self.sub = enc[0], enc[1], enc[2], enc[3]
        self.segments: list[list[str]] = []
        for ln in lines:
            parts = ln.split(self.field_sep)
            if parts[0] == "MSH":
                parts = ["MSH", self.field_sep] + parts[1:]
            self.segments.append(parts)

    def all(self, name: str) -> list[list[str]]:
        return [s for s in self.segments if s[0] == name]

    def first(self, name: str) -> list[str] | None:
        found = self.all(name)
        return found[0] if found else None

    def field(self, seg: list[str] | None, n: int) -> str:
        if seg is None or n >= len(seg):
            return ""
        return seg[n]

    def comps(self, value: str) -> list[str]:
        return value.split(self.comp)

    def unescape(self, value: str) -> str:
        e = self.esc
        for code, char in (("F", self.field_sep), ("S", self.comp), ("R", self.rep), ("T", self.sub), ("E", e)):
            value = value.replace(f"{e}{code}{e}", char)
        return value

    @property
    def msh(self) -> list[str]:
        return self.segments[0]

    @property
    def type(self) -> tuple[str, str]:
        c = self.comps(self.field(self.msh, 9))
        return (c[0] if c else "", c[1] if len(c) > 1 else "")

    @property
    def control_id(self) -> str:
        return self.field(self.msh, 10)

    @property
    def version(self) -> str:
        return self.field(self.msh, 12)


def ack(msg: Message | None, code: str, text: str = "", *, raw: str = "") -> bytes:
    """ACK for msg (or for an unparsable message: only what could be read)."""
    fs, enc = "|", "^~\\&"
    now = datetime.now().strftime("%Y%m%d%H%M%S")
    if msg is not None:
        sending = (msg.field(msg.msh, 5), msg.field(msg.msh, 6))
        receiving = (msg.field(msg.msh, 3), msg.field(msg.msh, 4))
        trigger, control, version = msg.type[1], msg.control_id, msg.version or "2.5"
    else:
        sending, receiving, trigger, control, version = ("DRIMBOX", ""), ("", ""), "", _control_of(raw), "2.5"
    clean = text.replace("|", " ").replace("^", " ").replace("~", " ").replace("\\", " ").replace("&", " ")[:200]
    segments = [
        fs.join(["MSH", enc, sending[0] or "DRIMBOX", sending[1], receiving[0], receiving[1], now, "",
                 f"ACK^{trigger}^ACK", f"ACK{uuid.uuid4().hex[:16]}", "P", version]),
        fs.join(["MSA", code, control] + ([clean] if clean and code != "AA" else [])),
    ]
    if code != "AA":
        segments.append(fs.join(["ERR", "", "", "207" if code == "AE" else "200", "E", "", "", clean]))
    return ("\r".join(segments) + "\r").encode("utf-8")


def _control_of(raw: str) -> str:
    first = raw.replace("\n", "\r").split("\r", 1)[0]
    parts = first.split("|")
    return parts[9] if len(parts) > 9 else ""


# --------------------------------------------------------------------------- MLLP

class MllpServer:
    """Threaded MLLP listener; handler(message_text) -> ACK bytes (it never raises)."""

    def __init__(self, host: str, port: int, handler: Callable[[str], bytes]):
        self.handler = handler
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(30)
                buffer = b""
                while True:
                    try:
                        chunk = self.request.recv(65536)
                    except (TimeoutError, OSError):
                        return
                    if not chunk:
                        return
                    buffer += chunk
                    if len(buffer) > MAX_MESSAGE:
                        return
                    while EB + CR in buffer:
                        frame, buffer = buffer.split(EB + CR, 1)
                        start = frame.find(SB)
                        payload = frame[start + 1:] if start >= 0 else frame
                        try:
                            text = payload.decode("utf-8")
                        except UnicodeDecodeError:
                            text = payload.decode("latin-1")
                        reply = outer.handler(text)
                        try:
                            self.request.sendall(SB + reply + EB + CR)
                        except OSError:
                            return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"mllp:{port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- the report

@dataclass(kw_only=True)
class Report(Identity):
    """What the Source takes from the HL7 message and its CDA report."""

    kind: str  # "new", "update", "withdrawal"
    message_type: str
    ipp: str
    ipp_oid: str
    doc_id: str
    author_id: str = ""
    author_family: str = ""
    author_given: str = ""
    author_specialty: str = ""
    structure_id: str = ""
    structure_name: str = ""
    facility_type: str = ""
    practice: str = ""
    modalities: list[str] = field(default_factory=list)
    service_start: str = ""
    service_stop: str = ""
    confidentiality: list[str] = field(default_factory=list)  # MetaDMPMSS flags set to Y


def _pid_ids(msg: Message) -> list[tuple[str, str, str]]:
    """(id, assigning authority OID, type) of every PID-3 repetition."""
    out = []
    pid = msg.first("PID")
    for rep in msg.field(pid, 3).split(msg.rep):
        c = msg.comps(rep)
        authority = c[3].split(msg.sub) if len(c) > 3 else []
        out.append((c[0], authority[1] if len(authority) > 1 else "", c[4] if len(c) > 4 else ""))
    return out


def read_report(msg: Message, *, ins_oids: set[str] | None = INS_OIDS) -> Report:
    """Validate an ORU^R01 / MDM^T02/T10/T04 and read its CDA; Hl7Error (AE/AR) otherwise.

    ins_oids: the INS OIDs accepted (None: any, only for a lenient mutant)."""
    mtype, trigger = msg.type
    if (mtype, trigger) not in (("ORU", "R01"), ("MDM", "T02"), ("MDM", "T10"), ("MDM", "T04")):
        raise Hl7Error("AR", f"type de message {mtype}^{trigger} non pris en charge")
    if msg.first("PID") is None:
        raise Hl7Error("AE", "segment PID absent", "PID")
    ids = _pid_ids(msg)
    ins = [i for i in ids if i[2] == "INS"]
    if not ins:
        raise Hl7Error("AE", "PID-3 sans INS", "PID")
    if ins_oids is not None and ins[0][1] not in ins_oids:
        raise Hl7Error("AE", f"OID de l'INS inconnu : {ins[0][1] or 'absent'}", "PID")
    ed = [s for s in msg.all("OBX") if msg.field(s, 2) == "ED"]
    if not ed:
        raise Hl7Error("AE", "OBX du CR (type ED) absent", "OBX")
    value = msg.comps(msg.field(ed[0], 5))
    if len(value) < 5 or value[3].lower() != "base64" or not value[4].strip():
        raise Hl7Error("AE", "OBX-5 n'est pas un CDA en base64 (^TEXT^XML^Base64^…)", "OBX")
    try:
        cda = base64.b64decode(value[4].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Hl7Error("AE", "OBX-5 : base64 invalide", "OBX") from None
    report = read_cda(cda, ins_oids={ins[0][1]} if ins_oids is None else ins_oids)
    if report.ins != ins[0][0] or report.ins_oid != ins[0][1]:
        raise Hl7Error("AE", "INS du PID-3 différent de celui du CDA", "PID")
    orc = msg.first("ORC")
    order_control = msg.field(orc, 1)
    status = msg.field(ed[0], 11)
    if trigger == "T04" or order_control == "CA" or status == "D":
        report.kind = "withdrawal"
    elif trigger == "T10" or status == "C":
        report.kind = "update"
    report.message_type = f"{mtype}^{trigger}"
    flags = []
    for s in msg.all("OBX"):
        code = msg.comps(msg.field(s, 3))
        if len(code) > 2 and code[2] == "MetaDMPMSS" and msg.comps(msg.field(s, 5))[0] == "Y":
            flags.append(code[0])
    report.confidentiality = flags
    return report


def read_cda(data: bytes, *, ins_oids: set[str] = INS_OIDS) -> Report:
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    except etree.XMLSyntaxError as exc:
        raise Hl7Error("AE", f"CDA illisible : {exc}", "OBX") from None

    def one(path: str, attr: str | None = None, base: etree._Element | None = root) -> str:
        el = base.find(path, CDA_NS) if base is not None else None
        if el is None:
            return ""
        return ((el.get(attr) if attr else el.text) or "").strip()

    def first_of(base: etree._Element, *paths: str) -> str:
        for path in paths:
            el = base.find(path, CDA_NS)
            if el is not None and (el.text or "").strip():
                return el.text.strip()
        return ""

    ids = root.findall("cda:recordTarget/cda:patientRole/cda:id", CDA_NS)
    ins = next((i for i in ids if i.get("root") in ins_oids), None)
    if ins is None:
        raise Hl7Error("AE", "CDA : INS absent de recordTarget/patientRole/id", "OBX")
    ipp = next((i for i in ids if i is not ins), None)
    study_uid = one("cda:documentationOf/cda:serviceEvent/cda:id", "root")
    if not study_uid:
        raise Hl7Error("AE", "CDA : serviceEvent/id (StudyInstanceUID) absent", "OBX")
    acc = root.find("cda:inFulfillmentOf/cda:order/ps3-20:accessionNumber", CDA_NS)
    order = root.find("cda:inFulfillmentOf/cda:order/cda:id", CDA_NS)
    name = root.find("cda:recordTarget/cda:patientRole/cda:patient/cda:name", CDA_NS)
    family = first_of(name, "cda:family[@qualifier='BR']", "cda:family") if name is not None else ""
    given = first_of(name, "cda:given[@qualifier='BR']", "cda:given") if name is not None else ""
    author = root.find("cda:author/cda:assignedAuthor", CDA_NS)
    org = author.find("cda:representedOrganization", CDA_NS) if author is not None else None
    code = root.find("cda:documentationOf/cda:serviceEvent/cda:code", CDA_NS)
    modalities = [t.get("code", "") for t in (code.findall("cda:translation", CDA_NS) if code is not None else [])
                  if t.get("codeSystem") == "1.2.840.10008.2.16.4"]
    spec = one("cda:code", "code", author)
    return Report(
        kind="new", message_type="",
        ins=ins.get("extension", ""), ins_oid=ins.get("root", ""),
        ipp=ipp.get("extension", "") if ipp is not None else "", ipp_oid=ipp.get("root", "") if ipp is not None else "",
        family=family, given=given,
        birth_date=one("cda:recordTarget/cda:patientRole/cda:patient/cda:birthTime", "value")[:8],
        sex=one("cda:recordTarget/cda:patientRole/cda:patient/cda:administrativeGenderCode", "code"),
        birthplace=one("cda:recordTarget/cda:patientRole/cda:patient/cda:birthplace/cda:place/cda:addr/cda:county"),
        study_uid=study_uid,
        accession=acc.get("extension", "") if acc is not None else "", accession_oid=acc.get("root", "") if acc is not None else "",
        order=order.get("extension", "") if order is not None else "", order_oid=order.get("root", "") if order is not None else "",
        doc_id=one("cda:id", "root"),
        author_id=one("cda:id", "extension", author),
        author_family=one("cda:author/cda:assignedAuthor/cda:assignedPerson/cda:name/cda:family"),
        author_given=one("cda:author/cda:assignedAuthor/cda:assignedPerson/cda:name/cda:given"),
        author_specialty=spec.rsplit("/", 1)[-1],
        structure_id=one("cda:id", "extension", org),
        structure_name=one("cda:name", None, org),
        facility_type=one("cda:componentOf/cda:encompassingEncounter/cda:location/cda:healthCareFacility/cda:code", "code"),
        practice=one("cda:standardIndustryClassCode", "code", org),
        modalities=[m for m in modalities if m],
        service_start=one("cda:documentationOf/cda:serviceEvent/cda:effectiveTime/cda:low", "value")[:14],
        service_stop=one("cda:documentationOf/cda:serviceEvent/cda:effectiveTime/cda:high", "value")[:14],
    )


@dataclass
class ExamChange:
    """OMI^O23 from the PACS: the study changed (NW/XO/SC) or was cancelled (CA)."""

    study_uid: str
    cancelled: bool


def read_omi(msg: Message) -> ExamChange:
    if msg.type != ("OMI", "O23"):
        raise Hl7Error("AR", f"type de message {msg.type[0]}^{msg.type[1]} non pris en charge")
    ipc = msg.first("IPC")
    study = msg.field(ipc, 3)
    if not study:
        raise Hl7Error("AE", "IPC-3 (StudyInstanceUID) absent", "IPC")
    return ExamChange(study, msg.field(msg.first("ORC"), 1) == "CA")
