"""DMP simulator, ``/patients`` service: TD0.2, the test of existence of a patient's DMP and of the access rights.

A Conso asks it before consulting a record (ANS PoC: ``VerifyAuthorizationRequest``, called by the
front end's ``CheckAccessService.td0_2`` before any query): HL7v3 ``PRPA_IN201307UV02`` with reasonCode
``TEST_EXST`` (1.2.250.1.213.1.1.4.11, « Test d'existence de dossier ») and the INS in
``patientIdentifier/value`` (root 1.2.250.1.213.1.4.10).

The answer's shape is **inferred**: no DMP response sample is public. It is an HL7v3 ``PRPA_IN201306UV02``
whose ``queryAck/queryResponseCode`` is ``OK`` (a record exists) or ``NF`` (none), and, when a record
exists, two observations: ``DOSSIER`` (``OUVERT`` / ``FERME``) and ``AUTORISATION`` (``VALIDE`` /
``INTERDIT``) — the PoC reads the value that follows the word ``AUTORISATION``, which this shape
satisfies.

The scenario sets the state of a patient's record (:data:`STATES`); a record not set is open and the
practitioner authorised. The registry side follows the record: ITI-18 and ITI-43 about a record that is
absent, closed or forbidden are refused (RegistryErrorList), as the real DMP refuses them.
"""

from __future__ import annotations

import time
import uuid
from xml.sax.saxutils import escape

from drimcheck import xds

DMP_DEVICE_OID = "1.2.250.1.213.4.1.1.1"

#: record state -> (queryResponseCode, DOSSIER, AUTORISATION)
STATES: dict[str, tuple[str, str | None, str | None]] = {
    "ouvert": ("OK", "OUVERT", "VALIDE"),
    "inexistant": ("NF", None, None),
    "ferme": ("OK", "FERME", "VALIDE"),
    "interdit": ("OK", "OUVERT", "INTERDIT"),
}
OPEN = "ouvert"

#: record state -> the XDS error a registry query about that patient gets
REGISTRY_REFUSALS: dict[str, tuple[str, str]] = {
    "inexistant": ("XDSPatientIdDoesNotExist", "aucun DMP pour ce patient"),
    "ferme": ("XDSRegistryError", "DMP du patient fermé : consultation impossible"),
    "interdit": ("XDSRegistryError", "accès au DMP du patient interdit à ce professionnel (autorisation INTERDIT)"),
}

__all__ = ["STATES", "OPEN", "REGISTRY_REFUSALS", "existence_response"]


def existence_response(relates_to: str, query: xds.PatientQuery | None, state: str, error: str | None = None) -> bytes:
    """The SOAP 1.2 answer to a TD0.2 for a record in ``state`` (or an AE acknowledgement with ``error``)."""
    code, dossier, autorisation = STATES[state]
    now = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    ack = "AE" if error else "AA"
    subject = ""
    if not error and code == "OK" and query is not None:
        obs = "".join(
            f'<subjectOf1 typeCode="SBJ"><observation classCode="OBS" moodCode="EVN"><code code="{name}"/>'
            f'<value xsi:type="CD" code="{value}"/></observation></subjectOf1>'
            for name, value in (("DOSSIER", dossier), ("AUTORISATION", autorisation)))
        subject = (
            '<subject typeCode="SUBJ"><registrationEvent classCode="REG" moodCode="EVN"><statusCode code="active"/>'
            '<subject1 typeCode="SBJ"><patient classCode="PAT">'
            f'<id root="{escape(query.root)}" extension="{escape(query.extension)}"/>'
            f'<statusCode code="{"active" if dossier == "OUVERT" else "terminated"}"/>{obs}</patient></subject1>'
            "</registrationEvent></subject>")
    detail = (f'<acknowledgementDetail typeCode="E"><text>{escape(error)}</text></acknowledgementDetail>'
              if error else "")
    response_code = "AE" if error else code
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{xds.NS["soap"]}" '
        f'xmlns:wsa="{xds.NS["wsa"]}"><soap:Header><wsa:Action soap:mustUnderstand="true">'
        "urn:hl7-org:v3:PRPA_IN201306UV02</wsa:Action>"
        f"<wsa:RelatesTo>{escape(relates_to)}</wsa:RelatesTo></soap:Header><soap:Body>"
        f'<PRPA_IN201306UV02 xmlns="{xds.HL7V3}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'ITSVersion="XML_1.0">'
        f'<id root="{DMP_DEVICE_OID}" extension="{uuid.uuid4()}"/><creationTime value="{now}"/>'
        '<interactionId root="2.16.840.1.113883.1.6" extension="PRPA_IN201306UV02"/>'
        '<processingCode code="P"/><processingModeCode code="T"/><acceptAckCode code="NE"/>'
        '<receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id root="1.3.6.1.4.1.48364"/>'
        "</device></receiver>"
        f'<sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="{DMP_DEVICE_OID}"/>'
        "<softwareName>DMP</softwareName></device></sender>"
        f'<acknowledgement><typeCode code="{ack}"/>{detail}</acknowledgement>'
        '<controlActProcess classCode="CACT" moodCode="EVN">'
        '<code code="PRPA_TE201306UV02" codeSystem="2.16.840.1.113883.1.6"/>'
        f"{subject}"
        f'<queryAck><queryResponseCode code="{response_code}"/></queryAck>'
        "</controlActProcess></PRPA_IN201306UV02></soap:Body></soap:Envelope>").encode()
