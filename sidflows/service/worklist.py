"""What waits, and on whom: the unit's worklist (``sidflows worklist``), and a child's
proposal against the active plan (``sidflows show``).

The worklist is one read transaction, a few set-based queries for the whole unit
(sidflows/store/worklist.py), assembled into the document of docs/formats.md §10.
It reads only the store: what Prefect holds (runs, their states) is not in it.
Refs only: nothing that says who a child is (name, record number, birth date).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sidflows.errors import InvalidInput
from sidflows.notify.messages import item_label
from sidflows.plan_diff import diff_document, diff_items
from sidflows.planning import plan_changes
from sidflows.store import worklist as store
from sidflows.store.db import session_scope
from sidflows.store.models import CarePlan, CostConsent, Intent, Patient, PlanStatus
from sidflows.store.versions import needs_consent
from sidflows.store.views import stream_of
from sidflows.unit import Unit

FORMAT = "sidflows.worklist/1"
BOARD_FORMAT = "sidflows.board/1"
DEFAULT_LIMIT = 200
MAX_LIMIT = 100_000

# Who sees what: the day's sections, and the outbox routes (None: every route) of each role.
ROLES: dict[str, tuple[str, ...]] = {
    "day-unit": ("day_unit",),
    "home-care": ("home_care",),
    "labs": ("labs",),
    "vaccines": ("vaccines",),
    "coordinator": store.SECTIONS,
}
ROUTES: dict[str, tuple[str, ...] | None] = {
    "day-unit": ("day_unit",),
    "home-care": ("home_care",),
    "coordinator": None,
}
COORDINATOR = "coordinator"
REPLACED_DAYS = 7  # runs replaced in the last week are listed as stuck
BOARD_DAYS = 28  # the day unit's chairs, four weeks ahead


def check_role(role: str | None, field: str = "role") -> str:
    """The role asked for (default: the coordinator's, everything), or a refusal naming it."""
    if role is None:
        return COORDINATOR
    if role not in ROLES:
        raise InvalidInput(field, f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    return role


def check_limit(value: int | str | None, field: str = "limit") -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise InvalidInput(field, f"not a whole number: {value!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(field, f"must lie between 1 and {MAX_LIMIT:,}: {limit}")
    return limit


def worklist(
    *, unit: Unit, on: dt.date | None = None, role: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    """The worklist document of ``on`` (default: today in the unit) for ``role``.

    A section the role does not see is ``null``; every other one is
    ``{"count": n, "items": [...]}`` with at most ``limit`` items.
    """
    role = check_role(role)
    limit = check_limit(limit)
    day = on or unit.calendar.today()
    sections = ROLES[role]
    coordinator = role == COORDINATOR
    with session_scope() as session:
        today = store.day_work(session=session, on=day, sections=sections, limit=limit)
        overdue = store.overdue_work(session=session, on=day, sections=sections, limit=limit)
        held = store.held_work(session=session, on=day, sections=sections, limit=limit)
        approval = consent = activations = intents = replaced = None
        if coordinator:
            since = dt.datetime.combine(
                day - dt.timedelta(days=REPLACED_DAYS), dt.time(), tzinfo=unit.calendar.tz
            ).astimezone(dt.UTC)
            replaced = store.replaced_runs(session=session, since=since, limit=limit)
            approval = store.awaiting_approval(session=session, limit=limit)
            consent = store.awaiting_consent(session=session, limit=limit)
            activations = store.unfinished_activations(session=session, limit=limit)
            intents = store.pending_intents(session=session, limit=limit)
        messages = None
        if role in ROUTES:
            messages = store.stuck_messages(session=session, routes=ROUTES[role], limit=limit)
    language = unit.notifications.language
    shape = _Shape(unit, day, language)
    return {
        "format": FORMAT,
        "date": day.isoformat(),
        "role": role,
        "limit": limit,
        "today": {
            section: (
                _listed(today[section], getattr(shape, section)) if section in today else None
            )
            for section in store.SECTIONS
        },
        "stuck": {
            "overdue": _listed(overdue, shape.overdue),
            "held": _listed(held, shape.held),
            "awaiting_approval": _listed(approval, shape.awaiting_approval),
            "awaiting_consent": _listed(consent, shape.awaiting_consent),
            "unfinished_activations": _listed(activations, shape.unfinished_activation),
            "pending_intents": _listed(intents, shape.intent),
            "replaced_runs": _listed(replaced, shape.replaced_run),
            "outbox": None if messages is None else _outbox(messages),
        },
    }


def _listed(listed: store.Listed | None, shape: Any) -> dict[str, Any] | None:
    if listed is None:
        return None
    return {"count": listed.count, "items": [shape(row) for row in listed.rows]}


def _outbox(stuck: store.StuckMessages) -> dict[str, Any]:
    by_status = {str(s): 0 for s in store.STUCK_MESSAGES}
    for group in stuck.groups:
        by_status[group.status] += group.count
    return {
        "count": stuck.count,
        "by_status": by_status,
        "groups": [
            {
                "status": g.status,
                "route": g.route,
                "event": g.event,
                "count": g.count,
                "oldest": _stamp(g.oldest),
            }
            for g in stuck.groups
        ],
        "items": [
            {
                "id": n.id,
                "status": n.status,
                "event": n.event,
                "ref": n.ref,
                "item_key": n.item_key,
                "plan_version": n.plan_version,
                "route": n.route,
                "attempts": n.attempts,
                "created_at": _stamp(n.created_at),
                "last_error": n.last_error,
            }
            for n in stuck.rows
        ],
    }


def _stamp(value: dt.datetime | None) -> str | None:
    return None if value is None else _utc(value).isoformat(timespec="seconds")


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite gives back naive timestamps: the store writes them in UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class _Shape:
    """Each row of the store as the document's entry (refs, keys, what, never identity)."""

    def __init__(self, unit: Unit, day: dt.date, language: str) -> None:
        self.unit, self.day, self.language = unit, day, language

    def _waited(self, since: dt.datetime | None) -> int | None:
        if since is None:
            return None
        local = _utc(since).astimezone(self.unit.calendar.tz).date()
        return max(0, (self.day - local).days)

    def _base(self, w: store.WorkItem) -> dict[str, Any]:
        return {
            "ref": w.ref,
            "plan_version": w.plan_version,
            "key": w.key,
            "kind": w.kind,
            "status": w.status,
            # Why a safety hold keeps the item from going ahead (null: not held).
            "held": w.hold_reason,
        }

    def _ig(self, w: store.WorkItem) -> dict[str, Any]:
        route = str(w.details.get("route", ""))
        return {
            "product": f"{route.upper()}IG",
            "route": route,
            "dose_g": w.details.get("dose_g"),
            "dose_g_per_kg": w.details.get("dose_g_per_kg"),
            "loading": bool(w.details.get("loading", False)),
        }

    def day_unit(self, w: store.WorkItem) -> dict[str, Any]:
        opens = self.unit.calendar.config.day_unit.opens
        start = dt.datetime.combine(self.day, opens)
        minutes = w.minutes if w.minutes is not None else w.details.get("session_minutes")
        end = start + dt.timedelta(minutes=minutes) if minutes else None
        return {
            "chair": w.chair,
            "start": start.strftime("%H:%M"),
            "end": end.strftime("%H:%M") if end else None,
            "minutes": minutes,
            **self._base(w),
            **self._ig(w),
            "first_infusion": self.first_infusion(w),
        }

    def first_infusion(self, w: store.WorkItem) -> bool:
        """No IG dose on record before the day, or the last one longer ago than the protocol's
        long gap: the infusion starts at the first rate and is watched as a first one."""
        if w.last_ig_dose is None:
            return True
        gap = self.unit.protocol.immunoglobulin.route("iv").long_gap_days
        return (self.day - w.last_ig_dose).days > gap

    def home_care(self, w: store.WorkItem) -> dict[str, Any]:
        setting = w.details.get("setting")
        return {
            **self._base(w),
            "setting": setting,
            "nurse_visit": setting == "supervised",
            **self._ig(w),
        }

    def labs(self, w: store.WorkItem) -> dict[str, Any]:
        return {
            **self._base(w),
            "what": "trough IgG" if w.kind == "ig_trough" else "reassessment",
            "target_g_l": w.details.get("target_g_l"),
            "panel": list(w.details.get("panel") or []),
        }

    def vaccines(self, w: store.WorkItem) -> dict[str, Any]:
        return {
            **self._base(w),
            "vaccine": w.details.get("vaccine"),
            "dose_number": w.details.get("dose_number"),
            "live": bool(w.details.get("live", False)),
        }

    def other(self, w: store.WorkItem) -> dict[str, Any]:
        return {**self._base(w), "what": item_label(w.kind, w.details, self.language)}

    def overdue(self, w: store.WorkItem) -> dict[str, Any]:
        return {
            **self._base(w),
            "section": w.section,
            "what": item_label(w.kind, w.details, self.language),
            "due": w.due.isoformat(),
            "days_late": (self.day - w.due).days,
            "escalations": w.escalations,
        }

    def held(self, w: store.WorkItem) -> dict[str, Any]:
        return {
            **self._base(w),
            "section": w.section,
            "what": item_label(w.kind, w.details, self.language),
            "due": w.due.isoformat(),
            "held_for": w.held_for,
        }

    def _plan(self, p: store.WaitingPlan) -> dict[str, Any]:
        return {"ref": p.ref, "plan_version": p.version, "reason": p.reason, "replan": p.replan}

    def awaiting_approval(self, p: store.WaitingPlan) -> dict[str, Any]:
        return {
            **self._plan(p),
            "since": _stamp(p.proposed_at),
            "days_waiting": self._waited(p.proposed_at),
        }

    def awaiting_consent(self, p: store.WaitingPlan) -> dict[str, Any]:
        return {
            **self._plan(p),
            "approved_by": p.approved_by,
            "since": _stamp(p.approved_at),
            "days_waiting": self._waited(p.approved_at),
        }

    unfinished_activation = awaiting_consent

    def replaced_run(self, r: store.ReplacedRun) -> dict[str, Any]:
        return {
            "ref": r.ref,
            "plan_version": r.plan_version,
            "key": r.item_key,
            "replacements": r.replacements,
            "last": _stamp(r.last),
        }

    def intent(self, i: Intent) -> dict[str, Any]:
        return {
            "ref": i.ref,
            "kind": i.kind,
            "status": i.status,
            "attempts": i.attempts,
            "since": _stamp(i.created_at),
            "next_attempt_at": _stamp(i.next_attempt_at),
            "last_error": i.last_error,
        }


# ----------------------------------------------------------------------------- the unit's board


def chairs(*, unit: Unit, start: dt.date, days: int = BOARD_DAYS) -> list[dict[str, Any]]:
    """The day unit's chairs booked per working day from ``start``, against its capacity."""
    end = start + dt.timedelta(days=days - 1)
    capacity = unit.calendar.config.day_unit.chairs_per_day
    with session_scope() as session:
        booked = store.chairs_booked(session=session, start=start, end=end)
    return [
        {"date": d.isoformat(), "booked": booked.get(d, 0), "capacity": capacity}
        for d in unit.calendar.working_days(start, end)
    ] + [
        # a booking on a day the calendar no longer opens (a closure added since)
        {"date": d.isoformat(), "booked": n, "capacity": 0, "closed": True}
        for d, n in sorted(booked.items())
        if not unit.calendar.is_working_day(d)
    ]


def board(*, unit: Unit, on: dt.date | None = None, limit: int | None = None) -> dict[str, Any]:
    """What the unit's board in Prefect shows (docs/formats.md §14): the coordinator's
    worklist of the day and the day unit's next four weeks of chairs."""
    day = on or unit.calendar.today()
    return {
        "format": BOARD_FORMAT,
        "date": day.isoformat(),
        "worklist": worklist(unit=unit, on=day, role=COORDINATOR, limit=limit),
        "chairs": chairs(unit=unit, start=day),
    }


# ----------------------------------------------------------------------------- show: a proposal


def proposal_view(*, session: Any, patient: Patient) -> dict[str, Any]:
    """What ``show`` adds (docs/formats.md §11), in the caller's transaction.

    ``proposal``: the version waiting for approval (or, approved, for the family's
    consent or its activation) with what it changes against the active plan's items
    still to come and its decisions (``plan_changes``); null when none waits.
    ``versions``: every version, newest first, with its consent state.
    """
    found = store.child_plans(session=session, patient=patient)
    active = next((v for v in found.versions if v.status == PlanStatus.active), None)
    proposed = next((v for v in found.versions if v.status == PlanStatus.proposed), None)
    return {
        "proposal": None if proposed is None else _proposal(proposed, active, found),
        "versions": [_version_consent(v, found.consents) for v in found.versions],
    }


def _proposal(proposed: CarePlan, active: CarePlan | None, found: store.ChildPlans) -> Any:
    consent = _consent_at(found.consents, None)
    if proposed.approved_by is None:
        waiting = "approval"
    elif needs_consent(proposed.document) and not (consent is not None and consent.accepted):
        waiting = "consent"
    else:
        waiting = "activation"
    items = diff_items(
        found.to_come, proposed.document["items"], stream=lambda item: stream_of(dict(item))
    )
    return {
        "version": proposed.version,
        "reason": proposed.reason,
        "approved_by": proposed.approved_by,
        "waiting_for": waiting,
        "against_version": active.version if active is not None else None,
        "decisions": [] if active is None else plan_changes(active.document, proposed.document),
        "items": diff_document(items),
    }


def _consent_at(consents: list[CostConsent], at: dt.datetime | None) -> CostConsent | None:
    """The family's latest answer recorded by ``at`` (None: by now)."""
    known = [c for c in consents if at is None or _utc(c.recorded_at) <= _utc(at)]
    return known[-1] if known else None


def _version_consent(version: CarePlan, consents: list[CostConsent]) -> dict[str, Any]:
    """A version's consent: as it stood at its activation, or now for one never activated."""
    required = needs_consent(version.document)
    answer = _consent_at(consents, version.activated_at) if required else None
    state = (
        "not_needed"
        if not required
        else "missing"
        if answer is None
        else "recorded"
        if answer.accepted
        else "refused"
    )
    return {
        "version": version.version,
        "status": version.status,
        "approved_by": version.approved_by,
        "consent_required": required,
        "consent": state,
        "consent_recorded_at": _stamp(answer.recorded_at) if answer else None,
        "consent_recorded_by": answer.recorded_by if answer else None,
    }
