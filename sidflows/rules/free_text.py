"""The referral's free text: not read by the rules, and the plan says so
(docs/clinical-reference.md §5.11).

A referral's ``reason`` may carry what no structured field holds (a household varicella
contact, travel, hyposplenism after splenic irradiation). The rules parse no free text: a
non-empty reason becomes a decision for the clinician to read it. The text itself is not
copied into the plan (it may name people; plans reach Prefect and notifications).
"""

from __future__ import annotations

from sidflows.rules.context import PlanContext
from sidflows.rules.model import Decision

SOURCE = (
    "unit policy (the rules read structured fields only; free text is the clinician's to "
    "read), docs/formats.md (referral reason), docs/clinical-reference.md §5.11"
)


def free_text_checks(ctx: PlanContext) -> list[Decision]:
    """A decision for the clinician when the referral carries a non-empty ``reason``."""
    reason = (ctx.referral.reason or "").strip()
    if not reason:
        return []
    return [
        Decision(
            "grading",
            "the referral's reason is free text the rules did not read: check it",
            f"the referral's reason ({len(reason)} characters) is not read by any rule (no "
            "free-text parsing): an exposure (a varicella or measles contact), travel, a "
            "risk condition (asplenia) or anything else it says is not in this plan until "
            "the clinician reads it and records it in its own field or acts on it",
            SOURCE,
        )
    ]
