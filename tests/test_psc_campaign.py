"""The PSC, Proxy e-santé and peers simulators inside a real campaign runtime (registry, DUT configuration)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from drimcheck import config as sut_config
from drimcheck.campaign import CampaignRuntime
from simulators.pacs import orthanc as orthanc_module
from simulators.peers import UNLISTED_PEER, WHITELISTED_PEER
from simulators.psc import DEFAULT_FQDN as PSC_FQDN
from simulators.psc import WALLET_FQDN
from simulators.proxy import DEFAULT_FQDN as PROXY_FQDN
from simsupport import client

pytestmark = pytest.mark.slow
if not Path(orthanc_module.DEFAULT_BINARY).exists():
    pytest.skip("Debian package orthanc not installed", allow_module_level=True)


def test_campaign_starts_psc_proxy_and_peers_and_configures_the_dut(tmp_path) -> None:
    sut = replace(sut_config.load(None), roles=("source", "conso"))
    runtime = CampaignRuntime(sut, tmp_path / "run")
    try:
        runtime.ensure_started()
        assert {"psc", "proxy", "peers"} <= set(runtime.sims)
        psc, proxy, peers = runtime.sims["psc"], runtime.sims["proxy"], runtime.sims["peers"]
        dut_config = json.loads((runtime.workdir / "dut" / "drimbox.json").read_text())
        settings = dut_config["peers"]
        assert settings["psc"]["client_id"] == "drimbox-dut" and settings["psc"]["issuer"] == psc.issuer
        assert settings["proxy"]["psc"]["token_endpoint"].startswith(proxy.base_url + "/psc/")
        assert [p["fqdn"] for p in settings["peers"]["peers"]] == [WHITELISTED_PEER, UNLISTED_PEER]
        for fqdn in (PSC_FQDN, WALLET_FQDN, PROXY_FQDN, WHITELISTED_PEER, UNLISTED_PEER):
            assert fqdn in dut_config["hosts"]
        # the authorization endpoint's own host resolves, for the DUT as for the practitioner's browser, to the PSC
        assert dut_config["hosts"][WALLET_FQDN] == dut_config["hosts"][PSC_FQDN] == runtime.extra_hosts()[WALLET_FQDN]
        assert settings["psc"]["authorization_endpoint"].startswith(f"https://{WALLET_FQDN}:")
        # the DUT's own credentials work through the proxy (its ORG AUTH_CLI, client_id only: RFC 8705)
        org = dut_config["certs"]["org_auth_cli"]
        issued = runtime.pki.org_auth_cli()
        assert org["cert"] == str(issued.cert_path)
        token = psc.issue_token().access_token
        with client(proxy.hosts(), [Path(settings["proxy"]["ca_file"])], issued) as h:
            resp = h.post(settings["proxy"]["psc"]["introspection_endpoint"],
                          data={"token": token, "client_id": settings["psc"]["client_id"]})
        assert resp.status_code == 200 and resp.json()["active"] is True
        assert peers[WHITELISTED_PEER].kos == {}  # content is wired by the DMP/whitelist side
    finally:
        runtime.stop()
    assert not runtime.sims
