"""SUT description (`sut.toml`): what the DRIMbox under test is, where it listens, how to drive it."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FQDN_RE = re.compile(r"^(db|vi)(\d+)\.([a-z0-9-]+)\.mesimagesmedicales\.fr$")
ROLES = ("source", "conso")
AUTO = "auto"


class ConfigError(ValueError):
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
    dicomweb_user: str | None = None  # stable DICOMweb credentials of the simulated PACS (else the kit's)
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
    hooks: dict[str, str] = field(default_factory=dict)
    simulators: dict[str, Address] = field(default_factory=dict)  # where drimcheck's simulators listen
    dut: dict[str, Any] = field(default_factory=dict)  # other DUT endpoints and settings ([dut])
    source_file: str = "<embedded>"
    pki_kit: Path | None = None  # [pki] kit: test kit made by `drimcheck kit` (stable CAs and DUT certificates)

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
            raise ConfigError(f"{self.source_file}: no [network] entry for {fqdn}") from None

    @property
    def health_fqdn(self) -> str:
        return urlsplit(self.health_url).hostname or ""

    def with_network(self, network: dict[str, Endpoint]) -> "Sut":
        return replace(self, network=network)

    def with_pacs(self, pacs: tuple[Pacs, ...]) -> "Sut":
        return replace(self, pacs=pacs)

    def with_addresses(self, simulators: dict[str, Address], dut: dict[str, Any]) -> "Sut":
        return replace(self, simulators=simulators, dut=dut)

    def describe(self) -> dict[str, Any]:
        """Identity of the SUT as written into every report."""
        return {
            "name": self.name,
            "editor": self.editor,
            "version": self.version,
            "roles": list(self.roles),
            "registry": self.registry,
            "pacs": [{"name": p.name, "db": p.db, "vi": p.vi} for p in self.pacs],
            "health_url": self.health_url,
            "embedded": self.embedded,
            "description_file": self.source_file,
        }


def _addr(value: Any, where: str, *, allow_auto: bool) -> Address:
    if value == AUTO:
        if not allow_auto:
            raise ConfigError(f"{where}: 'auto' is only allowed with embedded = \"reference\"")
        return Address("127.0.0.1", 0)
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{where}: expected \"host:port\", got {value!r}")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected \"host:port\" with a port in 1..65535, got {value!r}")
    return Address(host.strip("[]"), int(port))


def _str(table: dict, key: str, where: str, *, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: '{key}' is required and must be a non-empty string")
    return value


def _port(table: dict, key: str, where: str, *, allow_auto: bool) -> int:
    value = table.get(key, 0 if allow_auto else None)
    if not isinstance(value, int) or not (0 if allow_auto else 1) <= value < 65536:
        raise ConfigError(f"{where}: '{key}' must be a port number" + (" (0 = free port)" if allow_auto else ""))
    return value


def _positive(table: dict, key: str, where: str, default: float, *, zero: bool = False) -> float:
    value = table.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{where}: '{key}' must be a {'non-negative' if zero else 'positive'} number of seconds")
    return float(value)


def _pem_paths(tls: dict, key: str, source_file: str, base_dir: Path | None) -> tuple[Path, ...]:
    value = tls.get(key, [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ConfigError(f"{source_file} [tls]: '{key}' must be a list of PEM file paths")
    paths = tuple(((base_dir or Path.cwd()) / a).resolve() for a in value)
    for a in paths:
        if not a.is_file():
            raise ConfigError(f"{source_file} [tls]: trust anchor file not found: {a}")
    return paths


def parse(text: str, source_file: str = "<string>", base_dir: Path | None = None) -> Sut:
    """Parse and validate a SUT description; every problem is one ConfigError line naming the field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source_file}: not valid TOML: {exc}") from None
    known = {"sut", "pacs", "network", "health", "tls", "timeouts", "hooks", "simulators", "dut", "pki"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{source_file}: unknown section(s) {', '.join(sorted(unknown))}")
    sut = data.get("sut")
    if not isinstance(sut, dict):
        raise ConfigError(f"{source_file}: missing [sut] section")
    where = f"{source_file} [sut]"
    embedded = sut.get("embedded")
    if embedded not in (None, "reference"):
        raise ConfigError(f"{where}: 'embedded' can only be \"reference\"")
    allow_auto = embedded is not None
    roles = sut.get("roles")
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        raise ConfigError(f"{where}: 'roles' must be a non-empty list of {', '.join(ROLES)}")
    registry = _str(sut, "registry", where)
    if not re.fullmatch(r"[a-z0-9-]+", registry):
        raise ConfigError(f"{where}: 'registry' must be the ID_Registre (digits, or 'test'), got {registry!r}")

    pacs_list = data.get("pacs")
    if not isinstance(pacs_list, list) or not pacs_list:
        raise ConfigError(f"{source_file}: at least one [[pacs]] entry is required")
    pacs: list[Pacs] = []
    for i, p in enumerate(pacs_list):
        pw = f"{source_file} [[pacs]] #{i + 1}"
        db, vi = _str(p, "db", pw), _str(p, "vi", pw)
        for key, fqdn in (("db", db), ("vi", vi)):
            m = FQDN_RE.match(fqdn)
            if not m or m.group(1) != key or m.group(3) != registry:
                raise ConfigError(f"{pw}: '{key}' must be {key}N.{registry}.mesimagesmedicales.fr, got {fqdn!r}")
        if FQDN_RE.match(db).group(2) != FQDN_RE.match(vi).group(2):
            raise ConfigError(f"{pw}: db and vi must carry the same number N (one FQDN pair per PACS)")
        pacs.append(Pacs(
            name=_str(p, "name", pw, default=db), db=db, vi=vi, aet=_str(p, "aet", pw, default="DRIMCHECK_PACS"),
            dicom_port=_port(p, "dicom_port", pw, allow_auto=allow_auto),
            http_port=_port(p, "http_port", pw, allow_auto=allow_auto),
            dicomweb_user=p.get("dicomweb_user"), dicomweb_password=p.get("dicomweb_password"),
        ))
    if len({p.db for p in pacs}) != len(pacs):
        raise ConfigError(f"{source_file}: two [[pacs]] entries share a db FQDN")

    network: dict[str, Endpoint] = {}
    for fqdn, entry in (data.get("network") or {}).items():
        nw = f"{source_file} [network] {fqdn}"
        if not isinstance(entry, dict) or not set(entry) <= {"https", "http"} or not entry:
            raise ConfigError(f"{nw}: expected {{ https = \"host:port\", http = \"host:port\" }}")
        network[fqdn] = Endpoint(
            fqdn,
            https=_addr(entry["https"], nw + " https", allow_auto=allow_auto) if "https" in entry else None,
            http=_addr(entry["http"], nw + " http", allow_auto=allow_auto) if "http" in entry else None,
        )
    for p in pacs:
        if p.db not in network or network[p.db].https is None:
            raise ConfigError(f"{source_file}: [network] needs an https address for {p.db}")

    health = data.get("health") or {}
    health_url = _str(health, "url", f"{source_file} [health]", default=f"https://{pacs[0].db}/q/health")
    parts = urlsplit(health_url)
    if parts.scheme != "https" or parts.hostname not in {p.db for p in pacs}:
        raise ConfigError(f"{source_file} [health]: 'url' must be an https URL on a declared db FQDN, got {health_url!r}")

    tls = data.get("tls") or {}
    anchor_paths = _pem_paths(tls, "trust_anchors", source_file, base_dir)
    market_paths = _pem_paths(tls, "market_trust_anchors", source_file, base_dir)

    t = data.get("timeouts") or {}
    tw = f"{source_file} [timeouts]"
    timeouts = Timeouts(
        request_s=_positive(t, "request_s", tw, 5.0),
        health_down_s=_positive(t, "health_down_s", tw, 10.0),
        health_up_s=_positive(t, "health_up_s", tw, 10.0),
        health_budget_s=_positive(t, "health_budget_s", tw, 2.0),
        publication_s=_positive(t, "publication_s", tw, 10.0),
        quiet_s=_positive(t, "quiet_s", tw, 1.5),
        whitelist_s=_positive(t, "whitelist_s", tw, 10.0),
        whitelist_settle_s=_positive(t, "whitelist_settle_s", tw, 1.0, zero=True),
        export_s=_positive(t, "export_s", tw, 10.0),
    )
    hooks = data.get("hooks") or {}
    if not all(isinstance(v, str) for v in hooks.values()):
        raise ConfigError(f"{source_file} [hooks]: every hook must be a shell command string")

    simulators: dict[str, Address] = {}
    for name, value in (data.get("simulators") or {}).items():
        simulators[name] = _addr(value, f"{source_file} [simulators] {name}", allow_auto=allow_auto)
    dut: dict[str, Any] = {}
    for name, value in (data.get("dut") or {}).items():
        dw = f"{source_file} [dut] {name}"
        if isinstance(value, str) and (value == AUTO or re.fullmatch(r"[^\s:]+:\d+", value)):
            dut[name] = _addr(value, dw, allow_auto=allow_auto)
        elif isinstance(value, (str, int, float, bool)):
            dut[name] = value
        else:
            raise ConfigError(f"{dw}: expected a \"host:port\" address or a plain value")

    kit = (data.get("pki") or {}).get("kit")
    pki_kit = ((base_dir or Path.cwd()) / kit).resolve() if isinstance(kit, str) and kit else None
    return Sut(
        pki_kit=pki_kit, name=_str(sut, "name", where), roles=tuple(roles), registry=registry, pacs=tuple(pacs),
        network=network, health_url=health_url, editor=sut.get("editor", ""), version=sut.get("version", ""),
        embedded=embedded, trust_anchors=anchor_paths, market_trust_anchors=market_paths, timeouts=timeouts,
        hooks={k: v for k, v in hooks.items() if v}, simulators=simulators, dut=dut, source_file=source_file,
    )


def load(path: str | Path | None) -> Sut:
    """Load a SUT description from a file, or the embedded reference description when path is None."""
    if path is None:
        return parse(reference_text(), "<embedded reference sut.toml>")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"SUT description not found: {p} (run 'drimcheck init' to write a template)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read SUT description {p}: {exc}") from None
    return parse(text, str(p), base_dir=p.parent)


def reference_text() -> str:
    return resources.files("drimcheck").joinpath("data/sut-reference.toml").read_text(encoding="utf-8")


def template_text() -> str:
    return resources.files("drimcheck").joinpath("data/sut-template.toml").read_text(encoding="utf-8")
