"""PACS simulator: a managed real Orthanc and deterministic synthetic studies."""

from simulators.pacs.orthanc import (
    DEFAULT_CALLING_AETS,
    NODELAY_HANDLER,
    SCU_AET,
    Orthanc,
    OrthancConfig,
    OrthancError,
)
from simulators.pacs.studies import Instance, Patient, Series, SyntheticStudy, make_patient, make_study

__all__ = [
    "DEFAULT_CALLING_AETS", "NODELAY_HANDLER", "SCU_AET", "Orthanc", "OrthancConfig", "OrthancError",
    "Instance", "Patient", "Series", "SyntheticStudy", "make_patient", "make_study",
]
