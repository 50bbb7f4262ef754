"""FHIR R4 in and out (``fhir.resources`` R4B models, R4-compatible): docs/fhir.md."""

from sidflows.fhir.inbound import (
    derive_ref,
    lab_result_from_bundle,
    referral_from_bundle,
    treatment_change_from_bundle,
)
from sidflows.fhir.outbound import plan_bundle

__all__ = [
    "derive_ref",
    "lab_result_from_bundle",
    "plan_bundle",
    "referral_from_bundle",
    "treatment_change_from_bundle",
]
