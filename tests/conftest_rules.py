"""Shared helpers for the rule tests: a minimal valid referral that each case overrides.

Not a conftest: import what you need (``from conftest_rules import make_referral``).
Every referral goes through :func:`sidflows.referral.validate_referral`, so a
case that builds an invalid document fails loudly instead of testing nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from sidflows.calendar import UnitCalendar, add_months, load_calendar
from sidflows.plan_document import plan_document
from sidflows.planning import propose_plan
from sidflows.protocol import Protocol, load_protocol
from sidflows.referral import ReferralDocument, validate_referral
from sidflows.rules.context import PlanContext
from sidflows.rules.facts import Facts
from sidflows.rules.model import Item, Plan

# A Tuesday. Items start at TODAY + first_item_lead_days (7) = 2026-12-01, a Tuesday,
# and the 12-month horizon ends on 2027-11-24.
TODAY = date(2026, 11, 24)
RECEIVED = date(2026, 11, 20)
START = date(2026, 12, 1)
HORIZON_END = date(2027, 11, 24)

PROTOCOL = load_protocol()
CALENDAR = load_calendar()

Doc = dict[str, Any]


def iso(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


def day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def ago(*, days: int = 0, months: int = 0, years: int = 0, since: date = TODAY) -> str:
    """An ISO date that long before ``since`` (TODAY by default)."""
    return (add_months(since, -(months + 12 * years)) - timedelta(days=days)).isoformat()


def ahead(*, days: int = 0, months: int = 0, years: int = 0, since: date = TODAY) -> str:
    """An ISO date that long after ``since`` (TODAY by default)."""
    return (add_months(since, months + 12 * years) + timedelta(days=days)).isoformat()


def born(*, years: int = 0, months: int = 0, days: int = 0) -> str:
    """The birth date of a child of that exact age on TODAY."""
    return ago(years=years, months=months, days=days)


def treatment(
    drug: str, cls: str, start: date | str, end: date | str | None = None, **doses: float
) -> Doc:
    doc: Doc = {
        "drug": drug,
        "class": cls,
        "start": iso(start),
        "end": None if end is None else iso(end),
    }
    doc.update(doses)
    return doc


def lab(when: date | str, **values: float) -> Doc:
    return {"date": iso(when), **values}


def infection(when: date | str, *, serious: bool = False, kind: str = "otitis media") -> Doc:
    return {"date": iso(when), "kind": kind, "serious": serious}


def ig_dose(when: date | str, g_per_kg: float = 0.4, route: str = "iv") -> Doc:
    return {"date": iso(when), "g_per_kg": g_per_kg, "route": route}


def vaccination(vaccine: str, when: date | str) -> Doc:
    return {"vaccine": vaccine, "date": iso(when)}


def blood_product(product: str, when: date | str) -> Doc:
    return {"date": iso(when), "product": product}


def make_doc(
    *,
    ref: str = "T-0001",
    birth_date: date | str = "2016-06-15",
    weight_kg: float = 30.0,
    sex: str = "female",
    received: date | str = RECEIVED,
    category: str = "other",
    label: str = "secondary immunodeficiency",
    treatments: Iterable[Doc] = (),
    labs: Iterable[Doc] = (),
    infections: Iterable[Doc] = (),
    immunoglobulin_doses: Iterable[Doc] = (),
    vaccinations: Iterable[Doc] = (),
    **optional: Any,
) -> Doc:
    """A minimal valid referral document (a 10-year-old, 30 kg); each case overrides fields.

    ``optional`` takes the optional top-level fields as they appear in the
    document (``hsct``, ``blood_products``, ``preferences``, ``consent``, ...).
    """
    doc: Doc = {
        "patient": {
            "ref": ref,
            "birth_date": iso(birth_date),
            "sex": sex,
            "weight_kg": weight_kg,
        },
        "received": iso(received),
        "referrer": {"service": "test"},
        "diagnosis": {"category": category, "label": label},
        "treatments": list(treatments),
        "labs": list(labs),
        "infections": list(infections),
        "immunoglobulin_doses": list(immunoglobulin_doses),
        "vaccinations": list(vaccinations),
    }
    doc.update({k: v for k, v in optional.items() if v is not None})
    return doc


def make_referral(**fields: Any) -> ReferralDocument:
    """:func:`make_doc`, validated exactly as the command line validates a document."""
    return validate_referral(make_doc(**fields))


def context_for(
    referral: ReferralDocument,
    *,
    today: date = TODAY,
    protocol: Protocol = PROTOCOL,
    calendar: UnitCalendar = CALENDAR,
) -> PlanContext:
    """The context the rules see when the plan is proposed on ``today`` (as planning builds it)."""
    return PlanContext.build(referral, today=today, protocol=protocol, calendar=calendar)


def facts_for(
    referral: ReferralDocument, *, today: date = TODAY, protocol: Protocol = PROTOCOL
) -> Facts:
    return context_for(referral, today=today, protocol=protocol).facts


def plan_for(
    referral: ReferralDocument, *, today: date = TODAY, protocol: Protocol = PROTOCOL
) -> Plan:
    return propose_plan(referral, today=today, protocol=protocol, calendar=CALENDAR)


def document_for(
    referral: ReferralDocument, *, today: date = TODAY, protocol: Protocol = PROTOCOL
) -> dict[str, Any]:
    return plan_document(plan_for(referral, today=today, protocol=protocol))


def items_of(plan: Plan, kind: str, **match: Any) -> list[Item]:
    """The plan's items of one kind whose attributes equal ``match``, in plan order."""
    return [
        i
        for i in plan.items
        if i.kind == kind and all(getattr(i, k) == v for k, v in match.items())
    ]


def decisions_text(plan: Plan, topic: str | None = None) -> str:
    return "\n".join(
        f"{d.decision} | {d.rationale} | {d.source}"
        for d in plan.decisions
        if topic is None or d.topic == topic
    )


def with_protocol(protocol: Protocol, path: str, value: Any) -> Protocol:
    """A copy of ``protocol`` with one dotted field changed (``immunoglobulin.iv.g_per_kg``)."""
    head, _, rest = path.partition(".")
    if not rest:
        return protocol.model_copy(update={head: value})
    return protocol.model_copy(update={head: with_protocol(getattr(protocol, head), rest, value)})
