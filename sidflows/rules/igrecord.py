"""The immunoglobulin record: courses, the interval in use, troughs (§3.5, §3.8, §4.7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sidflows.protocol import Protocol
from sidflows.referral import ImmunoglobulinDose, LabEntry


@dataclass(frozen=True, slots=True)
class IgCourse:
    """IG doses on consecutive days: one course, counted by its total (§4.7)."""

    start: date
    end: date
    g_per_kg: float
    route: str
    doses: int


def ig_courses(doses: list[ImmunoglobulinDose]) -> tuple[IgCourse, ...]:
    """Doses of one route on consecutive days grouped into courses, in date order."""
    courses: list[IgCourse] = []
    for dose in sorted(doses, key=lambda x: x.date):
        last = courses[-1] if courses else None
        if last is not None and last.route == dose.route and (dose.date - last.end).days <= 1:
            courses[-1] = IgCourse(
                last.start,
                dose.date,
                round(last.g_per_kg + dose.g_per_kg, 4),
                last.route,
                last.doses + 1,
            )
        else:
            courses.append(IgCourse(dose.date, dose.date, dose.g_per_kg, dose.route, 1))
    return tuple(courses)


def is_immunomodulatory(course: IgCourse, protocol: Protocol) -> bool:
    """An IV course of an immunomodulatory dose (1-2 g/kg: Kawasaki, ITP), not replacement
    (§3.1); SC courses are always replacement."""
    threshold = protocol.immunoglobulin.immunomodulatory_iv_min_g_per_kg
    return course.route == "iv" and course.g_per_kg >= threshold - 1e-9


def replacement_record(
    doses: list[ImmunoglobulinDose], protocol: Protocol
) -> tuple[tuple[IgCourse, ...], tuple[IgCourse, ...], list[ImmunoglobulinDose]]:
    """(replacement courses, immunomodulatory courses, the doses of the replacement courses)."""
    courses = ig_courses(doses)
    modulatory = tuple(c for c in courses if is_immunomodulatory(c, protocol))
    replacement = tuple(c for c in courses if c not in modulatory)
    kept = [
        d
        for d in doses
        if not any(c.route == d.route and c.start <= d.date <= c.end for c in modulatory)
    ]
    return replacement, modulatory, kept


def interval_in_use(courses: tuple[IgCourse, ...], protocol: Protocol) -> int | None:
    """The gap between the two newest courses of the route in use, when within its window."""
    if not courses:
        return None
    route = courses[-1].route
    dosing = protocol.immunoglobulin.route(route)
    same = [c for c in courses if c.route == route]
    if len(same) >= 2:
        gap = (same[-1].start - same[-2].start).days
        if dosing.interval_days - dosing.window_days_early <= gap <= dosing.interval_days:
            return gap
    return dosing.interval_days


def on_steady_sc(
    lab: LabEntry, courses: tuple[IgCourse, ...], interval: int | None, steady_days: int
) -> bool:
    """Drawn on SC given every ``steady_days`` days or more often: a near-steady level, a
    trough-equivalent whenever drawn (SCIG labels; AAAAI, §3.10). The course in effect on
    the day (the newest started by then) is SC, and so is the newest course."""
    if steady_days <= 0 or interval is None or interval > steady_days or not courses:
        return False
    if courses[-1].route != "sc":
        return False
    in_effect = [c for c in courses if c.start <= lab.date]
    return bool(in_effect) and in_effect[-1].route == "sc"


def find_troughs(
    igg_results: list[LabEntry],
    courses: tuple[IgCourse, ...],
    interval: int | None,
    window: int,
    sc_steady_days: int = 0,
) -> tuple[LabEntry | None, LabEntry | None]:
    """(newest trough, newest IgG on IG that is not a trough).

    A trough is drawn on a course's first day (before the dose) or up to ``window`` days
    before it; after the newest course, from ``window`` days before the next is due. On
    weekly (or more frequent) SC, any IgG drawn on SC is a trough-equivalent (§3.10).
    """
    if not courses or interval is None:
        return None, None
    newest = max(igg_results, key=lambda lab: lab.date) if igg_results else None
    troughs = []
    for lab in igg_results:
        if on_steady_sc(lab, courses, interval, sc_steady_days):
            troughs.append(lab)
            continue
        before_a_dose = any(
            c.start - timedelta(days=window) <= lab.date <= c.start for c in courses
        )
        last = courses[-1]
        before_next = lab.date > last.end and lab.date >= last.start + timedelta(
            days=interval - window
        )
        if before_a_dose or before_next:
            troughs.append(lab)
    trough = max(troughs, key=lambda lab: lab.date) if troughs else None
    first = courses[0].start
    not_trough = (
        newest
        if newest is not None
        and newest is not trough
        and newest.date >= first
        and (trough is None or newest.date > trough.date)
        else None
    )
    return trough, not_trough
