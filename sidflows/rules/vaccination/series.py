"""Series of doses put on the calendar, and the doses already given that count toward them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sidflows.calendar import add_months, add_years
from sidflows.rules.context import PlanContext
from sidflows.rules.model import Block, Decision, Deferral, VaccineDose
from sidflows.rules.vaccination.blocks import first_free_day, holding, is_live
from sidflows.rules.vaccination.cdsi_history import CDSI_SRC, CdsiHistory
from sidflows.rules.vaccination.sources import ACIP_TDAP

TETANUS = ("DTaP", "Tdap", "Td")
VARICELLA = ("VAR", "MMRV")
# ACIP's minimum intervals a protocol's own spacing never goes below (General Best Practice
# Guidelines, table 3-1): dose number of the series -> (an earlier dose number, days after
# it). Hepatitis B dose 3: >= 8 weeks after dose 2 and >= 16 weeks after dose 1 (a 0-1-2
# month schedule is licensed only with a 4th dose at 12 months).
ACIP_MIN_INTERVAL_SRC = (
    "ACIP General Best Practice Guidelines (table 3-1, minimum intervals: hepatitis B dose 3 "
    ">= 8 weeks after dose 2 and >= 16 weeks after dose 1)"
)
ACIP_MIN_INTERVALS: dict[str, dict[int, tuple[tuple[int, int], ...]]] = {
    "HepB": {3: ((2, 56), (1, 112))},
}
# ACIP's catch-up schedule (table 2): the final dose of a 3-dose series at an older age
# waits 6 months after the previous one. Vaccine -> (the dose's position, the age in years
# from which it applies, whether only when the series began at 12 months or later, why).
ACIP_FINAL_DOSE_SRC = (
    "ACIP catch-up immunization schedule (table 2: IPV dose 3 >= 6 months after dose 2 from "
    "4 years, as the final dose; DTaP/Tdap/Td dose 3 >= 6 months after dose 2 from 7 years "
    "when the first dose was given at 12 months or later)"
)
ACIP_FINAL_DOSE_MONTHS = 6
ACIP_FINAL_DOSE: dict[str, tuple[int, int, bool, str]] = {
    "IPV": (3, 4, False, "from 4 years"),
    "DTaP": (3, 7, True, "from 7 years, the series begun at 12 months or later"),
    "Tdap": (3, 7, True, "from 7 years, the series begun at 12 months or later"),
    "Td": (3, 7, True, "from 7 years, the series begun at 12 months or later"),
}


def acip_final_dose_floor(
    vaccine: str, position: int, dates: list[date], birth: date, earliest: date
) -> tuple[date, str] | None:
    """The day ACIP's catch-up schedule holds a final dose to (6 months after the previous
    one), and why; None where it does not apply (``dates``: the series' earlier doses)."""
    rule = ACIP_FINAL_DOSE.get(vaccine)
    if rule is None or len(dates) < position - 1 or position < 2:
        return None
    at, from_years, begun_late, why = rule
    if position != at or earliest < add_years(birth, from_years):
        return None
    if begun_late and dates[0] < add_years(birth, 1):
        return None
    floor = add_months(dates[position - 2], ACIP_FINAL_DOSE_MONTHS)
    if floor <= earliest:
        return None
    return floor, (
        f"dose {position} no earlier than {ACIP_FINAL_DOSE_MONTHS} months after dose "
        f"{position - 1} (the final dose, {why})"
    )


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
    protocol_rule: str | None = None
    """The protocol rule that stands where CDSi's forecast disagrees: a dose CDSi calls
    complete, aged out or not recommended; with ``protocol_dates`` also an earlier date
    than CDSi's earliest (and a dose CDSi finds too soon after the previous one)."""
    protocol_dates: bool = False


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
    cdsi: CdsiHistory
    risk: tuple[str, ...] = ()
    """The child's risk conditions (:mod:`.risk`): empty, the routine catch-up only."""
    handled: set[str] = field(default_factory=set)
    """The vaccines a rule of the unit has planned or decided in this plan: the routine
    catch-up (§4.16) leaves their vaccine groups to that rule."""


def schedule_series(
    schedule: Schedule, series: Series, *, min_gap: timedelta | None = None
) -> list[VaccineDose]:
    """Put the series' missing doses on hospital working days no block holds.

    ``min_gap`` (the protocol's minimum interval between doses unless given)
    keeps doses apart. A live vaccine with no dose in the horizon is deferred.
    """
    calendar, horizon_end, plan = schedule.ctx.calendar, schedule.ctx.horizon_end, schedule.plan
    schedule.handled.add(series.vaccine)
    gap = schedule.gap if min_gap is None else min_gap
    live = is_live(series.vaccine)
    done = len(series.given)
    prev = max(series.given) if series.given else None
    scheduled: list[VaccineDose] = []
    notes: list[str] = []
    held: list[Block] = []
    by_age: list[str] = []
    min_age = schedule.cdsi.min_age_date(series.vaccine)
    varicella: list[str] = []
    minimum: list[str] = []  # ACIP's minimum intervals that moved a dose
    final_dose: list[str] = []  # ACIP's catch-up interval before a final dose that moved it
    waited: tuple[date, list[Block]] | None = None  # the first dose held to a later day
    for number in range(series.number_from + done, series.number_from + series.doses):
        earliest = series.earliest
        if prev is not None:
            earliest = max(earliest, add_months(prev, series.gap_months), prev + gap)
            if series.vaccine in VARICELLA:
                after, why = varicella_interval(schedule.ctx, prev)
                earliest = max(earliest, after)
                if why not in varicella:
                    varicella.append(why)
        position = number - series.number_from + 1  # this dose's number in the series
        dates = [*sorted(series.given), *(d.due for d in scheduled)]
        for before, days in ACIP_MIN_INTERVALS.get(series.vaccine, {}).get(position, ()):
            if before <= len(dates):
                floor = dates[before - 1] + timedelta(days=days)
                if floor > earliest:
                    earliest = floor
                    moved = f"dose {position} no earlier than {days // 7} weeks after dose {before}"
                    minimum.append(moved)
        final = acip_final_dose_floor(
            series.vaccine, position, dates, schedule.ctx.referral.patient.birth_date, earliest
        )
        if final is not None:
            earliest = final[0]
            final_dose.append(final[1])
        if not scheduled:
            notes = cdsi_notes(schedule, series, earliest)
            bound = None if series.protocol_dates else schedule.cdsi.earliest(series.vaccine)
            if bound is not None:
                earliest = max(earliest, bound)
        if min_age is not None:
            earliest = max(earliest, min_age)
        dated = tuple(b for b in series.blocks if not b.awaits_result)
        awaiting = len(dated) < len(series.blocks)
        free = first_free_day(dated, earliest)
        if not scheduled and free is not None and free > earliest:
            # What keeps the first dose from its earliest day: said with the dose.
            waited = (free, holding(dated, earliest, free))
        due = None
        while free is not None:
            due = calendar.next_working_day(free)
            again = first_free_day(dated, due)
            if again == due:
                break
            free = again
        # A block lifted by a result (§4.12) keeps the dose out of this plan; the deferral
        # is dated by the other blocks: not before that day, and only once the result is in.
        if awaiting or free is None or due is None or due > horizon_end:
            if not scheduled:
                held = holding(series.blocks, earliest, free)
            if live and not scheduled:
                reasons = tuple(f"{b.reason} ({b.source})" for b in held)
                plan.deferred.append(
                    Deferral(series.vaccine, free, reasons or ("beyond the horizon",))
                )
            break
        vaccine = dose_vaccine(schedule.ctx, series.vaccine, due, (*plan.items, *scheduled))
        if vaccine != series.vaccine:
            by_age.append(f"dose {number} on {due} as {vaccine}")
        later = [b.start for b in series.blocks if b.start is not None and b.start > due]
        latest = min(later) - timedelta(days=1) if later else None
        dose = VaccineDose(
            key=f"vaccine_dose:{vaccine}:{number}",
            due=due,
            vaccine=vaccine,
            live=live,
            dose_number=number,
            earliest=free,
            latest=latest,
        )
        scheduled.append(dose)
        prev = due
    plan.items.extend(scheduled)
    if series.doses > done:
        # Named as the doses are given (a Tdap series' dose given as Td is "Td").
        named = "/".join(dict.fromkeys(d.vaccine for d in scheduled)) or series.vaccine
        what = (
            f"{named}: {len(scheduled)} of {series.doses - done} dose(s) in the horizon"
            if scheduled
            else f"{series.vaccine}: no dose possible in the horizon"
        )
        parts = [series.rationale, *notes]
        sources = [series.source, CDSI_SRC]
        if by_age:
            v = schedule.ctx.protocol.vaccination
            parts.append(
                f"{', '.join(by_age)} (from the child's {v.tdap_from_age_years}th birthday "
                "DTaP is not given: Tdap once, as the first dose from that age, then "
                f"{v.tetanus_after_tdap}; a Td or Tdap dose counts toward the series)"
            )
            sources += [
                schedule.ctx.cite(
                    "vaccination.tdap_from_age_years", "vaccination.tetanus_after_tdap"
                ),
                ACIP_TDAP,
            ]
        if varicella:
            parts.extend(varicella)
            sources.append(
                schedule.ctx.cite(
                    "vaccination.varicella_interval_under_months",
                    "vaccination.varicella_interval_from_days",
                )
            )
        if waited is not None and scheduled and waited[1]:
            parts.append(
                f"not before {waited[0]}: "
                + "; ".join(f"{b.reason} ({b.source})" for b in waited[1])
            )
            sources += [b.source for b in waited[1]]
        if minimum:
            parts.append(f"{series.vaccine} {', '.join(minimum)} (ACIP's minimum intervals)")
            sources.append(ACIP_MIN_INTERVAL_SRC)
        if final_dose:
            parts.append(f"{series.vaccine} {', '.join(final_dose)} (ACIP's catch-up schedule)")
            sources.append(ACIP_FINAL_DOSE_SRC)
        if held and not scheduled and not live:
            parts.append("held back by: " + "; ".join(f"{b.reason} ({b.source})" for b in held))
            sources += [b.source for b in held]
        rationale = "; ".join(parts)
        plan.decisions.append(
            Decision("vaccination", what, rationale, "; ".join(dict.fromkeys(sources)))
        )
    if series.titres and scheduled and len(scheduled) == series.doses - done:
        plan.titres.append((scheduled[-1].due, series.titres))
    return scheduled


def cdsi_notes(schedule: Schedule, series: Series, earliest: date) -> list[str]:
    """What CDSi says of the series' next dose (the protocol would give it from
    ``earliest``), and where the protocol's rule stands instead."""
    cdsi = schedule.cdsi
    vaccine = series.vaccine
    notes = [cdsi.describe(vaccine)]
    min_age = cdsi.min_age_date(vaccine)
    if min_age is not None and min_age > earliest:
        notes.append(f"CDSi minimum age of {vaccine}: not before {min_age}")
    fc = cdsi.forecast(vaccine)
    cdsi_earliest = cdsi.earliest(vaccine)
    rule = series.protocol_rule
    if cdsi_earliest is not None and cdsi_earliest > earliest:
        if series.protocol_dates and rule is not None:
            notes.append(f"the protocol wins over CDSi's earliest date {cdsi_earliest}: {rule}")
        else:
            notes.append(f"not before CDSi's earliest date {cdsi_earliest}")
    elif fc is not None and fc.status != "Not Complete" and rule is not None:
        notes.append(f"the protocol wins over CDSi ({fc.status}): {rule}")
    for entry, why in cdsi.not_counted(vaccine, gap=_gap(schedule, series)):
        notes.append(f"{entry.code} on {entry.when} not counted (CDSi {why})")
    return notes


def _gap(schedule: Schedule, series: Series) -> timedelta | None:
    """The protocol's interval that stands over CDSi's, for a series on protocol dates."""
    return schedule.gap if series.protocol_dates else None


def given_doses(
    schedule: Schedule, vaccine: str, since: date | None, *, protocol_dates: bool = False
) -> tuple[date, ...]:
    """Dates of the doses given (on or after ``since``) that count toward ``vaccine``'s
    series, as CDSi counts them (by antigen, same-day duplicates once, valid doses); on
    the protocol's dates a dose CDSi finds too soon counts if the protocol's interval
    (``min_dose_interval_days``) separates it from the previous one."""
    return schedule.cdsi.counted(vaccine, since, gap=schedule.gap if protocol_dates else None)


def tetanus_code(ctx: PlanContext) -> str:
    """DTaP for young children, Tdap from the protocol's age (the series' name: each dose
    is named by its own day, :func:`dose_vaccine`)."""
    return "Tdap" if ctx.facts.age_years >= ctx.protocol.vaccination.tdap_from_age_years else "DTaP"


def post_hsct_dtap(ctx: PlanContext) -> bool:
    """After HSCT, is the diphtheria-tetanus-pertussis series DTaP at every age (full-dose D
    and aP: IDSA 2013 table 4's first option from 7 years, ECIL-7/ESCMID) rather than
    Tdap then Td (IDSA's alternative)? The protocol's ``vaccination.hsct.tetanus_series``."""
    return ctx.protocol.vaccination.hsct.tetanus_series == "DTaP"


def tdap_date(ctx: PlanContext) -> date:
    """The birthday from which DTaP is not given (ACIP: 7 years)."""
    return add_years(ctx.referral.patient.birth_date, ctx.protocol.vaccination.tdap_from_age_years)


def dose_vaccine(
    ctx: PlanContext, vaccine: str, due: date, planned: tuple[VaccineDose, ...] = ()
) -> str:
    """The vaccine a dose is given as on its day (ACIP; §4.11): a diphtheria-tetanus dose
    before the 7th birthday is DTaP; from it, Tdap once (the first dose from that age,
    documented or ``planned`` earlier in this plan), then the protocol's product (Td, or
    Tdap). Any other vaccine is itself."""
    if vaccine not in TETANUS:
        return vaccine
    seven = tdap_date(ctx)
    if due < seven:
        return "DTaP"
    hsct = ctx.referral.hsct
    if hsct is not None and due >= hsct.date and post_hsct_dtap(ctx):
        return "DTaP"  # after HSCT, DTaP at every age (IDSA 2013 table 4; §4.6.2)
    since = max(seven, hsct.date) if hsct is not None else seven
    had_tdap = any(
        x.vaccine == "Tdap" and since <= x.date <= due for x in ctx.referral.vaccinations
    ) or any(d.vaccine == "Tdap" and d.due <= due for d in planned)
    return ctx.protocol.vaccination.tetanus_after_tdap if had_tdap else "Tdap"


def varicella_interval(ctx: PlanContext, previous: date) -> tuple[date, str]:
    """(earliest day of the next varicella dose, why) by the child's age at the previous one
    (ACIP, §4.14): under 13 years 3 months; from 13 years 4 weeks."""
    v = ctx.protocol.vaccination
    birth = ctx.referral.patient.birth_date
    if previous < add_years(birth, v.varicella_interval_age_years):
        return add_months(previous, v.varicella_interval_under_months), (
            f"varicella dose after {previous}: {v.varicella_interval_under_months} months later "
            f"(under {v.varicella_interval_age_years} years at the previous dose, ACIP; a dose "
            "given >= 4 weeks after is accepted retrospectively, not planned)"
        )
    return previous + timedelta(days=v.varicella_interval_from_days), (
        f"varicella dose after {previous}: {v.varicella_interval_from_days} days later "
        f"({v.varicella_interval_age_years} years or older at the previous dose, ACIP)"
    )
