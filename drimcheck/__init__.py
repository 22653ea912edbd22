"""drimcheck: conformance harness and simulator suite for DRIMbox gateways (DRIM-M)."""

__version__ = "0.1.0"
