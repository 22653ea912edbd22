"""PACS simulator: a managed real Orthanc and deterministic synthetic studies."""

from simulators.pacs.orthanc import NODELAY_HANDLER, Orthanc, OrthancConfig, OrthancError
from simulators.pacs.studies import Instance, Patient, Series, SyntheticStudy, make_patient, make_study

__all__ = [
    "NODELAY_HANDLER", "Orthanc", "OrthancConfig", "OrthancError",
    "Instance", "Patient", "Series", "SyntheticStudy", "make_patient", "make_study",
]
