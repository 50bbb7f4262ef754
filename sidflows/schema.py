"""The published JSON Schema of the referral document (also in config/)."""

from __future__ import annotations

from typing import Any

from sidflows.referral import ReferralDocument

SCHEMA_ID = "https://sidflows.invalid/schema/referral.schema.json"


def referral_schema() -> dict[str, Any]:
    schema = ReferralDocument.model_json_schema(by_alias=True, mode="validation")
    return {
        **schema,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "sidflows referral document",
        "description": (
            "A child's referral (docs/formats.md). Dates are ISO YYYY-MM-DD; unknown fields "
            "are refused. Cross-field rules (end after start, dates after birth and not "
            "after received, age under 18) are checked by sidflows beyond this schema."
        ),
    }
