# drimcheck — the two entry points are `make demo` and `make test` (see README).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
APT_PACKAGES := orthanc orthanc-dicomweb dcmtk xmlsec1 libnss-wrapper gcc libc6-dev gnutls-bin chromium fonts-dejavu-core postgresql
STAMP := $(VENV)/.setup-stamp
# Stock Debian images lack the interpreter's venv module (and slim ones python3 itself).
APT_PACKAGES += python3 python3-venv

.PHONY: setup demo demo-external test selftest selftest-full unit bench clean

## setup: Debian packages (no Orthanc service left running) + .venv with the drimcheck command
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup-system.sh
	@bash scripts/setup-system.sh $(APT_PACKAGES)
	@test -x $(VENV)/bin/pip || rm -rf $(VENV)  # a venv left without pip (no python3-venv then) is made again
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install --disable-pip-version-check -q -e ".[test]" --config-settings editable_mode=compat
	@touch $(STAMP)
	@echo "setup: ok ($(VENV)/bin/drimcheck)"

## demo: a full campaign against the embedded reference DRIMbox
demo: setup
	@$(VENV)/bin/drimcheck run

## demo-external: the reference DRIMbox tested as an EXTERNAL DUT, as a vendor would (examples/external-dut/):
## its test kit (made once, then reused as a vendor does), then a campaign whose hooks start and stop it by PID
demo-external: setup
	@test -f examples/external-dut/kit/harness/kit.json || \
	  $(VENV)/bin/drimcheck kit --sut examples/external-dut/sut.toml --out examples/external-dut/kit
	@$(VENV)/bin/drimcheck run --sut examples/external-dut/sut.toml

## test: the project's own test suite, then the selftest (golden reference + every mutant)
test: setup
	@$(VENV)/bin/pytest -q -n 2 --dist worksteal tests; rc=$$?; if [ $$rc -ne 0 ]; then echo "pytest exit code $$rc (5 = no test collected) -> failure"; exit 1; fi
	@$(VENV)/bin/drimcheck selftest --jobs 4 --out runs/selftest

selftest: setup
	@$(VENV)/bin/drimcheck selftest --jobs 4 --out runs/selftest

## selftest-full: the complete cross-matrix (every mutant against every scenario, about 3 times the CPU of the
## targeted selftest that `make test` runs); nightly or before a release. In a CI matrix: --shard K/N, then --combine
selftest-full: setup
	@$(VENV)/bin/drimcheck selftest --full --jobs 4 --out runs/selftest-full

## bench: measurements (not tests): whitelist verification at national scale (vs xmlsec1), a campaign's wall
## time, image retrieval on a 1,300-instance study (direct, via a peer, by the reference Conso), Source publication
## of a 3,000-instance study
bench: setup
	@$(PY) bench/run_all.py

clean:
	rm -rf runs build *.egg-info
