"""Reading HL7 v2 acknowledgements (harness side): what the DUT answered the RIS."""

from __future__ import annotations

from dataclasses import dataclass

ACK_CODES = ("AA", "AE", "AR", "CA", "CE", "CR")


@dataclass(frozen=True)
class Ack:
    code: str | None  # MSA-1, None when the ACK is unreadable
    control_id: str  # MSA-2: the control id of the acknowledged message
    text: str  # MSA-3 / ERR text
    problem: str | None = None  # why the ACK is not a readable HL7 ACK

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")

    @property
    def error(self) -> bool:
        return self.code in ("AE", "AR", "CE", "CR")


def segments(text: str) -> list[list[str]]:
    lines = [ln for ln in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if ln.strip()]
    out = []
    for ln in lines:
        sep = ln[3] if ln.startswith("MSH") and len(ln) > 3 else "|"
        parts = ln.split(sep)
        if parts[0] == "MSH":
            parts = ["MSH", sep] + parts[1:]
        out.append(parts)
    return out


def read_ack(raw: bytes | None) -> Ack:
    if not raw:
        return Ack(None, "", "", "aucun acquittement reçu")
    text = raw.decode("utf-8", "replace")
    segs = segments(text)
    if not segs or segs[0][0] != "MSH":
        return Ack(None, "", "", "acquittement sans segment MSH")
    msa = next((s for s in segs if s[0] == "MSA"), None)
    if msa is None:
        return Ack(None, "", "", "acquittement sans segment MSA")
    code = msa[1] if len(msa) > 1 else ""
    err = next((s for s in segs if s[0] == "ERR"), None)
    detail = (msa[3] if len(msa) > 3 else "") or (err[8] if err is not None and len(err) > 8 else "")
    if code not in ACK_CODES:
        return Ack(None, msa[2] if len(msa) > 2 else "", detail, f"MSA-1 « {code} » n'est pas un code d'acquittement")
    return Ack(code, msa[2] if len(msa) > 2 else "", detail)
