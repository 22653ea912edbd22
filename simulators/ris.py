"""RIS simulator: sends HL7 v2 messages over MLLP to the DUT and records each message with its ACK.

One TCP connection per message (as many RIS do); the wait for the ACK is bounded in time (``timeout_s``,
for the whole acknowledgement) and in size (``limits.MAX_MLLP_FRAME``: a DUT streaming bytes without an
end of frame is cut off, the exchange recorded with an error). An acknowledgement not framed as MLLP
(no start block 0x0B, or bytes other than whitespace before it) is recorded with an error, as a real RIS's
MLLP reader refuses it (docs/simulators.md). Nothing else is
judged here: the exchange (bytes sent, bytes received, timings, transport error) is recorded as
evidence and handed to the checks.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from drimcheck.limits import MAX_MLLP_FRAME, too_large

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"


class FrameTooLarge(Exception):
    """The DUT sent more than MAX_MLLP_FRAME bytes without ending its frame (str(): French message)."""


class MllpFrameError(Exception):
    """The DUT's acknowledgement is not framed as MLLP says (str(): French message)."""


@dataclass
class MllpExchange:
    label: str
    message_type: str
    control_id: str
    sent: bytes
    sent_at: float  # time.monotonic() when the message was sent
    ack: bytes | None = None
    acked_at: float | None = None
    error: str | None = None
    evidence: list[str] = field(default_factory=list)

    @property
    def elapsed_s(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at


class RisSimulator:
    """MLLP client towards the DUT's listener ([dut] mllp)."""

    def __init__(self, host: str, port: int, evidence: Any = None, *, timeout_s: float = 10.0,
                 max_frame: int = MAX_MLLP_FRAME):
        self.host, self.port = host, port
        self.evidence = evidence
        self.timeout_s = timeout_s
        self.max_frame = max_frame  # bytes of the DUT's acknowledgement frame (drimcheck/limits.py)
        self.history: list[MllpExchange] = []

    def send(self, message: Any, label: str = "") -> MllpExchange:
        """Send one message (fixtures.hl7.Hl7Message, str or bytes); returns the exchange, never raises."""
        data = message if isinstance(message, bytes) else message.encode()  # str or Hl7Message: UTF-8
        mtype = getattr(message, "message_type", "")
        control = getattr(message, "control_id", "")
        ex = MllpExchange(label or mtype or "hl7", mtype, control, data, time.monotonic())
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout_s) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(SB + data + EB + CR)
                deadline = time.monotonic() + self.timeout_s
                buffer = bytearray()
                end = -1
                while end < 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"aucun acquittement dans les {self.timeout_s:g} s")
                    sock.settimeout(left)
                    try:
                        chunk = sock.recv(min(65536, self.max_frame + 2 - len(buffer)))
                    except TimeoutError:
                        raise TimeoutError(f"aucun acquittement dans les {self.timeout_s:g} s") from None
                    if not chunk:
                        raise ConnectionError("connexion fermée par la DRIMbox sans acquittement complet")
                    seen = max(0, len(buffer) - 1)  # the end marker may straddle two reads
                    buffer += chunk
                    end = buffer.find(EB + CR, seen)
                    stray = buffer.find(EB, seen)
                    if end < 0 and 0 <= stray < len(buffer) - 1:
                        # MLLP: the end block 0x1C is followed by CR 0x0D; a real RIS's reader (HAPI) refuses
                        # anything else at once instead of waiting for more
                        raise MllpFrameError("trame MLLP non conforme : fin de bloc 0x1C suivie de "
                                             f"0x{buffer[stray + 1]:02X} au lieu de 0x0D")
                    if end < 0 and len(buffer) > self.max_frame:
                        raise FrameTooLarge(too_large("acquittement MLLP trop volumineux", self.max_frame)
                                            + " sans fin de trame (0x1C 0x0D)")
                frame = bytes(buffer[:end])
                start = frame.find(SB)
                ex.ack = frame[start + 1:] if start >= 0 else frame
                ex.acked_at = time.monotonic()
                if start < 0 or frame[:start].strip(b" \t\r\n"):
                    # MLLP Release 2: <SB> message <EB><CR>. A real RIS's reader (HAPI MinLLPReader) skips
                    # whitespace before the start block and refuses anything else: so does this one.
                    ex.error = ("trame MLLP non conforme : acquittement sans caractère de début de bloc 0x0B"
                                if start < 0 else f"trame MLLP non conforme : {start} octet(s) avant le début de bloc 0x0B")
        except (FrameTooLarge, MllpFrameError) as exc:
            ex.error = str(exc)
        except TimeoutError as exc:
            ex.error = str(exc) if "acquittement" in str(exc) else f"connexion impossible en {self.timeout_s:g} s"
        except OSError as exc:
            ex.error = f"{type(exc).__name__}: {exc.strerror or exc}"
        self._record(ex, getattr(message, "description", ""))
        self.history.append(ex)
        return ex

    def _record(self, ex: MllpExchange, description: str) -> None:
        if self.evidence is None:
            return
        text = ex.sent.decode("utf-8", "replace").replace("\r", "\n")
        ex.evidence.append(self.evidence.write_text(f"hl7-{ex.label}", text, ".hl7"))
        ex.evidence.append(self.evidence.write_json(f"hl7-{ex.label}-ack", {
            "description": description, "message_type": ex.message_type, "control_id": ex.control_id,
            "target": f"{self.host}:{self.port}", "ack": ex.ack.decode("utf-8", "replace").replace("\r", "\n") if ex.ack else None,
            "elapsed_s": round(ex.elapsed_s, 3) if ex.elapsed_s is not None else None, "error": ex.error}))
