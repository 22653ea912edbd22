"""Run directories and the referencing package.

* `prepare_run_dir`: `--out` must be empty (or absent); `--force` empties it first, only if it is a
  drimcheck run directory and never a system, home, working or repository directory.
* `build_package`: `drimcheck run --referencement` writes one `.zip` (reports, evidence, sut.toml,
  effective configuration, dut-settings.json of the kit if any, tool versions) with a SHA-256 manifest
  (`manifest.sha256`, `sha256sum -c` format), optionally signed by the operator: a CMS (RFC 5652)
  detached SignedData in DER, `manifest.sha256.p7s` (`openssl cms -verify -binary -inform DER
  -content manifest.sha256 -in manifest.sha256.p7s` checks it too).
* `verify_cms_detached`: the signature check `drimcheck verify-package` uses (a small DER reader:
  cryptography can sign CMS but does not verify it).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from drimcheck.evidence import REDACTED, redact_text, redact_value

MARKER = ".drimcheck-run"  # written at the start of every run: this directory is drimcheck's to empty
RUN_ARTEFACTS = {MARKER, "results.json", "report.html", "junit.xml", "evidence"}
PACKAGE_GLOB = "referencement-*.zip"
MANIFEST = "manifest.sha256"
SIGNATURE = "manifest.sha256.p7s"
#: files every referencing package holds (besides evidence/ and the optional dut-settings.json)
REQUIRED_FILES = ("report.html", "results.json", "junit.xml", "sut.toml", "configuration.json", "versions.json")
SIGN_KEY_PASSWORD_ENV = "DRIMCHECK_SIGN_KEY_PASSWORD"


class PackageError(ValueError):
    """A run directory, signing material or package problem, said in one French line."""


# ----------------------------------------------------------------------------------- run directory
def _protected_dirs() -> set[Path]:
    repo = Path(__file__).resolve().parent.parent
    out = {Path("/"), Path.home().resolve(), Path.cwd().resolve(), repo}
    for p in list(out):
        out.update(p.parents)
    return out


def prepare_run_dir(path: Path, *, force: bool) -> None:
    """Make `path` an empty run directory, or raise PackageError (the CLI exits 2 with its message)."""
    if path.is_symlink():
        raise PackageError(f"--out {path} est un lien symbolique : donnez le dossier réel")
    if path.exists() and not path.is_dir():
        raise PackageError(f"--out {path} existe et n'est pas un dossier")
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER).write_text("drimcheck run directory\n", encoding="utf-8")
        return
    if not force:
        raise PackageError(f"le dossier --out {path} n'est pas vide (résultats d'une autre exécution ?) : "
                           "choisissez un dossier vide, ou ajoutez --force pour le vider")
    resolved = path.resolve()
    if resolved in _protected_dirs() or len(resolved.parts) < 3:
        raise PackageError(f"--force refusé : {resolved} est un dossier système, personnel, de travail ou du dépôt")
    entries = list(resolved.iterdir())
    if not (resolved / MARKER).is_file():
        foreign = sorted(e.name for e in entries
                         if e.name not in RUN_ARTEFACTS and not Path(e.name).match(PACKAGE_GLOB))
        if foreign or not entries:
            raise PackageError(f"--force refusé : {resolved} ne ressemble pas à un dossier de rapport drimcheck "
                               f"(contient {', '.join(foreign[:3])}) ; videz-le vous-même")
    for e in entries:
        if os.path.ismount(e):
            raise PackageError(f"--force refusé : {e} est un point de montage")
    for e in entries:
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e)
        else:
            e.unlink()
    (resolved / MARKER).write_text("drimcheck run directory\n", encoding="utf-8")


# ----------------------------------------------------------------------------------- package content
def sut_source_bytes(sut) -> bytes:
    """The bytes of the sut.toml the campaign ran with (the embedded description for the reference)."""
    from drimcheck.config import reference_text

    path = Path(sut.source_file)
    if sut.source_file.startswith("<") or not path.is_file():
        return reference_text().encode("utf-8")
    return path.read_bytes()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _command_version(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return lines[0] if lines else None


def tool_versions() -> dict[str, Any]:
    from drimcheck import __version__, catalogue
    from drimcheck.kos import dciodvfy_path

    out: dict[str, Any] = {"drimcheck": __version__, "catalogue": catalogue.load().version,
                           "python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("pydicom", "pynetdicom", "httpx", "lxml", "xmlsec", "cryptography", "pytest", "pytest-bdd"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    orthanc = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    version = _command_version([orthanc, "--version"]) if orthanc else None
    out["orthanc"] = version.replace(orthanc, "Orthanc", 1) if version and orthanc else None
    dciodvfy = dciodvfy_path()
    out["dciodvfy"] = _command_version([dciodvfy, "-version"]) if dciodvfy else None
    out["openssl"] = _command_version(["openssl", "version"])
    out["xmlsec1"] = _command_version(["xmlsec1", "--version"])
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def effective_configuration(sut, result) -> dict[str, Any]:
    """What the campaign ran with: SUT description as loaded, effective timeouts with their bounds, mode."""
    return {
        "sut": result.sut,
        "network": {fqdn: {"https": _jsonable(ep.https), "http": _jsonable(ep.http)} for fqdn, ep in sut.network.items()},
        "simulators": _jsonable(sut.simulators),
        "dut": _jsonable(sut.dut),
        "hooks": sorted(sut.hooks),
        "trust_anchors": [str(p) for p in sut.trust_anchors],
        "pki_kit": _jsonable(getattr(sut, "pki_kit", None)),
        "strict": result.strict,
        "campaign": result.campaign_dict(),
    }


_TOML_SECRET = re.compile(r'^(\s*(?:[A-Za-z0-9_-]*(?:password|secret|passwd|token)[A-Za-z0-9_-]*)\s*=\s*)(["\']).*?\2',
                          re.IGNORECASE | re.MULTILINE)


def redact_toml(data: bytes) -> bytes:
    """sut.toml as handed over in a package: secret-named values and URL userinfo masked (the package is meant
    to be shared; the SHA-256 of the file as given stays in results.json)."""
    text = data.decode("utf-8", errors="replace")
    text = _TOML_SECRET.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    return redact_text(text).encode("utf-8")


def manifest_text(files: dict[str, bytes]) -> bytes:
    """`sha256sum` format, sorted by path."""
    return "".join(f"{sha256_hex(data)}  {name}\n" for name, data in sorted(files.items())).encode("utf-8")


# ----------------------------------------------------------------------------------- signing
@dataclass(frozen=True)
class Signer:
    certificate: x509.Certificate
    key: Any


def load_signer(cert_path: Path, key_path: Path) -> Signer:
    """The operator's certificate and private key (PEM or DER; key password in $DRIMCHECK_SIGN_KEY_PASSWORD)."""
    try:
        cert_data, key_data = cert_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        raise PackageError(f"certificat ou clé de signature illisible : {exc.filename}: {exc.strerror}") from None
    try:
        cert = (x509.load_pem_x509_certificate if b"-----BEGIN" in cert_data else x509.load_der_x509_certificate)(cert_data)
    except ValueError:
        raise PackageError(f"{cert_path} n'est pas un certificat X.509 (PEM ou DER)") from None
    password = os.environ.get(SIGN_KEY_PASSWORD_ENV)
    try:
        loader = serialization.load_pem_private_key if b"-----BEGIN" in key_data else serialization.load_der_private_key
        key = loader(key_data, password.encode() if password else None)
    except TypeError:
        raise PackageError(f"{key_path} est chiffrée : donnez son mot de passe dans ${SIGN_KEY_PASSWORD_ENV}") from None
    except ValueError:
        raise PackageError(f"{key_path} n'est pas une clé privée lisible (PEM ou DER, mot de passe correct ?)") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise PackageError(f"{key_path} : seules les clés RSA et EC sont prises en charge")
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise PackageError(f"la clé {key_path} ne correspond pas au certificat {cert_path}")
    return Signer(cert, key)


def sign_manifest(manifest: bytes, signer: Signer) -> bytes:
    """CMS detached SignedData (DER) over the manifest bytes, SHA-256, signer certificate included."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    return (pkcs7.PKCS7SignatureBuilder().set_data(manifest)
            .add_signer(signer.certificate, signer.key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))


# ----------------------------------------------------------------------------------- package
def package_name(result) -> str:
    return f"referencement-{re.sub(r'[^A-Za-z0-9._-]+', '_', result.run_id)}.zip"


def build_package(run_dir: Path, result, sut, *, sut_bytes: bytes, signer: Signer | None = None) -> Path:
    """Write `referencement-<run>.zip` into run_dir from the reports already written there."""
    files: dict[str, bytes] = {}
    for name in ("report.html", "results.json", "junit.xml"):
        files[name] = (run_dir / name).read_bytes()
    evidence = run_dir / "evidence"
    if evidence.is_dir():
        for p in sorted(evidence.rglob("*")):
            if p.is_file() and not p.is_symlink():
                files[p.relative_to(run_dir).as_posix()] = p.read_bytes()
    files["sut.toml"] = redact_toml(sut_bytes)  # results.json keeps the SHA-256 of the file as given
    files["configuration.json"] = json.dumps(redact_value(effective_configuration(sut, result)), ensure_ascii=False,
                                             indent=2).encode("utf-8")
    files["versions.json"] = json.dumps(tool_versions(), ensure_ascii=False, indent=2).encode("utf-8")
    kit = getattr(sut, "pki_kit", None)
    settings = Path(kit) / "dut" / "dut-settings.json" if kit else None
    if settings is not None and settings.is_file():  # layout of `drimcheck kit` (drimcheck/kit.py)
        try:
            files["dut-settings.json"] = json.dumps(redact_value(json.loads(settings.read_bytes())), ensure_ascii=False,
                                                    indent=2).encode("utf-8")
        except (ValueError, UnicodeDecodeError):
            pass  # not the kit's document: nothing to hand over
    manifest = manifest_text(files)
    target = run_dir / package_name(result)
    tmp = target.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(name, data)
        zf.writestr(MANIFEST, manifest)
        if signer is not None:
            zf.writestr(SIGNATURE, sign_manifest(manifest, signer))
    tmp.replace(target)
    return target


# ----------------------------------------------------------------------------------- CMS verification
class CmsError(ValueError):
    """The CMS signature is malformed, unsupported or does not verify (French message)."""


OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_DATA = "1.2.840.113549.1.7.1"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
DIGESTS: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256, "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512}
RSA_SIGS: dict[str, Callable[[], hashes.HashAlgorithm] | None] = {"1.2.840.113549.1.1.1": None, "1.2.840.113549.1.1.11": hashes.SHA256,
            "1.2.840.113549.1.1.12": hashes.SHA384, "1.2.840.113549.1.1.13": hashes.SHA512}
EC_SIGS: dict[str, Callable[[], hashes.HashAlgorithm] | None] = {"1.2.840.10045.2.1": None, "1.2.840.10045.4.3.2": hashes.SHA256,
           "1.2.840.10045.4.3.3": hashes.SHA384, "1.2.840.10045.4.3.4": hashes.SHA512}


@dataclass(frozen=True)
class _Tlv:
    tag: int
    start: int  # first byte of the tag
    body: int  # first byte of the content
    end: int  # one past the content

    def raw(self, data: bytes) -> bytes:
        return data[self.start:self.end]

    def content(self, data: bytes) -> bytes:
        return data[self.body:self.end]


def _read(data: bytes, pos: int, limit: int) -> _Tlv:
    start = pos
    if pos + 2 > limit:
        raise CmsError("signature CMS tronquée")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise CmsError("signature CMS : étiquette ASN.1 non prise en charge")
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > limit:
            raise CmsError("signature CMS : longueur ASN.1 invalide (DER attendu)")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > limit:
        raise CmsError("signature CMS tronquée")
    return _Tlv(tag, start, pos, pos + length)


def _children(data: bytes, node: _Tlv) -> list[_Tlv]:
    out, pos = [], node.body
    while pos < node.end:
        child = _read(data, pos, node.end)
        out.append(child)
        pos = child.end
    return out


def _oid(data: bytes, node: _Tlv) -> str:
    if node.tag != 0x06:
        raise CmsError("signature CMS : identifiant d'objet attendu")
    raw = node.content(data)
    if not raw:
        raise CmsError("signature CMS : identifiant d'objet vide")
    arcs, value = [], 0
    for b in raw:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _expect(node: _Tlv, tag: int, what: str) -> _Tlv:
    if node.tag != tag:
        raise CmsError(f"signature CMS : {what} attendu")
    return node


@dataclass(frozen=True)
class CmsSigner:
    certificate: x509.Certificate
    signing_time: str | None

    def describe(self) -> dict[str, Any]:
        c = self.certificate
        return {"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
                "serial": format(c.serial_number, "x"),
                "sha256": c.fingerprint(hashes.SHA256()).hex(),
                "not_before": c.not_valid_before_utc.isoformat(), "not_after": c.not_valid_after_utc.isoformat(),
                "signing_time": self.signing_time}


def _time(data: bytes, node: _Tlv) -> str | None:
    text = node.content(data).decode("ascii", "replace")
    try:
        if node.tag == 0x17:
            return datetime.strptime(text, "%y%m%d%H%M%SZ").replace(tzinfo=UTC).isoformat()
        if node.tag == 0x18:
            return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return None
    return None


def _issuer_and_serial(cert_der: bytes) -> tuple[bytes, bytes]:
    cert = _read(cert_der, 0, len(cert_der))
    tbs = _children(cert_der, _children(cert_der, cert)[0])
    i = 1 if tbs[0].tag == 0xA0 else 0
    return tbs[i + 2].raw(cert_der), tbs[i].content(cert_der)


def verify_cms_detached(signature: bytes, content: bytes) -> CmsSigner:
    """Verify a CMS detached SignedData over `content`; return its signer, or raise CmsError (French)."""
    try:
        return _verify_cms_detached(signature, content)
    except CmsError:
        raise
    except (IndexError, ValueError, TypeError) as exc:
        raise CmsError(f"signature CMS illisible ({type(exc).__name__})") from None


def _verify_cms_detached(signature: bytes, content: bytes) -> CmsSigner:
    data = signature
    top = _expect(_read(data, 0, len(data)), 0x30, "ContentInfo")
    if top.end != len(data):
        raise CmsError("signature CMS : octets en trop après la structure")
    ci = _children(data, top)
    if len(ci) != 2 or _oid(data, ci[0]) != OID_SIGNED_DATA or ci[1].tag != 0xA0:
        raise CmsError("la signature n'est pas une structure CMS SignedData")
    sd = _children(data, _expect(_children(data, ci[1])[0], 0x30, "SignedData"))
    encap = _children(data, _expect(sd[2], 0x30, "EncapsulatedContentInfo"))
    if _oid(data, encap[0]) != OID_DATA:
        raise CmsError("signature CMS : type de contenu inattendu")
    if len(encap) > 1:
        raise CmsError("signature CMS non détachée (le contenu signé est inclus)")
    certs: list[bytes] = []
    signer_infos = None
    for node in sd[3:]:
        if node.tag == 0xA0:
            certs = [c.raw(data) for c in _children(data, node) if c.tag == 0x30]
        elif node.tag == 0x31:
            signer_infos = _children(data, node)
    if not signer_infos or len(signer_infos) != 1:
        raise CmsError("signature CMS : exactement un signataire attendu")
    si = _children(data, _expect(signer_infos[0], 0x30, "SignerInfo"))
    sid, digest_alg = si[1], _oid(data, _children(data, si[2])[0])
    rest = si[3:]
    signed_attrs = rest.pop(0) if rest and rest[0].tag == 0xA0 else None
    if len(rest) < 2:
        raise CmsError("signature CMS : SignerInfo incomplet")
    sig_alg, sig_value = _oid(data, _children(data, rest[0])[0]), _expect(rest[1], 0x04, "signature").content(data)
    if digest_alg not in DIGESTS:
        raise CmsError(f"signature CMS : algorithme d'empreinte non pris en charge ({digest_alg})")
    digest_cls = DIGESTS[digest_alg]

    # the signer's certificate: issuerAndSerialNumber, or [0] subjectKeyIdentifier
    cert = None
    for der in certs:
        candidate = x509.load_der_x509_certificate(der)
        if sid.tag == 0x30:
            issuer, serial = _children(data, sid)
            if (issuer.raw(data), serial.content(data)) == _issuer_and_serial(der):
                cert = candidate
        elif sid.tag == 0x80:
            try:
                ski = candidate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                continue
            if ski == sid.content(data):
                cert = candidate
        if cert is not None:
            break
    if cert is None:
        raise CmsError("signature CMS : le certificat du signataire n'est pas inclus")

    signing_time = None
    if signed_attrs is not None:
        attrs: dict[str, list[_Tlv]] = {}
        for attr in _children(data, signed_attrs):
            parts = _children(data, attr)
            attrs[_oid(data, parts[0])] = _children(data, _expect(parts[1], 0x31, "valeurs d'attribut"))
        if OID_MESSAGE_DIGEST not in attrs or OID_CONTENT_TYPE not in attrs:
            raise CmsError("signature CMS : attributs signés messageDigest et contentType obligatoires")
        if _oid(data, attrs[OID_CONTENT_TYPE][0]) != OID_DATA:
            raise CmsError("signature CMS : attribut contentType inattendu")
        h = hashes.Hash(digest_cls())
        h.update(content)
        if attrs[OID_MESSAGE_DIGEST][0].content(data) != h.finalize():
            raise CmsError("signature CMS : l'empreinte signée ne correspond pas au manifeste (manifeste modifié)")
        if OID_SIGNING_TIME in attrs:
            signing_time = _time(data, attrs[OID_SIGNING_TIME][0])
        signed = b"\x31" + data[signed_attrs.start + 1:signed_attrs.end]  # [0] IMPLICIT -> SET OF, as signed
    else:
        signed = content

    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and sig_alg in RSA_SIGS:
            key.verify(sig_value, signed, padding.PKCS1v15(), (RSA_SIGS[sig_alg] or digest_cls)())
        elif isinstance(key, ec.EllipticCurvePublicKey) and sig_alg in EC_SIGS:
            key.verify(sig_value, signed, ec.ECDSA((EC_SIGS[sig_alg] or digest_cls)()))
        else:
            raise CmsError(f"signature CMS : algorithme de signature non pris en charge ({sig_alg})")
    except InvalidSignature:
        raise CmsError("signature CMS invalide : la signature ne correspond pas au manifeste et au certificat") from None
    return CmsSigner(cert, signing_time)
