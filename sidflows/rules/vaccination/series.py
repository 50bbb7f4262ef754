"""Series of doses put on the calendar, and the doses already given that count toward them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sidflows.calendar import add_months
from sidflows.referral import ReferralDocument
from sidflows.rules.context import PlanContext
from sidflows.rules.model import Block, Decision, Deferral, VaccineDose
from sidflows.rules.vaccination.blocks import first_free_day, holding, is_live

# Which earlier doses count toward a vaccine's series.
_COUNTS_AS = {"MMR": ("MMR", "MMRV"), "VAR": ("VAR", "MMRV")}


@dataclass(frozen=True, slots=True)
class Series:
    """Doses of one vaccine to schedule, and the blocks that hold them back."""

    vaccine: str
    doses: int
    earliest: date
    blocks: tuple[Block, ...]
    rationale: str
    source: str
    given: tuple[date, ...] = ()
    gap_months: int = 1
    number_from: int = 1
    titres: str | None = None


@dataclass
class VaccinationPlan:
    items: list[VaccineDose] = field(default_factory=list)
    deferred: list[Deferral] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    titres: list[tuple[date, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Schedule:
    """What the schedules of one plan share (one argument, so fields can be added)."""

    ctx: PlanContext
    live_blocks: tuple[Block, ...]
    plan: VaccinationPlan
    gap: timedelta


def schedule_series(
    schedule: Schedule, series: Series, *, min_gap: timedelta | None = None
) -> list[VaccineDose]:
    """Put the series' missing doses on hospital working days no block holds.

    ``min_gap`` (the protocol's minimum interval between doses unless given)
    keeps doses apart. A live vaccine with no dose in the horizon is deferred.
    """
    calendar, horizon_end, plan = schedule.ctx.calendar, schedule.ctx.horizon_end, schedule.plan
    gap = schedule.gap if min_gap is None else min_gap
    live = is_live(series.vaccine)
    done = len(series.given)
    prev = max(series.given) if series.given else None
    scheduled: list[VaccineDose] = []
    for number in range(series.number_from + done, series.number_from + series.doses):
        earliest = series.earliest
        if prev is not None:
            earliest = max(earliest, add_months(prev, series.gap_months), prev + gap)
        free = first_free_day(series.blocks, earliest)
        due = None
        while free is not None:
            due = calendar.next_working_day(free)
            again = first_free_day(series.blocks, due)
            if again == due:
                break
            free = again
        if free is None or due is None or due > horizon_end:
            if live and not scheduled:
                reasons = tuple(
                    f"{b.reason} ({b.source})" for b in holding(series.blocks, earliest, free)
                )
                plan.deferred.append(
                    Deferral(series.vaccine, free, reasons or ("beyond the horizon",))
                )
            break
        later = [b.start for b in series.blocks if b.start is not None and b.start > due]
        latest = min(later) - timedelta(days=1) if later else None
        dose = VaccineDose(
            key=f"vaccine_dose:{series.vaccine}:{number}",
            due=due,
            vaccine=series.vaccine,
            live=live,
            dose_number=number,
            earliest=free,
            latest=latest,
        )
        scheduled.append(dose)
        prev = due
    plan.items.extend(scheduled)
    if series.doses > done:
        what = (
            f"{series.vaccine}: {len(scheduled)} of {series.doses - done} dose(s) in the horizon"
            if scheduled
            else f"{series.vaccine}: no dose possible in the horizon"
        )
        plan.decisions.append(Decision("vaccination", what, series.rationale, series.source))
    if series.titres and scheduled and len(scheduled) == series.doses - done:
        plan.titres.append((scheduled[-1].due, series.titres))
    return scheduled


def given_doses(referral: ReferralDocument, vaccine: str, since: date | None) -> tuple[date, ...]:
    """Dates of the doses given (on or after ``since``) that count toward ``vaccine``."""
    names = _COUNTS_AS.get(vaccine, (vaccine,))
    return tuple(
        sorted(
            v.date
            for v in referral.vaccinations
            if v.vaccine in names and (since is None or v.date >= since)
        )
    )


def tetanus_code(ctx: PlanContext) -> str:
    """DTaP for young children, Tdap from the protocol's age."""
    return "Tdap" if ctx.facts.age_years >= ctx.protocol.vaccination.tdap_from_age_years else "DTaP"
