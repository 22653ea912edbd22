"""SUT description (`sut.toml`): what the DRIMbox under test is, where it listens, how to drive it.

Parsing is strict: an unknown section or key, a value of the wrong type or out of range, two
listeners on the same address... each gives one ConfigError line in French that names the
section and key (and, for a misspelt name, the closest valid one). The CLI turns it into exit 2.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FQDN_RE = re.compile(r"^(db|vi)(\d+)\.([a-z0-9-]+)\.mesimagesmedicales\.fr$")
ROLES = ("source", "conso")
AUTO = "auto"
MAX_FILE_BYTES = 1024 * 1024  # a sut.toml is a few kilobytes; anything larger is not one (/dev/zero...)
MAX_TIMEOUT_S = 3600.0  # upper bound of every [timeouts] value (inf, nan, 1e308 are refused)
AET_RE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # DICOM AE title: default repertoire, no backslash, ≤ 16
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_PATH_RE = re.compile(r"/[\x21-\x7e]*")  # an absolute URL path without spaces or control characters
_WILDCARD_HOSTS = {"0.0.0.0", "::", "*"}


class InputError(ValueError):
    """An input file cannot be used (missing, a directory, too large...): one clear line, exit code 2."""


class ConfigError(InputError):
    """The SUT description is missing or wrong: one clear line, exit code 2."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int  # 0 = not yet allocated ("auto", embedded reference only)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Endpoint:
    """Where connections for one FQDN really go; SNI and Host stay the FQDN."""

    fqdn: str
    https: Address | None = None
    http: Address | None = None


@dataclass(frozen=True)
class Pacs:
    """One PACS connected to the DUT, with its fixed (dbN, viN) FQDN pair and the simulator drimcheck runs for it."""

    name: str
    db: str
    vi: str
    aet: str = "DRIMCHECK_PACS"
    dicom_port: int = 0
    http_port: int = 0
    dicomweb_user: str | None = None  # stable DICOMweb credentials of the simulated PACS (None: chosen per run)
    dicomweb_password: str | None = None


@dataclass(frozen=True)
class Timeouts:
    request_s: float = 5.0
    health_down_s: float = 10.0
    health_up_s: float = 10.0
    health_budget_s: float = 2.0
    publication_s: float = 10.0  # bound on waiting for the DUT to publish to (or update) the DMP
    quiet_s: float = 1.5  # observation window in which "nothing happens" (no publication) is expected
    whitelist_s: float = 10.0  # bound on the DUT to download the whitelist after start or after the refresh trigger
    whitelist_settle_s: float = 1.0  # after a refresh hook returns, time left to the DUT to apply what it downloaded
    export_s: float = 10.0  # bound on the DUT's export of a study to its PACS after the user's action


@dataclass(frozen=True)
class HttpHook:
    """A `[hooks]` action that is an HTTP request drimcheck sends (never a command run on the harness's host).

    Declared as an inline table: `refresh_whitelist = { url = "https://admin.example:8443/refresh" }`, with
    optional `method` (POST by default, GET or PUT), `timeout_s` (30 s by default, at most HTTP_HOOK_MAX_S) and
    `verify_tls` (true by default). It runs through drimcheck.http_hook, in the same bounded hook runner as a
    shell hook (same time limit, evidence and failure rules); its response body is the hook's output.
    """

    url: str
    method: str = "POST"
    timeout_s: float = 30.0
    verify_tls: bool = True

    def command(self) -> str:
        """The command the hook runner starts: drimcheck's own module, every value quoted (no shell syntax)."""
        return shlex.join([sys.executable, "-m", "drimcheck.http_hook", self.method, self.url,
                           f"{self.timeout_s:g}", "verify" if self.verify_tls else "no-verify"])

    def describe(self) -> str:
        return f"{self.method} {_redact_url(self.url)}"


HTTP_HOOK_KEYS = ("url", "method", "timeout_s", "verify_tls")
HTTP_HOOK_METHODS = ("POST", "GET", "PUT")
HTTP_HOOK_MAX_S = 110.0  # below the hook runner's own 120 s limit


#: timeouts that may be 0 (every other one must be > 0)
ZERO_TIMEOUTS = frozenset({"whitelist_settle_s"})


@dataclass(frozen=True)
class Sut:
    name: str
    roles: tuple[str, ...]
    registry: str
    pacs: tuple[Pacs, ...]
    network: dict[str, Endpoint]
    health_url: str
    editor: str = ""
    version: str = ""
    embedded: str | None = None  # "reference" (optionally with a mutant set at run time)
    trust_anchors: tuple[Path, ...] = ()
    market_trust_anchors: tuple[Path, ...] = ()  # roots the viN (market OV) certificate must chain to
    timeouts: Timeouts = field(default_factory=Timeouts)
    hooks: dict[str, str] = field(default_factory=dict)  # name -> command (an HTTP hook's is drimcheck's own)
    http_hooks: dict[str, HttpHook] = field(default_factory=dict)  # hooks declared as HTTP actions
    simulators: dict[str, Address] = field(default_factory=dict)  # where drimcheck's simulators listen
    dut: dict[str, Any] = field(default_factory=dict)  # other DUT endpoints and settings ([dut])
    pki_kit: Path | None = None  # [pki] kit: the stable test kit directory (resolved), None = per-run PKI
    source_file: str = "<embedded>"

    def simulator_address(self, name: str) -> Address | None:
        """Where the simulator `name` must listen (the DUT is configured to reach it there); None if undeclared."""
        return self.simulators.get(name)

    def dut_address(self, name: str) -> Address | None:
        value = self.dut.get(name)
        return value if isinstance(value, Address) else None

    def dut_value(self, name: str, default: Any = None) -> Any:
        return self.dut.get(name, default)

    def endpoint(self, fqdn: str) -> Endpoint:
        try:
            return self.network[fqdn]
        except KeyError:
            raise ConfigError(f"{self.source_file} : aucune entrée [network] pour {fqdn}") from None

    @property
    def health_fqdn(self) -> str:
        return urlsplit(self.health_url).hostname or ""

    def with_network(self, network: dict[str, Endpoint]) -> Sut:
        return replace(self, network=network)

    def with_pacs(self, pacs: tuple[Pacs, ...]) -> Sut:
        return replace(self, pacs=pacs)

    def describe(self) -> dict[str, Any]:
        """Identity of the SUT as written into every report."""
        return {
            "name": self.name,
            "editor": self.editor,
            "version": self.version,
            "roles": list(self.roles),
            "registry": self.registry,
            "pacs": [{"name": p.name, "db": p.db, "vi": p.vi} for p in self.pacs],
            "health_url": _redact_url(self.health_url),
            "embedded": self.embedded,
            "description_file": self.source_file,
        }

    def effective(self) -> dict[str, Any]:
        """The whole configuration once defaults are applied (JSON-ready; secrets masked, port 0 = "auto")."""

        def addr(a: Address | None) -> str | None:
            return None if a is None else (AUTO if a.port == 0 else str(a))

        def secret(v: str | None) -> str | None:
            return None if v is None else "***"

        return {
            "file": self.source_file,
            "sut": {"name": self.name, "editor": self.editor, "version": self.version, "roles": list(self.roles),
                    "registry": self.registry, "embedded": self.embedded},
            "pacs": [{"name": p.name, "db": p.db, "vi": p.vi, "aet": p.aet,
                      "dicom_port": p.dicom_port or AUTO, "http_port": p.http_port or AUTO,
                      "dicomweb_user": p.dicomweb_user, "dicomweb_password": secret(p.dicomweb_password)}
                     for p in self.pacs],
            "network": {fqdn: {"https": addr(ep.https), "http": addr(ep.http)} for fqdn, ep in self.network.items()},
            "health": {"url": self.health_url},
            "tls": {"trust_anchors": [str(p) for p in self.trust_anchors],
                    "market_trust_anchors": [str(p) for p in self.market_trust_anchors]},
            "pki": {"kit": str(self.pki_kit) if self.pki_kit else None},
            "timeouts": {f.name: getattr(self.timeouts, f.name) for f in fields(Timeouts)},
            "hooks": {k: self.http_hooks[k].describe() if k in self.http_hooks else v for k, v in self.hooks.items()},
            "simulators": {name: addr(a) for name, a in self.simulators.items()},
            "dut": {name: addr(v) if isinstance(v, Address) else (secret(v) if name in SECRET_DUT_KEYS else v)
                    for name, v in self.dut.items()},
        }


# ------------------------------------------------------------------------------------------- schema

SECTIONS = ("sut", "pacs", "network", "health", "tls", "timeouts", "hooks", "simulators", "dut", "pki")
SUT_KEYS = ("name", "editor", "version", "roles", "registry", "embedded")
PACS_KEYS = ("name", "db", "vi", "aet", "dicom_port", "http_port", "dicomweb_user", "dicomweb_password")
NETWORK_KEYS = ("https", "http")
HEALTH_KEYS = ("url",)
TLS_KEYS = ("trust_anchors", "market_trust_anchors")
PKI_KEYS = ("kit",)
TIMEOUT_KEYS = tuple(f.name for f in fields(Timeouts))
HOOK_KEYS = ("before_campaign", "after_campaign", "refresh_whitelist", "kpi", "export")
#: drimcheck's simulators (drimcheck.campaign.SIMULATORS), plus peers2, peers3... for further peer DRIMboxes
SIMULATOR_KEYS = ("igc", "whitelist", "dmp", "psc", "proxy", "peers")
_PEERS_N = re.compile(r"peers([2-9]|[1-9][0-9])")
#: [dut] keys that are "host:port" addresses of the DUT's own listeners
DUT_ADDRESS_KEYS = ("mllp", "iocm", "conso", "admin")
#: [dut] keys that are plain settings
DUT_VALUE_KEYS = ("iocm_aet", "calling_aet", "conso_path", "wado_root", "psc_client_id", "psc_client_secret",
                  "psc_redirect_uri")
SECRET_DUT_KEYS = frozenset({"psc_client_secret"})


# ------------------------------------------------------------------------------------------- helpers

def printable(text: str, limit: int = 120) -> str:
    """`text` safe for one line of a terminal: control characters, lone surrogates... escaped; truncated."""
    out = "".join(c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
                  for c in text[:limit])
    return out + ("…" if len(text) > limit else "")


def _key(key: str) -> str:
    """A TOML key as written in a message (quoted when it is not a bare key)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f"\"{printable(key, 80)}\""


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "un booléen"
    if isinstance(value, int):
        return "un entier"
    if isinstance(value, float):
        return "un nombre décimal"
    if isinstance(value, str):
        return "une chaîne"
    if isinstance(value, list):
        return "une liste"
    if isinstance(value, dict):
        return "une table"
    return "une date ou une heure"


def _show(value: Any) -> str:
    """A value as quoted in a message, without ever walking a nested structure."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return printable(repr(value), 40)
    if isinstance(value, str):
        return f"« {printable(value, 80)} »"
    return _kind(value)


def _closest(word: str, valid: list[str] | tuple[str, ...]) -> str | None:
    lower = {v.lower(): v for v in valid}
    if word.lower() in lower:
        return lower[word.lower()]
    match = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return match[0] if match else None


def _suggest(word: str, valid: list[str] | tuple[str, ...], fmt: str = "{}") -> str:
    """' (vouliez-vous dire X ?)' for the valid name closest to a misspelt one, '' when none is close."""
    match = _closest(word, valid)
    return f" (vouliez-vous dire {fmt.format(match)} ?)" if match else ""


class _Reader:
    """Builds the messages of one parse: every problem is '<file> : [section] key : what is wrong'."""

    def __init__(self, source_file: str):
        self.src = printable(source_file, 200)

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.src} : {where} : {message}" if where else f"{self.src} : {message}")

    def table(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"une table est attendue, pas {_kind(value)} ({_show(value)})")
        return value

    def known(self, table: dict, valid: tuple[str, ...], where: str, *, extra: re.Pattern[str] | None = None) -> None:
        for k in table:
            if k not in valid and not (extra is not None and extra.fullmatch(k)):
                raise ConfigError(f"{self.src} : clé inconnue {where} {_key(k)}{_suggest(k, valid)}")

    def string(self, table: dict, key: str, where: str, *, default: str | None = None, empty: bool = False) -> str:
        value = table.get(key, default)
        if value is None:
            raise self.fail(f"{where} {key}", "valeur obligatoire manquante (une chaîne)")
        if not isinstance(value, str):
            raise self.fail(f"{where} {key}", f"une chaîne est attendue, pas {_kind(value)} ({_show(value)})")
        if not value and not empty:
            raise self.fail(f"{where} {key}", "la chaîne ne doit pas être vide")
        if "\x00" in value:
            raise self.fail(f"{where} {key}", "caractère NUL interdit")
        return value

    def port(self, table: dict, key: str, where: str, *, allow_auto: bool) -> int:
        if key not in table and not allow_auto:
            raise self.fail(f"{where} {key}", "numéro de port obligatoire (1 à 65535)")
        value = table.get(key, 0)
        low = 0 if allow_auto else 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
            raise self.fail(f"{where} {key}", f"un numéro de port de {low} à 65535 est attendu"
                                              + (" (0 = port libre)" if allow_auto else "") + f", pas {_show(value)}")
        return value

    def address(self, value: Any, where: str, *, allow_auto: bool) -> Address:
        if value == AUTO:
            if not allow_auto:
                raise self.fail(where, "« auto » n'est permis qu'avec embedded = \"reference\" : donnez \"hôte:port\"")
            return Address("127.0.0.1", 0)
        if not isinstance(value, str):
            raise self.fail(where, f"\"hôte:port\" est attendu, pas {_kind(value)} ({_show(value)})")
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            raise self.fail(where, f"\"hôte:port\" est attendu, pas {_show(value)}")
        if not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) <= 65535:
            raise self.fail(where, f"\"hôte:port\" avec un port de 1 à 65535 est attendu, pas {_show(value)}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise self.fail(where, f"adresse IPv6 invalide dans {_show(value)}") from None
        elif not _HOST_RE.fullmatch(host) or ".." in host:
            raise self.fail(where, f"nom d'hôte ou adresse IP invalide dans {_show(value)}")
        return Address(host, int(port))

    def seconds(self, table: dict, key: str, where: str, default: float, *, zero: bool) -> float:
        value = table.get(key, default)
        bad = isinstance(value, bool) or not isinstance(value, (int, float))
        if not bad and isinstance(value, float) and not math.isfinite(value):
            bad = True
        if bad or value < 0 or (value == 0 and not zero) or value > MAX_TIMEOUT_S:
            raise self.fail(f"{where} {key}", f"une durée en secondes {'≥ 0' if zero else '> 0'} et "
                                              f"≤ {MAX_TIMEOUT_S:g} est attendue, pas {_show(value)}")
        return float(value)

    def aet(self, value: str, where: str) -> str:
        if not AET_RE.fullmatch(value) or not value.strip():
            raise self.fail(where, f"titre AE DICOM invalide {_show(value)} : 1 à 16 caractères ASCII imprimables, "
                                   "sans barre oblique inverse, pas uniquement des espaces")
        return value

    def url(self, value: str, where: str, schemes: tuple[str, ...]) -> str:
        if any(c.isspace() or not c.isprintable() for c in value):
            raise self.fail(where, f"URL invalide {_show(value)} : espaces ou caractères de contrôle")
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise self.fail(where, f"URL invalide {_show(value)}") from None
        if parts.scheme not in schemes or not parts.hostname or port == 0:
            raise self.fail(where, f"URL {' ou '.join(schemes)} avec un nom d'hôte attendue, pas {_show(value)}")
        return value

    def paths(self, table: dict, key: str, where: str, base_dir: Path | None) -> tuple[Path, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(a, str) and a and "\x00" not in a for a in value):
            raise self.fail(f"{where} {key}", f"une liste de chemins de fichiers PEM est attendue, pas {_show(value)}")
        out = []
        for a in value:
            p = (base_dir or Path.cwd()) / a
            try:
                found = p.is_file()
                p = p.resolve()
            except (OSError, RuntimeError):
                found = False
            if not found:
                raise self.fail(f"{where} {key}", f"fichier d'ancre de confiance introuvable : {printable(str(p), 200)}")
            out.append(p)
        return tuple(out)


def _host_key(host: str) -> str:
    h = host.lower().rstrip(".")
    return "127.0.0.1" if h == "localhost" else h


def _collisions(claims: list[tuple[str, str, Address]], r: _Reader) -> None:
    """Two listeners on one address (same port, same host or a wildcard host) cannot both work.

    claims: (label, group, address). Claims of one group may share an address: the FQDNs of [network]
    served on one port by one HTTPS (or HTTP) server, told apart by SNI and Host. Linear in the number
    of claims (one representative per group and address is enough to find a conflict).
    """
    on_address: dict[tuple[int, str], dict[str, tuple[str, Address]]] = {}
    on_port: dict[int, dict[str, tuple[str, Address]]] = {}
    wildcard: dict[int, dict[str, tuple[str, Address]]] = {}

    def clash(label: str, group: str, a: Address, seen: dict[str, tuple[str, Address]]) -> None:
        for group2, (label2, b) in seen.items():
            if not (group == group2 and group.startswith("network")):
                raise r.fail("", f"conflit d'adresses : {label2} ({b}) et {label} ({a}) écoutent sur le même "
                                 "port de la même machine")

    for label, group, a in claims:
        if a.port == 0:
            continue
        host = _host_key(a.host)
        if host in _WILDCARD_HOSTS:
            clash(label, group, a, on_port.get(a.port, {}))
            wildcard.setdefault(a.port, {}).setdefault(group, (label, a))
        else:
            clash(label, group, a, on_address.get((a.port, host), {}))
            clash(label, group, a, wildcard.get(a.port, {}))
        on_address.setdefault((a.port, host), {}).setdefault(group, (label, a))
        on_port.setdefault(a.port, {}).setdefault(group, (label, a))


# ------------------------------------------------------------------------------------------- parse

def parse(text: str, source_file: str = "<string>", base_dir: Path | None = None) -> Sut:
    """Parse and validate a SUT description; every problem is one ConfigError line naming the field.

    One function per section, called in the order the sections are checked (the first problem found is the
    one reported); the address collisions across sections come last.
    """
    r = _Reader(source_file)
    data = _load_toml(text, r)
    if "sut" not in data:
        raise ConfigError(f"{r.src} : section [sut] manquante")
    head = _parse_sut(r, data["sut"])
    allow_auto = head.embedded is not None
    pacs = _parse_pacs(r, data.get("pacs"), head.registry, allow_auto)
    network = _parse_network(r, data.get("network", {}), pacs, allow_auto)
    health_url = _parse_health(r, data.get("health", {}), pacs)
    anchor_paths, market_paths = _parse_tls(r, data.get("tls", {}), base_dir)
    pki_kit = _parse_pki(r, data.get("pki", {}), base_dir)
    timeouts = _parse_timeouts(r, data.get("timeouts", {}))
    hooks, http_hooks = _parse_hooks(r, data.get("hooks", {}))
    simulators = _parse_simulators(r, data.get("simulators", {}), allow_auto)
    dut = _parse_dut(r, data.get("dut", {}), allow_auto)
    _collisions(_address_claims(network, dut, simulators, pacs), r)
    return Sut(
        name=head.name, roles=head.roles, registry=head.registry, pacs=pacs,
        network=network, health_url=health_url, editor=head.editor, version=head.version,
        embedded=head.embedded, trust_anchors=anchor_paths, market_trust_anchors=market_paths, timeouts=timeouts,
        hooks={k: v for k, v in hooks.items() if v}, http_hooks=http_hooks, simulators=simulators, dut=dut,
        pki_kit=pki_kit,
        source_file=source_file,
    )


def _load_toml(text: str, r: _Reader) -> dict[str, Any]:
    """The TOML document, with only known top-level sections."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{r.src} : TOML invalide : {printable(str(exc), 200)}") from None
    except RecursionError:
        raise ConfigError(f"{r.src} : TOML invalide : structure imbriquée trop profondément") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{r.src} : TOML invalide : {printable(str(exc), 120)}") from None
    for k in data:
        if k not in SECTIONS:
            raise ConfigError(f"{r.src} : section inconnue [{_key(k)}]{_suggest(k, SECTIONS, '[{}]')}")
    return data


@dataclass(frozen=True)
class _SutSection:
    name: str
    roles: tuple[str, ...]
    registry: str
    editor: str
    version: str
    embedded: str | None


def _parse_sut(r: _Reader, value: Any) -> _SutSection:
    where = "[sut]"
    sut = r.table(value, where)
    r.known(sut, SUT_KEYS, where)
    embedded = sut.get("embedded")
    if embedded not in (None, "reference"):
        raise r.fail("[sut] embedded", f"seule la valeur \"reference\" est permise, pas {_show(embedded)}")
    roles = _parse_roles(r, sut.get("roles"))
    sut_name = r.string(sut, "name", where)
    editor = r.string(sut, "editor", where, default="", empty=True)
    version = r.string(sut, "version", where, default="", empty=True)
    registry = r.string(sut, "registry", where)
    if not re.fullmatch(r"[a-z0-9-]+", registry):
        raise r.fail("[sut] registry", f"l'ID_Registre (chiffres, ou « test ») est attendu, pas {_show(registry)}")
    return _SutSection(sut_name, roles, registry, editor, version, embedded)


def _parse_roles(r: _Reader, roles: Any) -> tuple[str, ...]:
    if not isinstance(roles, list) or not roles:
        raise r.fail("[sut] roles", f"une liste non vide de rôles ({', '.join(ROLES)}) est attendue, "
                                    f"pas {_show(roles) if roles is not None else 'rien'}")
    for role in roles:
        if not isinstance(role, str) or role not in ROLES:
            raise r.fail("[sut] roles", f"rôle inconnu {_show(role)}"
                                        + (_suggest(role, ROLES) if isinstance(role, str) else "")
                                        + f" : rôles possibles {', '.join(ROLES)}")
    if len(set(roles)) != len(roles):
        raise r.fail("[sut] roles", "un rôle figure deux fois")
    return tuple(roles)


def _parse_pacs(r: _Reader, pacs_list: Any, registry: str, allow_auto: bool) -> tuple[Pacs, ...]:
    if not isinstance(pacs_list, list) or not pacs_list:
        raise r.fail("", "au moins une entrée [[pacs]] est obligatoire"
                     + (f" ([[pacs]] est {_kind(pacs_list)})" if pacs_list is not None else ""))
    pacs = [_parse_pacs_entry(r, entry, f"[[pacs]] n°{i + 1}", registry, allow_auto)
            for i, entry in enumerate(pacs_list)]
    if len({p.db for p in pacs}) != len(pacs):
        raise r.fail("", "deux entrées [[pacs]] ont le même FQDN db")
    if len({p.name for p in pacs}) != len(pacs):
        raise r.fail("", "deux entrées [[pacs]] ont le même nom (name)")
    return tuple(pacs)


def _parse_pacs_entry(r: _Reader, entry: Any, pw: str, registry: str, allow_auto: bool) -> Pacs:
    p = r.table(entry, pw)
    r.known(p, PACS_KEYS, pw)
    db, vi = r.string(p, "db", pw), r.string(p, "vi", pw)
    numbers: dict[str, str] = {}
    for key, fqdn in (("db", db), ("vi", vi)):
        m = FQDN_RE.match(fqdn)
        if not m or m.group(1) != key or m.group(3) != registry:
            raise r.fail(f"{pw} {key}", f"{key}N.{registry}.mesimagesmedicales.fr est attendu, pas {_show(fqdn)}")
        numbers[key] = m.group(2)
    if numbers["db"] != numbers["vi"]:
        raise r.fail(pw, "db et vi doivent porter le même numéro N (une paire de FQDN par PACS)")
    user, password = _parse_dicomweb_credentials(r, p, pw)
    return Pacs(
        name=r.string(p, "name", pw, default=db), db=db, vi=vi,
        aet=r.aet(r.string(p, "aet", pw, default="DRIMCHECK_PACS"), f"{pw} aet"),
        dicom_port=r.port(p, "dicom_port", pw, allow_auto=allow_auto),
        http_port=r.port(p, "http_port", pw, allow_auto=allow_auto),
        dicomweb_user=user, dicomweb_password=password,
    )


def _parse_dicomweb_credentials(r: _Reader, p: dict, pw: str) -> tuple[str | None, str | None]:
    user = r.string(p, "dicomweb_user", pw, default="", empty=True) or None
    password = r.string(p, "dicomweb_password", pw, default="", empty=True) or None
    if (user is None) != (password is None):
        raise r.fail(pw, "dicomweb_user et dicomweb_password se déclarent ensemble (ou aucun des deux)")
    if user is not None and (":" in user or not user.isprintable()):
        raise r.fail(f"{pw} dicomweb_user", "le nom d'utilisateur ne doit contenir ni « : » ni caractère de contrôle")
    if password is not None and not password.isprintable():
        raise r.fail(f"{pw} dicomweb_password", "le mot de passe ne doit pas contenir de caractère de contrôle")
    return user, password


def _parse_network(r: _Reader, value: Any, pacs: tuple[Pacs, ...], allow_auto: bool) -> dict[str, Endpoint]:
    declared = [f for p in pacs for f in (p.db, p.vi)]
    declared_set = set(declared)
    network: dict[str, Endpoint] = {}
    for fqdn, entry in r.table(value, "[network]").items():
        nw = f"[network] {_key(fqdn)}"
        if fqdn not in declared_set:
            raise r.fail(nw, f"FQDN non déclaré par un [[pacs]]{_suggest(fqdn, declared)}")
        e = r.table(entry, nw)
        if not e:
            raise r.fail(nw, "{ https = \"hôte:port\", http = \"hôte:port\" } est attendu")
        r.known(e, NETWORK_KEYS, nw)
        network[fqdn] = Endpoint(
            fqdn,
            https=r.address(e["https"], f"{nw} https", allow_auto=allow_auto) if "https" in e else None,
            http=r.address(e["http"], f"{nw} http", allow_auto=allow_auto) if "http" in e else None,
        )
    for pacs_item in pacs:
        if pacs_item.db not in network or network[pacs_item.db].https is None:
            raise r.fail("[network]", f"une adresse https est obligatoire pour {pacs_item.db}")
    return network


def _parse_health(r: _Reader, value: Any, pacs: tuple[Pacs, ...]) -> str:
    health = r.table(value, "[health]")
    r.known(health, HEALTH_KEYS, "[health]")
    health_url = r.url(r.string(health, "url", "[health]", default=f"https://{pacs[0].db}/q/health"),
                       "[health] url", ("https",))
    if urlsplit(health_url).hostname not in {p.db for p in pacs}:
        raise r.fail("[health] url", f"une URL https sur un FQDN db déclaré est attendue, pas {_show(health_url)}")
    return health_url


def _parse_tls(r: _Reader, value: Any, base_dir: Path | None) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    tls = r.table(value, "[tls]")
    r.known(tls, TLS_KEYS, "[tls]")
    return r.paths(tls, "trust_anchors", "[tls]", base_dir), r.paths(tls, "market_trust_anchors", "[tls]", base_dir)


def _parse_pki(r: _Reader, value: Any, base_dir: Path | None) -> Path | None:
    pki = r.table(value, "[pki]")
    r.known(pki, PKI_KEYS, "[pki]")
    if "kit" not in pki:
        return None
    kit = r.string(pki, "kit", "[pki]")
    try:
        return ((base_dir or Path.cwd()) / kit).resolve()
    except (OSError, RuntimeError, ValueError):
        raise r.fail("[pki] kit", f"chemin inutilisable {_show(kit)}") from None


def _parse_timeouts(r: _Reader, value: Any) -> Timeouts:
    t = r.table(value, "[timeouts]")
    r.known(t, TIMEOUT_KEYS, "[timeouts]")
    defaults = Timeouts()
    return Timeouts(**{k: r.seconds(t, k, "[timeouts]", getattr(defaults, k), zero=k in ZERO_TIMEOUTS)
                       for k in TIMEOUT_KEYS})


def _parse_hooks(r: _Reader, value: Any) -> tuple[dict[str, str], dict[str, HttpHook]]:
    hooks = r.table(value, "[hooks]")
    r.known(hooks, HOOK_KEYS, "[hooks]")
    http_hooks: dict[str, HttpHook] = {}
    for k in hooks:
        if isinstance(hooks[k], dict):  # an HTTP action: { url = "...", method = "POST" }
            http_hooks[k] = _http_hook(r, hooks[k], f"[hooks] {k}")
            hooks[k] = http_hooks[k].command()
        else:
            r.string(hooks, k, "[hooks]", empty=True)  # a shell command; "" = not used
    return hooks, http_hooks


def _parse_simulators(r: _Reader, value: Any, allow_auto: bool) -> dict[str, Address]:
    simulators: dict[str, Address] = {}
    for name, addr in r.table(value, "[simulators]").items():
        if name not in SIMULATOR_KEYS and not _PEERS_N.fullmatch(name):
            raise ConfigError(f"{r.src} : clé inconnue [simulators] {_key(name)}{_suggest(name, SIMULATOR_KEYS)}")
        simulators[name] = r.address(addr, f"[simulators] {name}", allow_auto=allow_auto)
    return simulators


def _parse_dut(r: _Reader, value: Any, allow_auto: bool) -> dict[str, Any]:
    dut: dict[str, Any] = {}
    dut_table = r.table(value, "[dut]")
    r.known(dut_table, DUT_ADDRESS_KEYS + DUT_VALUE_KEYS, "[dut]")
    for name, item in dut_table.items():
        if name in DUT_ADDRESS_KEYS:
            dut[name] = r.address(item, f"[dut] {name}", allow_auto=allow_auto)
        else:
            dut[name] = _parse_dut_value(r, dut_table, name)
    return dut


def _parse_dut_value(r: _Reader, dut_table: dict, name: str) -> str:
    dw = f"[dut] {name}"
    s = r.string(dut_table, name, "[dut]", empty=name == "psc_client_secret")
    if name in ("iocm_aet", "calling_aet"):
        r.aet(s, dw)
    elif name in ("conso_path", "wado_root") and not _PATH_RE.fullmatch(s):
        raise r.fail(dw, f"un chemin d'URL commençant par « / », sans espace, est attendu, pas {_show(s)}")
    elif name == "psc_redirect_uri":
        r.url(s, dw, ("https", "http"))
    elif name == "psc_client_id" and not s.isprintable():
        raise r.fail(dw, "caractère de contrôle interdit")
    return s


def _address_claims(network: dict[str, Endpoint], dut: dict[str, Any], simulators: dict[str, Address],
                    pacs: tuple[Pacs, ...]) -> list[tuple[str, str, Address]]:
    """Every listening address the description declares, as (label, group, address) for _collisions."""
    claims: list[tuple[str, str, Address]] = []
    for fqdn, ep in network.items():
        for scheme in ("https", "http"):
            if getattr(ep, scheme) is not None:
                claims.append((f"[network] {fqdn} {scheme}", f"network-{scheme}", getattr(ep, scheme)))
    for name, a in dut.items():
        if isinstance(a, Address):
            claims.append((f"[dut] {name}", "dut", a))
    for name, a in simulators.items():
        claims.append((f"[simulators] {name}", "simulators", a))
    for i, pacs_item in enumerate(pacs):  # the simulated PACS (Orthanc) may listen on every interface
        for key in ("dicom_port", "http_port"):
            claims.append((f"[[pacs]] n°{i + 1} {key}", "pacs", Address("0.0.0.0", getattr(pacs_item, key))))
    return claims


def _http_hook(r: _Reader, table: dict, where: str) -> HttpHook:
    r.known(table, HTTP_HOOK_KEYS, where)
    url = r.url(r.string(table, "url", where), f"{where} url", ("https", "http"))
    method = r.string(table, "method", where, default="POST")
    if method not in HTTP_HOOK_METHODS:
        raise r.fail(f"{where} method", f"{' ou '.join(HTTP_HOOK_METHODS)} est attendu, pas {_show(method)}")
    timeout = r.seconds(table, "timeout_s", where, 30.0, zero=False)
    if timeout > HTTP_HOOK_MAX_S:
        raise r.fail(f"{where} timeout_s", f"au plus {HTTP_HOOK_MAX_S:g} s (limite des hooks : 120 s), pas {_show(timeout)}")
    verify = table.get("verify_tls", True)
    if not isinstance(verify, bool):
        raise r.fail(f"{where} verify_tls", f"un booléen est attendu, pas {_kind(verify)} ({_show(verify)})")
    return HttpHook(url=url, method=method, timeout_s=timeout, verify_tls=verify)


def read_capped(path: str | Path, limit: int, what: str, *, missing_hint: str = "") -> bytes:
    """The bytes of an input file, at most `limit` of them; InputError (one French line) otherwise.

    Reads at most limit + 1 bytes whatever the file is (/dev/zero, a FIFO, a huge file), so memory stays
    bounded before any parser sees the data.
    """
    shown = f"{what} {printable(str(path), 200)}"
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{shown} : fichier introuvable{missing_hint}") from None
    except IsADirectoryError:
        raise InputError(f"{shown} : est un répertoire, pas un fichier") from None
    except PermissionError:
        raise InputError(f"{shown} : lecture refusée (permissions)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{shown} : lecture impossible : {printable(getattr(exc, 'strerror', None) or str(exc))}") from None
    if len(data) > limit:
        size = f"{limit // (1024 * 1024)} Mio" if limit >= 1024 * 1024 else f"{limit // 1024} Kio"
        raise InputError(f"{shown} : fichier trop volumineux (plus de {size})")
    return data


def read_text(path: str | Path) -> str:
    """The text of a sut.toml, read with a size cap; one ConfigError line for any problem."""
    try:
        data = read_capped(path, MAX_FILE_BYTES, "description du SUT",
                           missing_hint=" (« drimcheck init » écrit un modèle)")
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"description du SUT {printable(str(path), 200)} : n'est pas encodée en UTF-8 "
                          f"(octet invalide à la position {exc.start})") from None


def load(path: str | Path | None) -> Sut:
    """Load a SUT description from a file, or the embedded reference description when path is None."""
    if path is None:
        return parse(reference_text(), "<embedded reference sut.toml>")
    p = Path(path)
    return parse(read_text(p), str(p), base_dir=p.parent)


def reference_text() -> str:
    return resources.files("drimcheck").joinpath("data/sut-reference.toml").read_text(encoding="utf-8")


def template_text() -> str:
    return resources.files("drimcheck").joinpath("data/sut-template.toml").read_text(encoding="utf-8")


def _redact_url(url: str) -> str:
    """The URL as reports may show it: no ``user:password@`` (drimcheck.evidence.redact_url)."""
    from drimcheck.evidence import redact_url

    return redact_url(url)
