"""The pathway's steps as store transactions: what the flows (and the CLI) call.

Each function is one transaction: it either happens whole or not at all, so a
crash between two steps leaves nothing half-done that the next sweep cannot
finish. Results carry refs and keys only, never identity. Each step receives
the unit's configuration (``sidflows.unit.Unit``) and reads nothing else.

- intake: a referral, a treatment change, a lab result (and the intents they give);
- plans: plan versions, the clinician's answer, the family's consent, activation;
- items: an item on its day (held while a re-plan waits, §4.8) and its outcome;
- day: the day's notifications, run ids, counts.
"""

from sidflows.service.common import (
    RETRIES_ON_CONFLICT,
    Activated,
    ItemStep,
    Proposed,
    Referred,
    RunSpec,
    next_runs,
)
from sidflows.service.day import (
    active_refs,
    notify_day,
    notify_day_timed,
    open_item_count,
    record_run_ids,
)
from sidflows.service.intake import (
    pathway_key,
    record_lab_result,
    record_treatment_change,
    refer,
)
from sidflows.service.items import HeldStep, item_due, item_hold, item_outcome
from sidflows.service.plans import (
    activate,
    consent,
    decide,
    held,
    propose,
    unfinished_activations,
)

__all__ = [
    "RETRIES_ON_CONFLICT",
    "Activated",
    "HeldStep",
    "ItemStep",
    "Proposed",
    "Referred",
    "RunSpec",
    "activate",
    "active_refs",
    "consent",
    "decide",
    "held",
    "item_due",
    "item_hold",
    "item_outcome",
    "next_runs",
    "notify_day",
    "notify_day_timed",
    "open_item_count",
    "pathway_key",
    "propose",
    "record_lab_result",
    "record_run_ids",
    "record_treatment_change",
    "refer",
    "unfinished_activations",
]
