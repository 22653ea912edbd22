"""The reference DRIMbox's configuration from a dut-settings.json document (docs/dut-settings.schema.json).

The reference side of the kit: drimcheck.reference (the harness's launcher) and examples/external-dut/configure.py
translate the same document an external DUT gets from `drimcheck kit`, so the two cannot drift. Imports nothing
of the harness (the reference DRIMbox is independent of it: .importlinter).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

#: function modules of the reference DRIMbox, with the SUT roles that enable them (None = always)
FUNCTIONS = (("trust", None), ("source", "source"), ("wado", "source"), ("conso", "conso"))


def enabled_functions(roles: set[str]) -> list[str]:
    """The function modules the reference runs for these SUT roles (those that exist)."""
    return [name for name, role in FUNCTIONS
            if (role is None or role in roles) and importlib.util.find_spec(f"simulators.drimbox.{name}")]


#: keys of the "simulators" section of dut-settings.json whose values are file paths (relative to dut/)
PATH_KEYS = frozenset({"ca", "ca_file", "server_ca"})


def config_from_settings(document: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """Translate a dut-settings.json document (docs/dut-settings.schema.json) into the reference's own
    configuration (simulators/drimbox/service.py DrimboxConfig), without workdir, ready_file and mutant.

    `base`: the directory relative file paths of the document are relative to (the kit's dut/).
    """
    def path(value: str | None) -> str | None:
        if value is None or base is None or Path(value).is_absolute():
            return value
        return str((base / value).resolve())

    def files(entry: dict[str, str]) -> dict[str, str]:
        return {k: path(entry[k]) for k in ("cert", "key", "chain")}

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: path(v) if k in PATH_KEYS and isinstance(v, str) else fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    certificates = document["certificates"]
    listeners = []
    for item in document["listeners"]:
        kind = "serv_ssl" if item["role"] == "db" else "market_ov"
        for scheme in ("https", "http"):
            address = item.get(scheme)
            if not address:
                continue
            host, _, port = address.rpartition(":")
            listener = {"fqdn": item["fqdn"], "role": item["role"], "scheme": scheme, "host": host, "port": int(port)}
            if scheme == "https":
                chosen = files(certificates[kind][item["fqdn"]])
                listener.update(cert=chosen["chain"], key=chosen["key"])
            listeners.append(listener)
    certs = {f"serv_ssl:{fqdn}": files(entry) for fqdn, entry in certificates["serv_ssl"].items()}
    certs["org_auth_cli"] = files(certificates["org_auth_cli"])
    certs["org_sign"] = files(certificates["org_sign"])
    roles = set(document["sut"]["roles"])
    hosts = {item["fqdn"]: item["https"] for item in document["listeners"] if item.get("https")}
    hosts.update({fqdn: f"{where['address']}:{where['port']}" for fqdn, where in document["hosts"].items()})
    return {
        "name": document["sut"]["name"],
        "registry": document["sut"]["registry"],
        "functions": enabled_functions(roles),
        "listeners": listeners,
        "pacs": [{"name": p["name"], "db": p["db"], "vi": p["vi"], "aet": p["aet"], "host": p["host"],
                  "dicom_port": p["dicom_port"], "http_url": p["http_url"], "username": p["dicomweb_user"],
                  "password": p["dicomweb_password"]} for p in document["pacs"]],
        "certs": certs,
        "trust": {k: path(document["trust"][k]) for k in ("igc_chain", "igc_root", "market_root")},
        "endpoints": dict(document["endpoints"]),
        "settings": dict(document["settings"]),
        "peers": fix(document["simulators"]),
        "hosts": hosts,
    }
