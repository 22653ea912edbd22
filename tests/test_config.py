"""sut.toml: the template and the embedded reference parse; parsing is strict and every mistake is one
French line naming the section and key (with the closest valid name for a misspelt one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drimcheck import config
from drimcheck.config import Address, ConfigError

REPO = Path(__file__).resolve().parent.parent
DB1 = "db1.349.mesimagesmedicales.fr"
VI1 = "vi1.349.mesimagesmedicales.fr"


def test_embedded_reference_description():
    sut = config.load(None)
    assert sut.embedded == "reference" and "source" in sut.roles
    assert sut.health_fqdn in {p.db for p in sut.pacs}
    assert all(ep.https is not None for ep in sut.network.values())
    assert sut.pki_kit is None and all(p.dicomweb_user is None for p in sut.pacs)


def test_template_written_by_init_is_a_valid_description():
    sut = config.parse(config.template_text(), "sut.toml")
    assert sut.embedded is None
    assert sut.endpoint(DB1).https == Address("127.0.0.1", 8443)
    assert sut.timeouts.health_down_s == 10


def uncommented_template() -> str:
    """The template with every commented `key = value` example switched on."""
    return re.sub(r"(?m)^# ?([a-z_0-9]+ *= *\S.*)$", r"\1", config.template_text())


def listening_ports(sut: config.Sut) -> list[tuple[str, int]]:
    out = [(f"[network] {f} {s}", getattr(ep, s).port) for f, ep in sut.network.items() for s in ("https", "http")
           if getattr(ep, s)]
    out += [(f"[simulators] {n}", a.port) for n, a in sut.simulators.items()]
    out += [(f"[dut] {n}", a.port) for n, a in sut.dut.items() if isinstance(a, Address)]
    out += [(f"[[pacs]] {p.name} {k}", getattr(p, k)) for p in sut.pacs for k in ("dicom_port", "http_port")]
    return out


@pytest.mark.parametrize("text", [config.template_text(), uncommented_template()], ids=["as-written", "uncommented"])
def test_template_has_no_collision_and_no_privileged_port(text, tmp_path):
    sut = config.parse(text, "sut.toml", base_dir=tmp_path)  # strict: collisions would raise
    ports = listening_ports(sut)
    assert all(port >= 1024 for _, port in ports), ports
    assert len({port for _, port in ports}) == len(ports), ports  # all on 127.0.0.1 (Orthanc: any interface)


def test_uncommented_template_switches_on_every_example(tmp_path):
    sut = config.parse(uncommented_template(), "sut.toml", base_dir=tmp_path)
    assert set(sut.simulators) == {"igc", "whitelist", "dmp", "psc", "proxy", "peers", "peers2"}
    assert sut.dut_address("conso") is not None and sut.dut_value("psc_client_id") == "drimbox-dut"
    assert sut.pacs[0].dicomweb_user and sut.pacs[0].dicomweb_password
    assert sut.pki_kit == (tmp_path / "drimcheck-kit").resolve()


def test_template_comments_point_at_things_that_exist():
    text = config.template_text()
    headings = {m.strip("# ").strip() for m in (REPO / "README.md").read_text().splitlines() if m.startswith("#")}
    for section in re.findall(r'README, section "([^"]+)"', text):
        assert f"### {section}".strip("# ") in headings, section
    for doc in re.findall(r"docs/[a-z-]+\.md", text):
        assert (REPO / doc).is_file(), doc
    for section in re.findall(r"\[([a-z]+)\] [a-z_]+", text):
        assert section in config.SECTIONS, section
    assert "Décrire la DRIMbox testée" not in text


def with_template(old: str, new: str) -> str:
    text = config.template_text()
    assert old in text
    return text.replace(old, new)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        config.parse(text, "sut.toml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("sut.toml : "), message
    assert "Traceback" not in message and len(message) < 600
    return message


@pytest.mark.parametrize("old, new, fragment", [
    ('roles = ["source"]', 'roles = ["viewer"]', "[sut] roles : rôle inconnu « viewer »"),
    ('roles = ["source"]', 'roles = ["sourse"]', "(vouliez-vous dire source ?)"),
    ('roles = ["source"]', 'roles = ["source", "source"]', "deux fois"),
    ('roles = ["source"]', "roles = 3", "[sut] roles : une liste non vide"),
    ('registry = "349"', 'registry = ""', "[sut] registry : la chaîne ne doit pas être vide"),
    ('name = "Ma DRIMbox"', "name = 12", "[sut] name : une chaîne est attendue, pas un entier"),
    ('db = "db1.349.mesimagesmedicales.fr"', 'db = "db1.350.mesimagesmedicales.fr"', "[[pacs]] n°1 db : dbN.349"),
    ('vi = "vi1.349.mesimagesmedicales.fr"', 'vi = "vi2.349.mesimagesmedicales.fr"', "même numéro N"),
    ('https = "127.0.0.1:8443"', 'https = "127.0.0.1"', '"hôte:port" est attendu'),
    ('https = "127.0.0.1:8443"', 'https = "auto"', "« auto » n'est permis qu'avec embedded"),
    ('https = "127.0.0.1:8443"', 'https = "127.0.0.1:0"', "port de 1 à 65535"),
    ('https = "127.0.0.1:8443"', 'https = "127.0.0.1:²"', "port de 1 à 65535"),
    ('https = "127.0.0.1:8443"', 'https = "bad host:8443"', "nom d'hôte ou adresse IP invalide"),
    ('https = "127.0.0.1:8443"', "https = 8443", '"hôte:port" est attendu, pas un entier'),
    ('url = "https://db1.349.mesimagesmedicales.fr/q/health"', 'url = "http://db1.349.mesimagesmedicales.fr/q/health"',
     "[health] url : URL https"),
    ('url = "https://db1.349.mesimagesmedicales.fr/q/health"', 'url = "https://db1.349.mesimagesmedicales.fr:99999/"',
     "[health] url : URL invalide"),
    ('url = "https://db1.349.mesimagesmedicales.fr/q/health"', 'url = "https://"', "[health] url : URL https"),
    ('url = "https://db1.349.mesimagesmedicales.fr/q/health"', 'url = "https://vi1.349.mesimagesmedicales.fr/q"',
     "FQDN db déclaré"),
    ("request_s = 5", "request_s = -1", "[timeouts] request_s : une durée en secondes > 0"),
    ("request_s = 5", "request_s = 0", "[timeouts] request_s : une durée"),
    ("request_s = 5", 'request_s = "5"', "[timeouts] request_s : une durée"),
    ("request_s = 5", "request_s = true", "[timeouts] request_s : une durée"),
    ("trust_anchors = []", 'trust_anchors = ["nope.pem"]', "fichier d'ancre de confiance introuvable"),
    ("trust_anchors = []", 'trust_anchors = "nope.pem"', "[tls] trust_anchors : une liste de chemins"),
    ("dicom_port = 14242", "dicom_port = 70000", "[[pacs]] n°1 dicom_port : un numéro de port de 1 à 65535"),
    ("dicom_port = 14242", "dicom_port = 0", "[[pacs]] n°1 dicom_port : un numéro de port de 1 à 65535"),
    ("dicom_port = 14242", "dicom_port = true", "[[pacs]] n°1 dicom_port"),
    ("dicom_port = 14242\n", "", "[[pacs]] n°1 dicom_port : numéro de port obligatoire"),
    ('aet = "DRIMCHECK_PACS"', 'aet = "DRIMCHECK_PACS_TOO_LONG"', "[[pacs]] n°1 aet : titre AE DICOM invalide"),
    ('aet = "DRIMCHECK_PACS"', 'aet = "BAD\\\\AET"', "titre AE DICOM invalide"),
    ('aet = "DRIMCHECK_PACS"', 'aet = "   "', "titre AE DICOM invalide"),
    ('iocm_aet = "DRIMBOX"', 'iocm_aet = "DRIMBOX-0123456789"', "[dut] iocm_aet : titre AE DICOM invalide"),
    ('wado_root = "/api/source"', 'wado_root = "api/source"', "[dut] wado_root : un chemin d'URL"),
    ('mllp = "127.0.0.1:2575"', "mllp = true", "[dut] mllp"),
    ('before_campaign = ""', "before_campaign = 1", "[hooks] before_campaign : une chaîne est attendue"),
    ('http_port = 18042', 'http_port = 18042\ndicomweb_user = "u"', "dicomweb_user et dicomweb_password"),
    ('http_port = 18042', 'http_port = 18042\ndicomweb_user = "a:b"\ndicomweb_password = "p"', "ni « : »"),
])
def test_each_mistake_gives_one_line_naming_the_field(old, new, fragment):
    assert fragment in error_of(with_template(old, new))


@pytest.mark.parametrize("old, new, fragment", [
    ('before_campaign = ""', 'before_campain = ""', "clé inconnue [hooks] before_campain (vouliez-vous dire before_campaign ?)"),
    ("request_s = 5", "request_S = 5", "clé inconnue [timeouts] request_S (vouliez-vous dire request_s ?)"),
    ('igc = "127.0.0.1:18080"', 'pcs = "127.0.0.1:18444"', "clé inconnue [simulators] pcs (vouliez-vous dire psc ?)"),
    ("[hooks]", "[hookz]", "section inconnue [hookz] (vouliez-vous dire [hooks] ?)"),
    ("[timeouts]", "[timeout]", "section inconnue [timeout] (vouliez-vous dire [timeouts] ?)"),
    ("dicom_port = 14242", "dicom_prt = 14242", "clé inconnue [[pacs]] n°1 dicom_prt (vouliez-vous dire dicom_port ?)"),
    ('{ https = "127.0.0.1:8443"', '{ htps = "127.0.0.1:8443"',
     f'clé inconnue [network] "{DB1}" htps (vouliez-vous dire https ?)'),
    ('mllp = "127.0.0.1:2575"', 'mlp = "127.0.0.1:2575"', "clé inconnue [dut] mlp (vouliez-vous dire mllp ?)"),
    ('editor = "Éditeur"', 'editeur = "Éditeur"', "clé inconnue [sut] editeur (vouliez-vous dire editor ?)"),
    ("trust_anchors = []", "trust_anchor = []", "clé inconnue [tls] trust_anchor (vouliez-vous dire trust_anchors ?)"),
    ('url = "https://', 'uri = "https://', "clé inconnue [health] uri (vouliez-vous dire url ?)"),
    ('"vi1.349.mesimagesmedicales.fr" = {', '"vi3.349.mesimagesmedicales.fr" = {',
     '[network] "vi3.349.mesimagesmedicales.fr" : FQDN non déclaré par un [[pacs]] (vouliez-vous dire vi1.'),
    ('before_campaign = ""', 'xyzzy = ""', "clé inconnue [hooks] xyzzy"),
])
def test_misspelt_names_are_refused_with_the_closest_valid_one(old, new, fragment):
    assert fragment in error_of(with_template(old, new))


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e308", "3601", "1e400", "10000000000000000000000"])
@pytest.mark.parametrize("key", ["request_s", "health_up_s", "health_down_s", "whitelist_settle_s"])
def test_timeouts_must_be_finite_and_bounded(key, value):
    text = re.sub(rf"(?m)^{key} = \S+", f"{key} = {value}", config.template_text())
    assert f"{key} = {value}" in text
    assert f"[timeouts] {key} : une durée en secondes" in error_of(text)


def test_timeout_bounds_accepted():
    text = config.template_text().replace("request_s = 5", "request_s = 3600").replace(
        "whitelist_settle_s = 1", "whitelist_settle_s = 0").replace("quiet_s = 1.5", "quiet_s = 0.01")
    t = config.parse(text, "sut.toml").timeouts
    assert (t.request_s, t.whitelist_settle_s, t.quiet_s) == (3600.0, 0.0, 0.01)


@pytest.mark.parametrize("text, fragment", [
    ("sut = 3\n", "[sut] : une table est attendue, pas un entier"),
    ("pacs = 3\n[sut]\nname='x'\nroles=['source']\nregistry='349'\n", "[[pacs]] est un entier"),
    ('pacs = [1]\n[sut]\nname="x"\nroles=["source"]\nregistry="349"\n', "[[pacs]] n°1 : une table est attendue"),
])
def test_integer_where_a_table_is_expected(text, fragment):
    assert fragment in error_of(text)


@pytest.mark.parametrize("section", ["network", "health", "tls", "timeouts", "hooks", "simulators", "dut", "pki"])
def test_integer_where_a_section_table_is_expected(section):
    text = config.template_text()
    start = text.index(f"\n[{section}]\n") if f"\n[{section}]\n" in text else len(text)
    end = text.find("\n[", start + 1)
    text = text[:start] + text[end if end != -1 else len(text):]  # drop the section, then give it as an integer
    text = f"{section} = 3\n" + text
    assert f"[{section}] : une table est attendue, pas un entier" in error_of(text)


def test_integer_where_a_network_entry_is_expected():
    text = with_template(f'"{VI1}" = {{ https = "127.0.0.1:9443", http = "127.0.0.1:9080" }}', f'"{VI1}" = 3')
    assert f'[network] "{VI1}" : une table est attendue, pas un entier' in error_of(text)


@pytest.mark.parametrize("text", [
    "a = " + "[" * 5000 + "]" * 5000,
    "a = " + "{b=" * 3000 + "1" + "}" * 3000,
    "[sut]\n" + "x." * 3000 + "y = 1\n",
    "a = " + "9" * 5000,
])
def test_pathological_toml_is_one_line(text):
    message = error_of(text)
    assert "TOML invalide" in message or "clé inconnue [sut] x" in message or "section inconnue [a]" in message


def test_unreadable_files(tmp_path):
    def load_error(path) -> str:
        with pytest.raises(ConfigError) as err:
            config.load(path)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "introuvable" in load_error(tmp_path / "absent.toml")
    assert "est un répertoire" in load_error(tmp_path)
    assert "trop volumineux" in load_error("/dev/zero")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(config.template_text().encode("utf-8").replace("É".encode(), "É".encode("latin-1")))
    assert "n'est pas encodée en UTF-8" in load_error(latin1)
    assert "TOML invalide" in error_of("[sut")
    assert "section [sut] manquante" in error_of("[health]\nurl='x'")


def test_control_characters_in_keys_are_escaped_in_the_message():
    message = error_of(config.template_text().replace("[hooks]\n", '[hooks]\n"evil\\u001b[2J\\nkey" = "x"\n'))
    assert "\x1b" not in message and "\\x1b" in message and "clé inconnue [hooks]" in message


@pytest.mark.parametrize("first, second, both", [
    ('dmp = "127.0.0.1:19443"', 'dmp = "127.0.0.1:9443"', ("[network] vi1.349.mesimagesmedicales.fr https", "[simulators] dmp")),
    ('dmp = "127.0.0.1:19443"', 'dmp = "0.0.0.0:8080"', ("[network] db1.349.mesimagesmedicales.fr http", "[simulators] dmp")),
    ('dmp = "127.0.0.1:19443"', 'dmp = "localhost:2575"', ("[dut] mllp", "[simulators] dmp")),
    ('dmp = "127.0.0.1:19443"', 'dmp = "127.0.0.1:14242"', ("[[pacs]] n°1 dicom_port", "[simulators] dmp")),
    ('iocm = "127.0.0.1:11112"', 'iocm = "127.0.0.1:2575"', ("[dut] mllp", "[dut] iocm")),
    ('http = "127.0.0.1:9080"', 'http = "127.0.0.1:9443"', ("[network] vi1.349.mesimagesmedicales.fr https",
                                                           "[network] vi1.349.mesimagesmedicales.fr http")),
])
def test_port_collisions_name_both_listeners(first, second, both):
    message = error_of(with_template(first, second))
    assert "conflit d'adresses" in message and all(b in message for b in both), message


def test_no_collision_across_hosts_nor_between_fqdns_sharing_one_https_server():
    text = with_template('dmp = "127.0.0.1:19443"', 'dmp = "127.0.0.2:9443"')  # another loopback address
    text = text.replace('"vi1.349.mesimagesmedicales.fr" = { https = "127.0.0.1:9443", http = "127.0.0.1:9080" }',
                        '"vi1.349.mesimagesmedicales.fr" = { https = "127.0.0.1:8443", http = "127.0.0.1:8080" }')
    sut = config.parse(text, "sut.toml")  # db1 and vi1 on one server, told apart by SNI and Host
    assert sut.endpoint(VI1).https == sut.endpoint(DB1).https


def test_addresses_ipv6_and_embedded_auto():
    sut = config.parse(with_template('dmp = "127.0.0.1:19443"', 'dmp = "[::1]:19443"'), "sut.toml")
    assert sut.simulator_address("dmp") == Address("::1", 19443)
    ref = config.load(None)
    assert ref.simulator_address("dmp").port == 0 and ref.pacs[0].dicom_port == 0  # "auto" / 0: embedded only


def test_simulators_and_dut_sections():
    text = config.template_text()
    start = text.index("\n[simulators]\n") + 1
    text = text[:start] + '[simulators]\ndmp = "10.0.0.5:9443"\npeers3 = "10.0.0.5:9444"\n[dut]\nmllp = "10.0.0.9:2575"\niocm_aet = "DRIMBOX"\n'
    sut = config.parse(text, "sut.toml")
    assert sut.simulator_address("dmp") == Address("10.0.0.5", 9443)
    assert sut.simulator_address("peers3") == Address("10.0.0.5", 9444)
    assert sut.dut_address("mllp") == Address("10.0.0.9", 2575)
    assert sut.dut_value("iocm_aet") == "DRIMBOX" and sut.simulator_address("psc") is None


def test_pki_kit_and_stable_dicomweb_credentials(tmp_path):
    text = with_template('# kit = "drimcheck-kit"', 'kit = "../kit"').replace(
        "http_port = 18042", 'http_port = 18042\ndicomweb_user = "drimbox"\ndicomweb_password = "s3cret"')
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "sut.toml"
    path.write_text(text)
    sut = config.load(path)
    assert sut.pki_kit == (tmp_path / "kit").resolve()  # relative to the sut.toml, need not exist yet
    assert (sut.pacs[0].dicomweb_user, sut.pacs[0].dicomweb_password) == ("drimbox", "s3cret")
    effective = sut.effective()
    assert effective["pacs"][0]["dicomweb_password"] == "***" and "s3cret" not in repr(effective)
    assert effective["pki"]["kit"] == str((tmp_path / "kit").resolve())


def test_every_key_the_code_reads_is_a_key_the_parser_accepts():
    """Strictness must not refuse a key some simulator or step reads from the Sut."""
    sources = [p for d in ("drimcheck", "simulators", "steps") for p in (REPO / d).rglob("*.py")]
    text = "\n".join(p.read_text() for p in sources)
    used = {
        "hooks": set(re.findall(r"""(?:hooks\.get|run_hook)\(["']([a-z_]+)["']""", text)),
        "dut": set(re.findall(r"""dut_(?:value|address)\(["']([a-z_]+)["']""", text)),
        "simulators": set(re.findall(r"""simulator(?:_address)?\(["']([a-z_]+)["']""", text)),
    }
    assert used["hooks"] and used["dut"] and used["simulators"]
    assert used["hooks"] <= set(config.HOOK_KEYS), used["hooks"]
    assert used["dut"] <= set(config.DUT_ADDRESS_KEYS + config.DUT_VALUE_KEYS), used["dut"]
    assert used["simulators"] <= set(config.SIMULATOR_KEYS), used["simulators"]
    from drimcheck.campaign import SIMULATORS

    assert {name for name, _ in SIMULATORS} <= set(config.SIMULATOR_KEYS)
