"""An item on its day: due, then its outcome and what follows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, get_args

import annotated_types
from sqlmodel import col, select

from sidflows.errors import InvalidInput
from sidflows.notify.messages import Notice, item_facts
from sidflows.plan_document import plan_document
from sidflows.planning import plan_changes, propose_plan
from sidflows.referral import LabEntry
from sidflows.rules.outcomes import OutcomeContext, decide_outcome, wants_plan_comparison
from sidflows.service.common import (
    ItemStep,
    RunSpec,
    queue,
)
from sidflows.staff import Role, normalise
from sidflows.store import items, patients
from sidflows.store.db import session_scope
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    AuditEntry,
    Booking,
    CarePlan,
    ItemStatus,
    Patient,
    PlanItem,
    PlanStatus,
)
from sidflows.store.states import audit_item
from sidflows.unit import Unit


@dataclass
class HeldStep(ItemStep):
    """The item's day has come while it is held (docs/clinical-reference.md §4.8)."""

    reason: str = ""
    held_for: int | None = None


def item_due(ref: str, *, plan_version: int, item_key: str, actor: str) -> ItemStep:
    """The item's day has come: mark it due (unless it was cancelled or superseded).

    A held item is not marked due: its day is recorded as come while held, and the
    step says why (a ``HeldStep``), so its run asks no one to act.
    """
    with session_scope() as session:
        item = items.get_item(session=session, ref=ref, key=item_key, version=plan_version)
        if item.hold_reason is not None and item.status in OPEN_ITEM_STATUSES:
            audit_item(
                session,
                item,
                actor,
                "day came while held",
                {"item_status": item.status},
                {"held_for": item.held_for, "hold_reason": item.hold_reason},
            )
            return HeldStep(
                ref,
                item_key,
                item.kind,
                "held",
                reason=item.hold_reason,
                held_for=item.held_for,
            )
        if item.status in (ItemStatus.planned, ItemStatus.scheduled):
            items.set_item_status(session=session, item=item, status=ItemStatus.due, actor=actor)
        return ItemStep(ref, item_key, item.kind, item.status)


def item_hold(ref: str, *, plan_version: int, item_key: str) -> tuple[str, str | None]:
    """The item's status and, while it is held, why."""
    with session_scope() as session:
        item = items.get_item(session=session, ref=ref, key=item_key, version=plan_version)
        return str(item.status), item.hold_reason


def item_outcome(
    ref: str,
    *,
    plan_version: int,
    item_key: str,
    outcome: dict[str, Any],
    actor: str,
    on: dt.date,
    unit: Unit,
    by: str | None = None,
) -> ItemStep:
    """Record the outcome and say what follows (next run, review, escalation, re-plan).

    ``by``, when given, is who records it: someone on the staff roster whose role may
    (``outcome_recorder``), audited as the roster names them instead of ``actor``.
    """
    if by is not None:
        actor = outcome_recorder(unit, by, str(outcome.get("result") or "given"))
    with session_scope() as session:
        # One outcome per item, whoever sends it at once (PostgreSQL: the child's row lock).
        patients.get_patient(session=session, ref=ref, lock=True)
        item = items.get_item(session=session, ref=ref, key=item_key, version=plan_version)
        plan = session.get(CarePlan, item.plan_id)
        assert plan is not None
        if plan.status != PlanStatus.active:
            return ItemStep(ref, item_key, item.kind, "superseded")
        follow = items.record_outcome(
            session=session, item=item, outcome=outcome, actor=actor, on=on, protocol=unit.protocol
        )
        session.flush()
        queue(session, unit, *_outcome_notices(session, unit, item, plan, follow, on))
        if wants_plan_comparison(
            item.kind, replan=follow.replan, review_reason=follow.review_reason
        ):
            patient = patients.get_patient(session=session, ref=ref)
            referral = patients.referral_for(session=session, patient=patient, today=on)
            last_review = items.last_plan_review(session=session, patient=patient, today=on)
            fresh = plan_document(
                propose_plan(
                    referral,
                    today=on,
                    protocol=unit.protocol,
                    calendar=unit.calendar,
                    last_review=last_review,
                )
            )
            compared = decide_outcome(
                OutcomeContext.build(
                    kind=item.kind,
                    key=item.key,
                    details=item.details,
                    outcome=outcome,
                    protocol=unit.protocol,
                    today=on,
                    plan_changes=tuple(plan_changes(plan.document, fresh)),
                )
            )
            follow.replan, follow.review_reason = compared.replan, compared.review_reason
        following = session.exec(
            select(PlanItem)
            .where(
                PlanItem.plan_id == plan.id,
                PlanItem.stream == item.stream,
                col(PlanItem.status).in_(OPEN_ITEM_STATUSES),
            )
            .order_by(col(PlanItem.due), col(PlanItem.id))
        ).first()
        next_run = (
            RunSpec(ref, plan.version, following.key, following.kind, following.due)
            if following is not None
            else None
        )
        return ItemStep(ref, item_key, item.kind, item.status, follow, next_run)


def _outcome_notices(
    session: Any, unit: Unit, item: PlanItem, plan: CarePlan, follow: items.FollowUp, on: dt.date
) -> list[Notice]:
    patient = session.get(Patient, item.patient_id)
    assert patient is not None
    ref = patient.ref
    found = []
    if follow.escalate and item.kind == "ig_session":
        chair = session.exec(select(Booking.chair).where(Booking.item_id == item.id)).first()
        facts = item_facts(
            kind=item.kind,
            due=item.due.isoformat(),
            details=item.details,
            chair=chair,
            language=unit.notifications.language,
        )
        found.append(
            Notice(
                "ig_session_missed",
                ref,
                {**facts, "when": on.isoformat()},
                item_id=item.id,
                item_key=item.key,
                plan_version=plan.version,
            )
        )
    if follow.low_trough is not None:
        igg, target = follow.low_trough
        found.append(
            Notice(
                "trough_below_target",
                ref,
                {"igg": f"{igg:g}", "target": f"{target:g}", "when": on.isoformat()},
                item_id=item.id,
                item_key=item.key,
                plan_version=plan.version,
            )
        )
    return found


# ------------------------------------------------------------------------- outcomes from anywhere


@dataclass(frozen=True)
class ResultField:
    """A result an outcome may carry: its name in a lab result (docs/formats.md §4), the
    short name ``sidflows record --value`` also takes, its unit and the range a lab result
    accepts (``sidflows.referral.LabEntry``, the one source of the limits)."""

    field: str
    label: str
    unit: str
    what: str
    low: float
    high: float
    low_exclusive: bool

    def limits(self) -> str:
        """The range as a person reads it: ``0-40``, or ``more than 0, at most 20``."""
        if self.low_exclusive:
            return f"more than {self.low:g}, at most {self.high:g}"
        return f"{self.low:g}-{self.high:g}"

    def describe(self) -> str:
        """The form's text for the field: what, unit, range."""
        return f"{self.what}, {self.unit} ({self.limits()})"

    def refusal(self, value: float) -> str | None:
        """Why ``value`` cannot be this result, or None."""
        below = value <= self.low if self.low_exclusive else value < self.low
        if below or value > self.high:
            return f"{value:g} {self.unit} is out of range {self.limits()}"
        return None


# Short names and units of the results (the limits are LabEntry's, read below).
_RESULT_NAMES: tuple[tuple[str, str, str, str], ...] = (
    ("igg_g_l", "IgG", "g/L", "IgG (a trough, or a reassessment's)"),
    ("iga_g_l", "IgA", "g/L", "IgA"),
    ("igm_g_l", "IgM", "g/L", "IgM"),
    ("igg_lower_limit_g_l", "IgG-LLN", "g/L", "the laboratory's lower limit of IgG for age"),
    ("cd4_per_ul", "CD4", "cells/uL", "CD4 count"),
    ("cd4_percent", "CD4%", "% of lymphocytes", "CD4 percentage"),
    ("cd19_per_ul", "CD19", "cells/uL", "CD19 (B cells) count"),
    (
        "cd19_lower_limit_per_ul",
        "CD19-LLN",
        "cells/uL",
        "the laboratory's lower limit of CD19 (judges B-cell recovery)",
    ),
    ("anc_per_ul", "ANC", "neutrophils/uL", "absolute neutrophil count"),
    (
        "pneumococcal_fold_rise",
        "pneumococcal-fold-rise",
        "fold",
        "fold rise of pneumococcal antibodies after a polysaccharide challenge",
    ),
)
# Other names ``--value`` takes for a result (compared ignoring case).
_RESULT_ALIASES = {"neutrophils": "anc_per_ul"}


def _limits(name: str) -> tuple[float, float, bool]:
    """LabEntry's bounds of one result: (low, high, whether low itself is refused)."""
    annotation = LabEntry.model_fields[name].annotation
    low, high, exclusive = 0.0, float("inf"), False
    for member in get_args(annotation):
        for info in get_args(member)[1:]:
            for bound in getattr(info, "metadata", ()):
                if isinstance(bound, annotated_types.Ge):
                    low = float(bound.ge)  # type: ignore[arg-type]
                elif isinstance(bound, annotated_types.Gt):
                    low, exclusive = float(bound.gt), True  # type: ignore[arg-type]
                elif isinstance(bound, annotated_types.Le):
                    high = float(bound.le)  # type: ignore[arg-type]
    return low, high, exclusive


def _result_fields() -> tuple[ResultField, ...]:
    named = {name for name, *_ in _RESULT_NAMES}
    unnamed = set(LabEntry.model_fields) - {"date"} - named
    assert not unnamed, f"results of a lab entry without a unit here: {sorted(unnamed)}"
    return tuple(
        ResultField(name, label, unit, what, *_limits(name))
        for name, label, unit, what in _RESULT_NAMES
    )


RESULT_FIELDS: tuple[ResultField, ...] = _result_fields()
_BY_NAME = {
    **{normalise(r.field): r for r in RESULT_FIELDS},
    **{normalise(r.label): r for r in RESULT_FIELDS},
    **{
        normalise(alias): r
        for alias, name in _RESULT_ALIASES.items()
        for r in RESULT_FIELDS
        if r.field == name
    },
}


def result_field(name: str) -> ResultField | None:
    """The result ``name`` stands for: its field (``igg_g_l``) or short name (``IgG``)."""
    return _BY_NAME.get(normalise(name))


# Who may record an item's outcome (unit policy, docs/formats.md §13): nurses and
# clinicians any outcome; coordinators that an item was missed; a plan review's own
# results (continue, discharge) are a clinician's decision.
RECORDERS: dict[str, tuple[Role, ...]] = {
    "given": ("nurse", "clinician"),
    "done": ("nurse", "clinician"),
    "missed": ("nurse", "clinician", "coordinator"),
    "continue": ("clinician",),
    "discharge": ("clinician",),
}


def outcome_recorder(unit: Unit, by: str, result: str) -> str:
    """The roster's name of whoever records an outcome ``result``, when their role may.

    Raises InvalidInput on ``by`` with the one line that says why not. Nothing is written.
    """
    member = unit.staff.permit(by, role=None)
    allowed = RECORDERS.get(result, ("nurse", "clinician"))
    if not any(member.has(role) for role in allowed):
        raise InvalidInput(
            "by",
            f"{member.name!r} is {' and '.join(member.roles)} in the staff roster: "
            f"a {result} outcome is recorded by {' or '.join(f'a {r}' for r in allowed)}",
        )
    return member.name


@dataclass(frozen=True)
class OutcomeTarget:
    """The active plan's item an outcome is for, checked against it; ``recorded_*`` when
    the item already has its outcome (it keeps the first)."""

    ref: str
    plan_version: int
    item_key: str
    kind: str
    status: str
    hold_reason: str | None = None
    recorded_outcome: dict[str, Any] | None = None
    recorded_by: str | None = None
    recorded_at: dt.datetime | None = None


def outcome_target(
    ref: str, *, item_key: str, outcome: dict[str, Any], on: dt.date, unit: Unit
) -> OutcomeTarget:
    """The item of the child's active plan ``outcome`` is for, the outcome checked by the
    rules as the item's run would check it (sidflows.rules.outcomes). Nothing is written.

    Raises UnknownPatient for an unknown ref, InvalidInput for an item the active plan
    does not hold, one with nothing left to record (cancelled, deferred), or an outcome
    the item cannot have (the field named: ``values.igg_g_l``, ``dose_g``, ``result``).
    """
    with session_scope() as session:
        patients.get_patient(session=session, ref=ref)
        try:
            item = items.get_item(session=session, ref=ref, key=item_key)
        except InvalidInput:
            raise InvalidInput("item", f"{ref} has no item {item_key} in its active plan") from None
        plan = session.get(CarePlan, item.plan_id)
        assert plan is not None
        found = OutcomeTarget(ref, plan.version, item.key, item.kind, str(item.status))
        if item.status in (ItemStatus.done, ItemStatus.missed):
            entry = session.exec(
                select(AuditEntry)
                .where(
                    AuditEntry.entity == "item",
                    AuditEntry.entity_id == item.id,
                    col(AuditEntry.action).in_((ItemStatus.done.value, ItemStatus.missed.value)),
                )
                .order_by(col(AuditEntry.id))
            ).first()
            return replace(
                found,
                recorded_outcome=dict(item.outcome or {}),
                recorded_by=entry.actor if entry is not None else None,
                recorded_at=entry.at if entry is not None else None,
            )
        if item.status not in OPEN_ITEM_STATUSES:
            raise InvalidInput("item", f"{item_key} is {item.status}: there is nothing to record")
        decide_outcome(
            OutcomeContext.build(
                kind=item.kind,
                key=item.key,
                details=item.details,
                outcome=outcome,
                protocol=unit.protocol,
                today=on,
            )
        )
        return replace(found, hold_reason=item.hold_reason)
