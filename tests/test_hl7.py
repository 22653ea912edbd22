"""HL7 v2 / CDA builders, the RIS simulator (MLLP), ACK reading, and the reference's own HL7/CDA reading."""

from __future__ import annotations

import base64
import socket
import threading

import pytest
from lxml import etree

from drimcheck.hl7 import read_ack, segments
from fixtures import hl7 as messages
from fixtures.cda import report_for
from simulators.drimbox import source_hl7
from simulators.pacs import make_study
from simulators.ris import RisSimulator

VI1 = "vi1.349.mesimagesmedicales.fr"
CDA = {"cda": "urn:hl7-org:v3", "ps3-20": "urn:dicom-org:ps3-20"}


@pytest.fixture(scope="module")
def study():
    return make_study("hl7-tests")


@pytest.fixture(scope="module")
def report(study):
    return report_for(study, VI1)


def _field(message, segment: str, n: int) -> str:
    seg = next(s for s in segments(message.text) if s[0] == segment)
    return seg[n] if n < len(seg) else ""


def test_cda_carries_the_study_values(study, report) -> None:
    root = etree.fromstring(report.xml())
    ids = root.findall("cda:recordTarget/cda:patientRole/cda:id", CDA)
    assert (ids[0].get("extension"), ids[0].get("root")) == (study.patient.ins, "1.2.250.1.213.1.4.10")
    assert ids[1].get("extension") == study.patient.ipp
    assert root.find("cda:documentationOf/cda:serviceEvent/cda:id", CDA).get("root") == study.study_uid
    acc = root.find("cda:inFulfillmentOf/cda:order/ps3-20:accessionNumber", CDA)
    assert (acc.get("extension"), acc.get("root")) == (study.accession_number, study.accession_issuer_oid)
    pdf = base64.b64decode(root.find("cda:component/cda:nonXMLBody/cda:text", CDA).text)
    assert pdf.startswith(b"%PDF-1.4") and report.viewer_link.encode() in pdf
    assert report.viewer_link.startswith(f"https://{VI1}/IHEInvokeImageDisplay?requestType=STUDY&studyUID={study.study_uid}")


def test_report_versions_and_overrides(study) -> None:
    v1, v2 = report_for(study, VI1), report_for(study, VI1, version=2)
    assert v2.replaces == v1.doc_id and v2.doc_id != v1.doc_id
    assert b"relatedDocument" in v2.xml() and b"<versionNumber value=\"2\"/>" in v2.xml()
    bad = report_for(study, VI1, accession="X1")
    assert bad.accession == "X1" and "X1" in bad.viewer_link


def test_oru_r01_shape(study, report) -> None:
    msg = messages.oru_r01(report)
    assert _field(msg, "MSH", 9) == "ORU^R01^ORU_R01" and _field(msg, "MSH", 12) == "2.5"
    assert _field(msg, "MSH", 18) == "UNICODE UTF-8" and _field(msg, "MSH", 21) == "2.1^CISIS_CDA_HL7_V2"
    pid3 = _field(msg, "PID", 3).split("~")
    assert pid3[0].startswith(f"{study.patient.ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS")
    assert pid3[1].startswith(f"{study.patient.ipp}^^^") and pid3[1].endswith("^PI")
    obx = next(s for s in segments(msg.text) if s[0] == "OBX" and s[2] == "ED")
    value = obx[5].split("^")
    assert value[1:4] == ["TEXT", "XML", "Base64"] and obx[11] == "F"
    assert base64.b64decode(value[4]) == report.xml()
    assert len([s for s in segments(msg.text) if s[0] == "OBX"]) == 11  # CR + 10 MetaDMPMSS


def test_mdm_variants(report, study) -> None:
    t02 = messages.mdm(report)
    assert _field(t02, "MSH", 12) == "2.6" and _field(t02, "TXA", 12) == report.doc_id
    v2 = report_for(study, VI1, version=2)
    t10 = messages.mdm(v2, trigger="T10")
    assert _field(t10, "MSH", 9) == "MDM^T10^MDM_T02" and _field(t10, "TXA", 13) == report.doc_id
    assert _field(t10, "ORC", 1) == "RO"
    t04 = messages.mdm(report, trigger="T04")
    assert _field(t04, "ORC", 1) == "CA"
    assert next(s for s in segments(t04.text) if s[0] == "OBX")[11] == "D"


def test_omi_o23(report, study) -> None:
    msg = messages.omi_o23(report, order_control="CA", pacs_aet="PACS1")
    assert _field(msg, "MSH", 9) == "OMI^O23^OMI_O23" and _field(msg, "IPC", 3) == study.study_uid
    assert _field(msg, "ORC", 1) == "CA"


def test_negative_variants(report) -> None:
    valid = messages.oru_r01(report)
    assert not any(s.startswith("OBX|1|ED|") for s in messages.without_cda_obx(valid).segments())
    bad = messages.with_bad_base64(valid)
    obx = next(s for s in segments(bad.text) if s[0] == "OBX" and s[2] == "ED")
    assert "@@" in obx[5] and obx[11] == "F"


def test_escape() -> None:
    assert messages.escape("A|B^C~D\\E&F") == "A\\F\\B\\S\\C\\R\\D\\E\\E\\T\\F"


# --------------------------------------------------------------------------- the reference reads the same messages

def test_reference_reads_what_the_ris_sends(study, report) -> None:
    for msg in (messages.oru_r01(report), messages.mdm(report)):
        r = source_hl7.read_report(source_hl7.Message(msg.text))
        assert (r.kind, r.ins, r.ipp, r.study_uid) == ("new", study.patient.ins, study.patient.ipp, study.study_uid)
        assert (r.accession, r.order) == (study.accession_number, study.order_placer_number)
    assert source_hl7.read_report(source_hl7.Message(messages.mdm(report, trigger="T04").text)).kind == "withdrawal"
    assert source_hl7.read_report(source_hl7.Message(
        messages.oru_r01(report, order_control="CA", status="D").text)).kind == "withdrawal"
    v2 = report_for(study, VI1, version=2)
    assert source_hl7.read_report(source_hl7.Message(messages.mdm(v2, trigger="T10").text)).kind == "update"


@pytest.mark.parametrize("make, code, words", [
    (lambda r: messages.without_cda_obx(messages.oru_r01(r)), "AE", "OBX"),
    (lambda r: messages.with_bad_base64(messages.oru_r01(r)), "AE", "base64"),
    (lambda r: messages.oru_r01(report_for(make_study("hl7-tests"), VI1, ins_oid="1.2.250.1.213.1.4.99")), "AE", "OID"),
    (lambda r: messages.Hl7Message("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r", "ADT^A01", "1"), "AR", "ADT"),
])
def test_reference_refuses_malformed(report, make, code, words) -> None:
    with pytest.raises(source_hl7.Hl7Error) as err:
        source_hl7.read_report(source_hl7.Message(make(report).text))
    assert err.value.code == code and words in err.value.reason


def test_ack_round_trip(report) -> None:
    msg = source_hl7.Message(messages.oru_r01(report).text)
    ack = read_ack(source_hl7.ack(msg, "AE", "étude absente"))
    assert (ack.code, ack.control_id, ack.text) == ("AE", msg.control_id, "étude absente") and ack.error
    assert read_ack(source_hl7.ack(msg, "AA")).accepted
    assert read_ack(b"").problem and read_ack(b"MSH|^~\\&|x\rMSA|ZZ|1").problem
    assert read_ack(b"garbage").code is None


# --------------------------------------------------------------------------- RIS over MLLP

class _MllpPeer:
    """A tiny MLLP server: answers each frame with `reply(text)` (None = stay silent)."""

    def __init__(self, reply, start: bytes = b"\x0b", end: bytes = b"\x1c\x0d"):
        self.reply = reply
        self.start, self.end = start, end  # what frames the answer (MLLP's blocks, or a defect)
        self.received: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\x1c\x0d" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                text = data.strip(b"\x0b\x1c\x0d").decode()
                self.received.append(text)
                answer = self.reply(text)
                if answer is None:  # stay silent, connection open, until the test is done (not a timed sleep)
                    self._closed.wait(30)
                    continue
                conn.sendall(self.start + answer + self.end)
                if self.end != b"\x1c\x0d":  # a defective end: keep the line open, the client must not wait for more
                    self._closed.wait(30)

    def close(self):
        self._closed.set()
        self.sock.close()


def test_ris_sends_and_records_the_ack(report, tmp_path) -> None:
    from drimcheck.evidence import EvidenceStore

    peer = _MllpPeer(lambda text: source_hl7.ack(source_hl7.Message(text), "AA"))
    try:
        store = EvidenceStore(tmp_path)
        ris = RisSimulator("127.0.0.1", peer.port, store)
        msg = messages.oru_r01(report)
        ex = ris.send(msg, "cr")
        assert ex.error is None and read_ack(ex.ack).code == "AA" and ex.elapsed_s >= 0  # no timing: load varies
        assert peer.received[0] == msg.text.strip("\r").replace("\n", "")[: len(peer.received[0])]
        assert len(ex.evidence) == 2 and (tmp_path / ex.evidence[0]).read_text().startswith("MSH|")
    finally:
        peer.close()


def test_ris_bounded_wait_and_refused_connection(report) -> None:
    peer = _MllpPeer(lambda text: None)
    try:
        ex = RisSimulator("127.0.0.1", peer.port, timeout_s=0.5).send(messages.oru_r01(report))
        assert ex.ack is None and "acquittement" in ex.error
    finally:
        peer.close()
    ex = RisSimulator("127.0.0.1", peer.port, timeout_s=0.5).send(messages.oru_r01(report))
    assert ex.ack is None and ex.error


@pytest.mark.parametrize("start, ok", [(b"\x0b", True), (b"\r\n\x0b", True), (b"", False), (b"ACK\x0b", False)])
def test_ris_refuses_an_ack_frame_without_start_block(report, start, ok) -> None:
    """HL7 v2 MLLP (Release 2): a frame is <SB=0x0B> message <EB=0x1C><CR>. A real RIS's MLLP reader (HAPI's
    MinLLPReader) skips whitespace before the start block and refuses anything else; the simulator used to take
    an ACK without its start block."""
    peer = _MllpPeer(lambda text: source_hl7.ack(source_hl7.Message(text), "AA"), start=start)
    try:
        ex = RisSimulator("127.0.0.1", peer.port, timeout_s=5).send(messages.oru_r01(report))
    finally:
        peer.close()
    assert ex.ack is not None and ex.ack.startswith(b"MSH|")  # recorded either way
    if ok:
        assert ex.error is None and read_ack(ex.ack).code == "AA"
    else:
        assert ex.error and "0x0B" in ex.error


def test_ris_refuses_an_end_block_without_carriage_return(report) -> None:
    """MLLP: <EB=0x1C> is followed by <CR=0x0D>. The simulator used to wait for it until its deadline and report
    « aucun acquittement » ; a real RIS's reader refuses the frame at once."""
    peer = _MllpPeer(lambda text: source_hl7.ack(source_hl7.Message(text), "AA"), end=b"\x1c\x0a")
    try:
        ex = RisSimulator("127.0.0.1", peer.port, timeout_s=20).send(messages.oru_r01(report))
    finally:
        peer.close()
    assert ex.ack is None and "0x1C suivie de 0x0A" in ex.error
