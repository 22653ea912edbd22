"""sut.toml: the template and the embedded reference parse; every mistake is one line naming the field."""

from __future__ import annotations

import pytest

from drimcheck import config
from drimcheck.config import Address, ConfigError


def test_embedded_reference_description():
    sut = config.load(None)
    assert sut.embedded == "reference" and "source" in sut.roles
    assert sut.health_fqdn in {p.db for p in sut.pacs}
    assert all(ep.https is not None for ep in sut.network.values())


def test_template_written_by_init_is_a_valid_description():
    sut = config.parse(config.template_text(), "sut.toml")
    assert sut.embedded is None
    assert sut.endpoint("db1.349.mesimagesmedicales.fr").https == Address("127.0.0.1", 8443)
    assert sut.timeouts.health_down_s == 10


def with_template(old: str, new: str) -> str:
    text = config.template_text()
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize("old, new, message", [
    ('roles = ["source"]', 'roles = ["viewer"]', "'roles' must be"),
    ('registry = "349"', 'registry = ""', "'registry' is required"),
    ('db = "db1.349.mesimagesmedicales.fr"', 'db = "db1.350.mesimagesmedicales.fr"', "'db' must be db"),
    ('vi = "vi1.349.mesimagesmedicales.fr"', 'vi = "vi2.349.mesimagesmedicales.fr"', "same number N"),
    ('https = "127.0.0.1:8443"', 'https = "127.0.0.1"', 'expected "host:port"'),
    ('https = "127.0.0.1:8443"', 'https = "auto"', "'auto' is only allowed"),
    ('url = "https://db1.349.mesimagesmedicales.fr/q/health"', 'url = "http://db1.349.mesimagesmedicales.fr/q/health"', "https URL"),
    ("request_s = 5", "request_s = -1", "positive number"),
    ("trust_anchors = []", 'trust_anchors = ["nope.pem"]', "trust anchor file not found"),
    ("[hooks]", "[hookz]", "unknown section"),
    ("dicom_port = 14242", "dicom_port = 70000", "'dicom_port' must be a port"),
])
def test_each_mistake_gives_one_line_naming_the_field(old, new, message):
    with pytest.raises(ConfigError) as err:
        config.parse(with_template(old, new), "sut.toml")
    assert message in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith("sut.toml")


def test_not_toml_missing_file_and_missing_sections(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.parse("[sut", "x.toml")
    with pytest.raises(ConfigError, match="missing \\[sut\\]"):
        config.parse("[health]\nurl='x'", "x.toml")
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "absent.toml")


def test_simulators_and_dut_sections():
    text = config.template_text()
    start = text.index("\n[simulators]\n") + 1
    text = text[:start] + '[simulators]\ndmp = "10.0.0.5:9443"\n[dut]\nmllp = "10.0.0.9:2575"\niocm_aet = "DRIMBOX"\n'
    sut = config.parse(text, "sut.toml")
    assert sut.simulator_address("dmp") == Address("10.0.0.5", 9443)
    assert sut.dut_address("mllp") == Address("10.0.0.9", 2575)
    assert sut.dut_value("iocm_aet") == "DRIMBOX" and sut.simulator_address("psc") is None
