"""Unit tests of drimcheck.wado (Accept negotiation, multipart splitting) and drimcheck.jose (RS256 JWTs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from drimcheck import jose
from drimcheck.wado import (
    ANS_SAMPLE_ACCEPT, EXPLICIT_VR_LE, AcceptError, MultipartError, MultipartReader, check_drimbox_accept,
    dicom_accept, iter_parts, negotiate, parse_accept, parse_media_type, part_sop_uid,
)
from simulators.peer_source import SUPPORTED_SYNTAXES

ANS_SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "ans" / "wado-rs" / "requete-wado-rs-serie.txt"
JPEG_LOSSLESS, JPEG_LS, J2K = "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.91"


# ----------------------------------------------------------------------------------------- Accept


def test_ans_sample_accept_constant_is_the_sample_verbatim() -> None:
    line = next(l for l in ANS_SAMPLE.read_text().splitlines() if l.startswith("Accept:"))
    assert line[len("Accept:"):] == ANS_SAMPLE_ACCEPT


def test_parses_the_ans_sample_with_its_trailing_comma() -> None:
    ranges = parse_accept(ANS_SAMPLE_ACCEPT)
    assert len(ranges) == 10
    assert [r.transfer_syntax for r in ranges][:3] == [JPEG_LOSSLESS, JPEG_LS, J2K]
    assert [r.q for r in ranges][:3] == [0.9, 0.8, 0.6]
    assert all(r.boundary == "**" and r.is_dicom() for r in ranges)
    check_drimbox_accept(ranges)  # the PoC accepts it


def test_negotiation_orders_by_q_then_client_order_and_skips_unsupported() -> None:
    assert negotiate(parse_accept(ANS_SAMPLE_ACCEPT), SUPPORTED_SYNTAXES) == [
        JPEG_LOSSLESS, JPEG_LS, "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", EXPLICIT_VR_LE]
    ties = dicom_accept(("1.2.840.10008.1.2.4.57", 0.5), (JPEG_LOSSLESS, 0.5), (JPEG_LS, 0.7))
    assert negotiate(parse_accept(ties), SUPPORTED_SYNTAXES) == [JPEG_LS, "1.2.840.10008.1.2.4.57", JPEG_LOSSLESS]


def test_negotiation_q_zero_wildcard_default_and_foreign_media_types() -> None:
    assert negotiate(parse_accept(dicom_accept((JPEG_LS, 0), (EXPLICIT_VR_LE, 0.1))), SUPPORTED_SYNTAXES) == \
        [EXPLICIT_VR_LE]
    assert negotiate(parse_accept(dicom_accept(("*", 1))), SUPPORTED_SYNTAXES) == [SUPPORTED_SYNTAXES[0]]
    # no transfer-syntax parameter: PS3.18 default (Explicit VR LE)
    assert negotiate(parse_accept('multipart/related; type="application/dicom"'), SUPPORTED_SYNTAXES) == \
        [EXPLICIT_VR_LE]
    other = 'application/json;transfer-syntax=1.2.840.10008.1.2.1;q=1, multipart/related; type="image/jpeg";q=1'
    assert negotiate(parse_accept(other), SUPPORTED_SYNTAXES) == []
    assert negotiate(parse_accept(dicom_accept((J2K, 0.9))), SUPPORTED_SYNTAXES) == []


@pytest.mark.parametrize("value, message", [
    ('multipart/related; type="application/dicom";q=0.9;boundary=**', "transfer-syntax absent"),
    ('multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.1;boundary=**', "q absent"),
    ('multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.1;q=0.4', "boundary absent"),
])
def test_poc_rules_reject_incomplete_elements(value: str, message: str) -> None:
    with pytest.raises(AcceptError, match=message):
        check_drimbox_accept(parse_accept(value))


def test_poc_rules_need_boundary_in_the_first_element_only() -> None:
    check_drimbox_accept(parse_accept(dicom_accept((JPEG_LS, 0.9)) + "," + dicom_accept((JPEG_LOSSLESS, 0.5),
                                                                                        boundary=None)))


@pytest.mark.parametrize("value, message", [
    (None, "missing"), ("  ", "missing"), (" , ,", "empty"),
    ("multipart", "not a media range"),
    ('multipart/related; type="application/dicom', "unterminated"),
    ("multipart/related;q=2", "invalid q"), ("multipart/related;q=0.12345", "invalid q"),
    ("multipart/related;q=abc", "invalid q"),
    ("multipart/related;transfer-syntax=jpeg;q=1", "invalid transfer-syntax"),
    ("multipart/related;transfer-syntax", "malformed parameter"),
    ("multipart/related;transfer-syntax=;q=1", "malformed parameter"),
])
def test_malformed_accept_values(value, message: str) -> None:
    with pytest.raises(AcceptError, match=message):
        parse_accept(value)


def test_media_type_parameters_are_unquoted_and_lower_cased() -> None:
    media, params = parse_media_type('Multipart/Related; Type="application/dicom"; boundary="a b;c"')
    assert media == "multipart/related" and params == {"type": "application/dicom", "boundary": "a b;c"}


# ----------------------------------------------------------------------------------------- multipart


def _multipart(bodies: list[bytes], boundary: str = "b0und4ry", *, lengths: bool = True, preamble: bytes = b"") -> bytes:
    out = preamble
    for body in bodies:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n".encode()
        if lengths:
            out += f"Content-Length: {len(body)}\r\n".encode()
        out += b"\r\n" + body + b"\r\n"
    return out + f"--{boundary}--\r\nepilogue".encode()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("lengths", [True, False])
def test_multipart_reader_any_chunking(chunk: int, lengths: bool) -> None:
    bodies = [b"\x00" * 300, b"--b0und4ry not at line start\r\n--b0und4r", b"", bytes(range(256)) * 3]
    data = _multipart(bodies, lengths=lengths, preamble=b"preamble\r\n")
    parts = list(iter_parts((data[i:i + chunk] for i in range(0, len(data), chunk)), "b0und4ry"))
    assert [p.body for p in parts] == bodies
    assert all(p.content_type == "application/dicom" for p in parts)


def test_multipart_wrong_content_length_falls_back_to_scanning() -> None:
    data = b"--B\r\nContent-Length: 3\r\n\r\nhello\r\n--B--\r\n"
    assert [p.body for p in iter_parts([data], "B")] == [b"hello"]


def test_multipart_truncated_and_garbage() -> None:
    with pytest.raises(MultipartError, match="truncated"):
        list(iter_parts([b"--B\r\n\r\nabc\r\n"], "B"))
    with pytest.raises(MultipartError, match="garbage"):
        MultipartReader("B").feed(b"--Bxyz\r\n\r\n")
    part = MultipartReader("B").feed(b"--B\r\n\r\nno headers\r\n--B--")
    assert part[0].headers == {} and part[0].body == b"no headers"


def test_part_sop_uid_reads_the_file_meta() -> None:
    from simulators.pacs import make_study
    from simulators.pacs.orthanc import encode_dataset

    ds = next(make_study("sop-uid", n_series=1, n_instances=1).datasets())
    assert part_sop_uid(encode_dataset(ds)) == ds.SOPInstanceUID
    assert part_sop_uid(b"\x00" * 200) is None


# ----------------------------------------------------------------------------------------- JOSE


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_rs256_round_trip_and_tampering(key) -> None:
    jwk = jose.public_jwk(key)
    token = jose.sign_rs256({"sub": "x", "n": 1}, key, kid=jwk["kid"])
    assert jose.verify_rs256(token, {"keys": [jwk]}) == {"sub": "x", "n": 1}
    assert jose.verify_rs256(token, key.public_key())["sub"] == "x"
    header, claims = jose.decode_unverified(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": jwk["kid"]}
    h, p, s = token.split(".")
    forged = h + "." + jose.b64url(json.dumps({"sub": "y", "n": 1}).encode()) + "." + s
    with pytest.raises(jose.JoseError, match="does not verify"):
        jose.verify_rs256(forged, {"keys": [jwk]})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(jose.JoseError, match="no unique RSA key"):
        jose.verify_rs256(jose.sign_rs256({}, other, kid="other"), {"keys": [jwk]})
    for bad in ("abc", "a.b", "!!.e30.x", jose.b64url(b"[]") + ".e30.x"):
        with pytest.raises(jose.JoseError):
            jose.decode_unverified(bad)
    none_alg = jose.b64url(b'{"alg":"none"}') + "." + jose.b64url(b"{}") + "."
    with pytest.raises(jose.JoseError, match="unsupported alg"):
        jose.verify_rs256(none_alg + "x", key.public_key())


def test_jwk_thumbprint_matches_rfc7638_example() -> None:
    jwk = {"kty": "RSA", "e": "AQAB", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
        "hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQ"
        "vRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")}
    assert jose.jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    key = jose.key_from_jwk(jwk)
    assert jose.public_jwk(key)["kid"] == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_at_hash_and_fingerprint() -> None:
    # OIDC Core A.3 example: access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y" -> at_hash "77QmUPtjPfzWtF2AnpK9RQ"
    assert jose.at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y") == "77QmUPtjPfzWtF2AnpK9RQ"
    assert jose.fingerprint("abc") == jose.fingerprint("abc") != jose.fingerprint("abd")
    assert len(jose.fingerprint("abc")) == 32


# ----------------------------------------------------------------------------------------- PS3.18 §8.7 forms


def test_acceptable_syntaxes_follow_ps318_defaults() -> None:
    from drimcheck.wado import acceptable_syntaxes

    assert acceptable_syntaxes(parse_accept('multipart/related; type="application/dicom"')) == {EXPLICIT_VR_LE}
    assert acceptable_syntaxes(parse_accept("*/*")) == {EXPLICIT_VR_LE}
    assert acceptable_syntaxes(parse_accept('multipart/related; type="application/dicom"; transfer-syntax=*')) == {"*"}
    assert acceptable_syntaxes(parse_accept(dicom_accept((JPEG_LS, 0), (JPEG_LOSSLESS, 0.5)))) == {JPEG_LOSSLESS}
    assert acceptable_syntaxes(parse_accept("application/json")) == set()
    assert JPEG_LOSSLESS in acceptable_syntaxes(parse_accept(ANS_SAMPLE_ACCEPT))


STANDARD_FORMS = [
    'multipart/related; type="application/dicom"',
    'multipart/related; type="application/dicom"; transfer-syntax=*',
    f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_LOSSLESS}',
    f'multipart/related; type="application/dicom"; transfer-syntax={J2K}, '
    f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_LS}',
    "*/*", ANS_SAMPLE_ACCEPT, dicom_accept((JPEG_LS, 0), (EXPLICIT_VR_LE, 0.1)), "application/json",
]


@pytest.mark.parametrize("accept", STANDARD_FORMS)
def test_the_reference_source_negotiates_like_the_peer_simulator(accept: str) -> None:
    """The reference's own parser (no harness import) picks the same first syntax as drimcheck.wado."""
    from simulators.drimbox import wado as reference

    mine = negotiate(parse_accept(accept), SUPPORTED_SYNTAXES)
    theirs = reference.negotiate(reference.parse_accept(accept), SUPPORTED_SYNTAXES)
    assert theirs[:1] == mine[:1] and set(mine) <= set(theirs)
    assert reference.accept_problem(accept) is None


# ----------------------------------------------------------------------------------------- WADO-02 check


def _dicom(uid: str, ts: str) -> bytes:
    import io

    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = uid
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _answer(ts: str, *, top: str | None = None, part: str | None = None, status: int = 200, n: int = 2):
    from drimcheck.net import Exchange

    body = b""
    for i in range(n):
        ctype = "application/dicom" + (f"; transfer-syntax={part}" if part else "")
        body += f"--b\r\nContent-Type: {ctype}\r\n\r\n".encode() + _dicom(f"1.2.3.{i}", ts) + b"\r\n"
    body += b"--b--\r\n"
    ctype = 'multipart/related; type="application/dicom"' + (f"; transfer-syntax={top}" if top else "") + "; boundary=b"
    return Exchange("t", "GET", "https://x/", "x", "now", [], status=status,
                    response_headers=[("content-type", ctype)], response_body=body)


def _err(status: int):
    from drimcheck.net import Exchange

    return Exchange("t", "GET", "https://x/", "x", "now", [], status=status,
                    response_headers=[("content-type", "text/plain")], response_body=b"non")


def _wado02(ex, accept: str, control=None):
    from drimcheck.checks.conso import transfer_syntax_honoured

    return [f.verdict.value for f in transfer_syntax_honoured(ex, "cas", accept, control or _answer(EXPLICIT_VR_LE))]


ONLY_JPEG = dicom_accept((JPEG_LOSSLESS, 0.9))
DEFAULT = 'multipart/related; type="application/dicom"'


def test_wado02_accepted_and_declared_syntax_passes() -> None:
    assert _wado02(_answer(JPEG_LOSSLESS, top=JPEG_LOSSLESS, part=JPEG_LOSSLESS), ONLY_JPEG) == ["PASS"]
    assert _wado02(_answer(JPEG_LOSSLESS, part=JPEG_LOSSLESS), ONLY_JPEG) == ["PASS"]  # on each part only
    assert _wado02(_answer(JPEG_LOSSLESS, top=JPEG_LOSSLESS), ONLY_JPEG) == ["PASS"]  # on the response only
    assert _wado02(_answer(EXPLICIT_VR_LE), DEFAULT) == ["PASS"]  # Explicit VR LE: declaring it is optional
    assert _wado02(_answer(JPEG_LS, top=JPEG_LS), DEFAULT + "; transfer-syntax=*") == ["PASS"]
    assert _wado02(_err(406), ONLY_JPEG) == ["PASS"]  # nothing acceptable available: 406 is conformant


def test_wado02_failures() -> None:
    # the mutant src-wado-ts-ignored: Explicit VR LE whatever was asked, declared nowhere
    assert _wado02(_answer(EXPLICIT_VR_LE), ONLY_JPEG) == ["FAIL"]
    assert _wado02(_answer(JPEG_LOSSLESS), ONLY_JPEG) == ["FAIL"]  # compressed, not declared
    assert _wado02(_answer(JPEG_LOSSLESS, top=JPEG_LS, part=JPEG_LS), ONLY_JPEG) == ["FAIL"]  # declared != actual
    assert _wado02(_answer(JPEG_LOSSLESS, top=JPEG_LOSSLESS), DEFAULT) == ["FAIL"]  # default means Explicit VR LE
    assert _wado02(_err(406), DEFAULT) == ["FAIL"]  # Explicit VR LE accepted: always available
    assert _wado02(_err(500), ONLY_JPEG) == ["FAIL"]


def test_wado02_standard_accept_refused_with_400_is_a_warning_and_no_control_is_inconclusive() -> None:
    assert _wado02(_err(400), DEFAULT) == ["WARN"]
    assert _wado02(_answer(JPEG_LOSSLESS, top=JPEG_LOSSLESS), ONLY_JPEG, control=_err(500)) == ["SKIP"]
