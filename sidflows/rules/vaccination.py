"""Vaccination reinforcement: boosters, influenza, pneumococcal, live-vaccine blocks (§4).

Every cause that keeps a vaccine from being given is a :class:`Block` with the
dates it holds between and its source. A dose is scheduled on the first
hospital working day that no block holds; a live vaccine that no day of the
horizon frees is deferred, with every block that holds it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NamedTuple

from sidflows.calendar import UnitCalendar, add_months, add_years
from sidflows.protocol import Protocol
from sidflows.referral import LIVE_VACCINES, Referral, Treatment
from sidflows.rules.facts import Facts, is_high_dose_steroid, name_matches
from sidflows.rules.immunoglobulin import IgDecision
from sidflows.rules.model import Block, Decision, Deferral, VaccineDose

IDSA = "IDSA 2013 (Rubin, CID 58:e44)"
IDSA_T6 = "IDSA 2013 table 6"
ACIP_ABS = "ACIP general best practice, antibody-live vaccine interval table"
HSCT_SRC = "IDSA 2013 table 4; ECIL-7; EBMT paediatric vaccination"
CHEMO_SRC = "IDSA 2013 rec. 73; AIEOP (Cesaro 2014); IAP 2019"
CD20_SRC = "rheumatology recommendations (ACR 2022); rituximab label"
PNEUMO_SRC = "IDSA 2013 (PCV then PPSV23 >= 8 weeks)"

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


class _Schedule(NamedTuple):
    """What the schedules of one plan share (one argument, so fields can be added)."""

    referral: Referral
    facts: Facts
    protocol: Protocol
    calendar: UnitCalendar
    start: date
    horizon_end: date
    live_blocks: tuple[Block, ...]
    plan: VaccinationPlan
    gap: timedelta


def is_live(vaccine: str) -> bool:
    return vaccine in LIVE_VACCINES


def _span(t: Treatment) -> str:
    return f"{t.start} to {t.end}" if t.end else f"since {t.start}, ongoing"


# ----------------------------------------------------------------------------- blocks


def live_vaccine_blocks(
    referral: Referral, facts: Facts, ig: IgDecision, protocol: Protocol
) -> list[Block]:
    """Every cause in REFERENCE.md §4 that keeps MMR or varicella from being given."""
    v = protocol.vaccination
    blocks: list[Block] = []
    before = timedelta(days=v.live_before_immunosuppression_days)
    for t in referral.treatments:
        wait, why = 0, ""
        if t.drug_class == "chemotherapy":
            wait, why = v.after_chemotherapy_live_months, "after chemotherapy"
        elif t.drug_class == "anti_cd20":
            wait, why = v.after_anti_cd20_months, "after the last anti-CD20 dose"
        elif (
            t.drug_class == "corticosteroid"
            and is_high_dose_steroid(t, facts.weight_kg, protocol) is not False
        ):
            wait, why = v.after_high_dose_steroid_live_months, "after stopping high-dose steroids"
        until = (
            None
            if t.end is None
            else (add_months(t.end, wait) if wait else t.end + timedelta(days=1))
        )
        text = f"{t.drug} ({_span(t)}): no live vaccine under immunosuppression"
        if wait:
            text += f", nor until {wait} months {why}"
        if t.start > facts.today:
            text += (
                f"; live vaccines >= {v.live_before_immunosuppression_days} days before starting"
            )
        blocks.append(Block(text, f"{IDSA}; {IDSA_T6}", until, t.start - before))
    if referral.hsct is not None:
        hsct = referral.hsct
        months = v.hsct.live_from_months
        blocks.append(
            Block(
                f"HSCT on {hsct.date}: MMR and varicella not before {months} months",
                HSCT_SRC,
                add_months(hsct.date, months),
            )
        )
        if hsct.active_gvhd:
            blocks.append(Block("active GVHD: no live vaccine", HSCT_SRC, None))
    doses = list(referral.immunoglobulin_doses)
    if doses:
        ai = v.antibody_interval
        binding = max(doses, key=lambda d: add_months(d.date, ai.ivig_months(d.g_per_kg)))
        months = ai.ivig_months(binding.g_per_kg)
        blocks.append(
            Block(
                f"immunoglobulin {binding.g_per_kg:g} g/kg on {binding.date}: {months} months "
                "before MMR or varicella",
                ACIP_ABS,
                add_months(binding.date, months),
            )
        )
    by_product: dict[str, date] = {}
    for product in referral.blood_products:
        months = v.antibody_interval.products[product.product]
        until = add_months(product.date, months)
        if until > by_product.get(product.product, date.min):
            by_product[product.product] = until
            blocks.append(
                Block(
                    f"{product.product.replace('_', ' ')} on {product.date}: {months} months "
                    "before MMR or varicella",
                    ACIP_ABS,
                    until,
                )
            )
    if ig.gives_ig:
        blocks.append(
            Block(
                "while IG replacement continues (it neutralises live vaccines; the clock starts "
                "at the last dose)",
                ACIP_ABS,
                None,
            )
        )
    blocks.append(
        Block(
            f"MMR and varicella from {v.live_min_age_months} months of age",
            "ACIP routine schedule",
            add_months(referral.patient.birth_date, v.live_min_age_months),
        )
    )
    return blocks


def inactivated_blocks(referral: Referral, protocol: Protocol) -> list[Block]:
    """Booster doses are not valid during chemotherapy or anti-B-cell antibodies."""
    v = protocol.vaccination
    chemo = [t for t in referral.treatments if t.drug_class == "chemotherapy"]
    # "The regimen included anti-B-cell antibodies": an anti-CD20 course overlapping chemotherapy.
    with_cd20 = any(
        t.drug_class == "anti_cd20"
        and any(t.start <= (c.end or date.max) and (t.end or date.max) >= c.start for c in chemo)
        for t in referral.treatments
    )
    blocks: list[Block] = []
    for t in referral.treatments:
        if t.drug_class == "chemotherapy":
            months = (
                v.after_chemotherapy_inactivated_months_anti_cd20
                if with_cd20
                else v.after_chemotherapy_inactivated_months
            )
            before = v.inactivated_before_immunosuppression_days
            text = (
                f"{t.drug} ({_span(t)}): doses during chemotherapy do not count; boosters "
                f"{months} months after the end"
                + (" (regimen with anti-CD20)" if with_cd20 else "")
            )
            source = CHEMO_SRC
        elif t.drug_class == "anti_cd20":
            months, before = v.after_anti_cd20_months, v.before_next_anti_cd20_days
            text = (
                f"{t.drug} ({_span(t)}): vaccinate before starting, or >= {months} months "
                f"after the last dose and >= {before} days before the next"
            )
            source = CD20_SRC
        else:
            continue
        until = None if t.end is None else add_months(t.end, months)
        blocks.append(Block(text, source, until, t.start - timedelta(days=before)))
    return blocks


def influenza_blocks(referral: Referral, protocol: Protocol) -> list[Block]:
    """Inactivated influenza: from 6 months, not during anti-B-cell or intensive chemo."""
    v = protocol.vaccination
    blocks = [
        Block(
            f"influenza vaccine from {v.influenza_min_age_months} months of age",
            IDSA,
            add_months(referral.patient.birth_date, v.influenza_min_age_months),
        )
    ]
    for t in referral.treatments:
        if t.drug_class == "anti_cd20":
            until = (
                None
                if t.end is None
                else add_months(t.end, protocol.grading.anti_cd20_depletion_months)
            )
            blocks.append(
                Block(
                    f"{t.drug} ({_span(t)}): no influenza vaccine during anti-B-cell antibodies",
                    f"{IDSA}; rituximab label (B-cell depletion)",
                    until,
                    t.start,
                )
            )
        elif t.drug_class == "chemotherapy" and name_matches(
            t.drug, v.intensive_chemotherapy_words
        ):
            until = None if t.end is None else t.end + timedelta(days=1)
            blocks.append(
                Block(
                    f"{t.drug} ({_span(t)}): no influenza vaccine during intensive chemotherapy",
                    IDSA,
                    until,
                    t.start,
                )
            )
    if referral.hsct is not None:
        months = protocol.vaccination.hsct.influenza_from_months
        blocks.append(
            Block(
                f"HSCT on {referral.hsct.date}: influenza vaccine from {months} months",
                HSCT_SRC,
                add_months(referral.hsct.date, months),
            )
        )
    return blocks


def first_free_day(blocks: Iterable[Block], day: date) -> date | None:
    """The first day on or after ``day`` that no block holds; None if one never ends."""
    blocks = tuple(blocks)
    moved = True
    while moved:
        moved = False
        for block in blocks:
            if block.holds_on(day):
                if block.until is None:
                    return None
                day, moved = block.until, True
    return day


def holding(blocks: Iterable[Block], start: date, free: date | None) -> list[Block]:
    """The blocks that hold on some day between ``start`` and ``free``."""
    return [
        b
        for b in blocks
        if (b.until is None or b.until > start)
        and (free is None or b.start is None or b.start < free)
    ]


# ----------------------------------------------------------------------------- scheduling


def _schedule(
    series: Series,
    calendar: UnitCalendar,
    horizon_end: date,
    plan: VaccinationPlan,
    *,
    min_gap: timedelta,
) -> list[VaccineDose]:
    live = is_live(series.vaccine)
    done = len(series.given)
    prev = max(series.given) if series.given else None
    scheduled: list[VaccineDose] = []
    for number in range(series.number_from + done, series.number_from + series.doses):
        earliest = series.earliest
        if prev is not None:
            earliest = max(earliest, add_months(prev, series.gap_months), prev + min_gap)
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


def _given(referral: Referral, vaccine: str, since: date | None) -> tuple[date, ...]:
    names = _COUNTS_AS.get(vaccine, (vaccine,))
    return tuple(
        sorted(
            v.date
            for v in referral.vaccinations
            if v.vaccine in names and (since is None or v.date >= since)
        )
    )


def _tetanus_code(facts: Facts, protocol: Protocol) -> str:
    return "Tdap" if facts.age_years >= protocol.vaccination.tdap_from_age_years else "DTaP"


def plan_vaccination(
    referral: Referral,
    facts: Facts,
    ig: IgDecision,
    protocol: Protocol,
    calendar: UnitCalendar,
    *,
    start: date,
    horizon_end: date,
) -> VaccinationPlan:
    """Boosters, influenza and pneumococcal doses of the horizon, and deferred live vaccines."""
    plan = VaccinationPlan()
    live_blocks = tuple(live_vaccine_blocks(referral, facts, ig, protocol))
    gap = timedelta(days=protocol.vaccination.min_dose_interval_days)
    schedule = _Schedule(
        referral, facts, protocol, calendar, start, horizon_end, live_blocks, plan, gap
    )
    if referral.hsct is not None:
        _hsct(schedule)
    elif any(t.drug_class == "chemotherapy" for t in referral.treatments):
        _after_chemotherapy(schedule)
    else:
        _immune_mediated(schedule)
    _influenza(referral, facts, protocol, calendar, start, horizon_end, plan)
    return plan


def _hsct(schedule: _Schedule) -> None:
    referral, facts, protocol, calendar, start, horizon_end, live_blocks, plan, gap = schedule
    assert referral.hsct is not None
    h = protocol.vaccination.hsct
    hsct = referral.hsct
    titre = protocol.reassessment.titre_panel_words
    base = tuple(inactivated_blocks(referral, protocol))
    pcv = Series(
        "PCV",
        h.pcv_doses,
        max(start, add_months(hsct.date, h.pcv_start_months)),
        base,
        f"revaccination after HSCT: pneumococcal conjugate from {h.pcv_start_months} months, "
        f"{h.pcv_doses} doses {h.pcv_dose_interval_months} month(s) apart",
        HSCT_SRC,
        _given(referral, "PCV", hsct.date),
        h.pcv_dose_interval_months,
    )
    pcv_doses = _schedule(pcv, calendar, horizon_end, plan, min_gap=gap)
    pcv_done = list(pcv.given) + [d.due for d in pcv_doses]
    if len(pcv_done) >= h.pcv_doses:
        if hsct.active_gvhd:
            fourth = Series(
                "PCV",
                1,
                max(start, add_months(pcv_done[0], h.pcv4_after_first_months)),
                base,
                "active GVHD: a 4th conjugate dose instead of PPSV23 (EBMT 0-1-2-12 months)",
                HSCT_SRC,
                _given(referral, "PCV", hsct.date)[h.pcv_doses :],
                number_from=h.pcv_doses + 1,
            )
            _schedule(fourth, calendar, horizon_end, plan, min_gap=gap)
        else:
            earliest = max(
                start,
                add_months(hsct.date, h.ppsv23_from_months),
                pcv_done[-1] + timedelta(weeks=protocol.vaccination.ppsv23_after_pcv_weeks),
            )
            _schedule(
                Series(
                    "PPSV23",
                    1,
                    earliest,
                    base,
                    f"PPSV23 at >= {h.ppsv23_from_months} months after HSCT, no chronic GVHD, "
                    f">= {protocol.vaccination.ppsv23_after_pcv_weeks} weeks after the conjugate",
                    HSCT_SRC,
                    _given(referral, "PPSV23", hsct.date),
                    titres=titre.get("PCV"),
                ),
                calendar,
                horizon_end,
                plan,
                min_gap=gap,
            )
    for code in h.inactivated:
        vaccine = _tetanus_code(facts, protocol) if code in ("DTaP", "Tdap") else code
        _schedule(
            Series(
                vaccine,
                h.inactivated_doses,
                max(start, add_months(hsct.date, h.inactivated_start_months)),
                base,
                f"revaccination after HSCT: from {h.inactivated_start_months} months, "
                f"{h.inactivated_doses} doses",
                HSCT_SRC,
                _given(referral, vaccine, hsct.date),
                h.inactivated_dose_interval_months,
                titres=titre.get(vaccine),
            ),
            calendar,
            horizon_end,
            plan,
            min_gap=gap,
        )
    for code in h.live:
        _schedule(
            Series(
                code,
                h.live_doses,
                start,
                live_blocks,
                f"after HSCT: {h.live_doses} doses from {h.live_from_months} months, no GVHD, off "
                "immunosuppression, 8-11 months after the last IVIG",
                HSCT_SRC,
                _given(referral, code, hsct.date),
            ),
            calendar,
            horizon_end,
            plan,
            min_gap=gap,
        )
    plan.decisions.append(
        Decision(
            "vaccination",
            "hepatitis B: check anti-HBs after the series",
            f"anti-HBs < {protocol.vaccination.anti_hbs_protective_miu_ml:g} mIU/mL after the "
            "series: repeat the series; titres 6-8 weeks after the last dose of a series",
            HSCT_SRC,
        )
    )


def _after_chemotherapy(schedule: _Schedule) -> None:
    referral, facts, protocol, calendar, start, horizon_end, live_blocks, plan, gap = schedule
    v = protocol.vaccination
    base = tuple(inactivated_blocks(referral, protocol))
    valid_from = facts.chemotherapy_end
    during = [
        x
        for x in referral.vaccinations
        if any(
            t.drug_class == "chemotherapy" and t.start <= x.date <= (t.end or facts.today)
            for t in referral.treatments
        )
    ]
    if during:
        plan.decisions.append(
            Decision(
                "vaccination",
                f"{len(during)} dose(s) given during chemotherapy not counted",
                "inactivated doses given in maintenance do not count as valid unless a protective "
                "titre is shown",
                IDSA,
            )
        )
    if valid_from is None:
        plan.decisions.append(
            Decision(
                "vaccination",
                "boosters after the end of chemotherapy",
                f"inactivated boosters {v.after_chemotherapy_inactivated_months} months after the "
                f"end ({v.after_chemotherapy_inactivated_months_anti_cd20} with anti-CD20), live "
                f"at {v.after_chemotherapy_live_months}: chemotherapy is ongoing",
                CHEMO_SRC,
            )
        )
        for code in v.after_chemotherapy_live:
            reasons = tuple(f"{b.reason} ({b.source})" for b in holding(live_blocks, start, None))
            plan.deferred.append(Deferral(code, None, reasons))
        return
    pcv_doses: list[VaccineDose] = []
    for code in v.after_chemotherapy_inactivated:
        vaccine = _tetanus_code(facts, protocol) if code in ("DTaP", "Tdap") else code
        scheduled = _schedule(
            Series(
                vaccine,
                1,
                start,
                base,
                "booster after chemotherapy: inactivated "
                f"{v.after_chemotherapy_inactivated_months} months after the end "
                f"({v.after_chemotherapy_inactivated_months_anti_cd20} after anti-CD20)",
                CHEMO_SRC,
                _given(referral, vaccine, valid_from),
            ),
            calendar,
            horizon_end,
            plan,
            min_gap=gap,
        )
        if vaccine == "PCV":
            pcv_doses = scheduled
    pcv_dates = [*_given(referral, "PCV", valid_from), *(d.due for d in pcv_doses)]
    if pcv_dates:
        _schedule(
            Series(
                "PPSV23",
                1,
                max(start, pcv_dates[-1] + timedelta(weeks=v.ppsv23_after_pcv_weeks)),
                base,
                f"PPSV23 >= {v.ppsv23_after_pcv_weeks} weeks after the conjugate",
                PNEUMO_SRC,
                _given(referral, "PPSV23", valid_from),
            ),
            calendar,
            horizon_end,
            plan,
            min_gap=gap,
        )
    for code in v.after_chemotherapy_live:
        _schedule(
            Series(
                code,
                1,
                start,
                live_blocks,
                f"live booster {v.after_chemotherapy_live_months} months after the end of "
                "chemotherapy, off immunosuppression and clear of immunoglobulin",
                CHEMO_SRC,
                _given(referral, code, valid_from),
            ),
            calendar,
            horizon_end,
            plan,
            min_gap=gap,
        )


def _immune_mediated(schedule: _Schedule) -> None:
    referral, _facts, protocol, calendar, start, horizon_end, live_blocks, plan, gap = schedule
    v = protocol.vaccination
    base = tuple(inactivated_blocks(referral, protocol))
    pcv_given = _given(referral, "PCV", None)
    pcv_doses: list[VaccineDose] = []
    if "PCV" in v.immune_mediated_inactivated and not pcv_given:
        pcv_doses = _schedule(
            Series(
                "PCV",
                1,
                start,
                base,
                "pneumococcal conjugate first, then PPSV23; vaccinate before anti-CD20 or >= 6 "
                "months after it",
                PNEUMO_SRC,
            ),
            calendar,
            horizon_end,
            plan,
            min_gap=gap,
        )
    for code in v.immune_mediated_inactivated:
        if code != "PCV":
            _schedule(
                Series(
                    code,
                    1,
                    start,
                    base,
                    "reinforcement under immunosuppression",
                    IDSA,
                    _given(referral, code, None),
                ),
                calendar,
                horizon_end,
                plan,
                min_gap=gap,
            )
    pcv_dates = [*pcv_given, *(d.due for d in pcv_doses)]
    ppsv = _given(referral, "PPSV23", None)
    if pcv_dates and not ppsv:
        _schedule(
            Series(
                "PPSV23",
                1,
                max(start, pcv_dates[-1] + timedelta(weeks=v.ppsv23_after_pcv_weeks)),
                base,
                f"PPSV23 >= {v.ppsv23_after_pcv_weeks} weeks after the conjugate",
                PNEUMO_SRC,
            ),
            calendar,
            horizon_end,
            plan,
            min_gap=gap,
        )
    elif len(ppsv) == 1 and referral.diagnosis.category == "immune_mediated":
        _schedule(
            Series(
                "PPSV23",
                1,
                max(start, add_years(ppsv[0], v.ppsv23_repeat_years)),
                base,
                f"second PPSV23 {v.ppsv23_repeat_years} years after the first in chronic "
                "inflammatory disease",
                PNEUMO_SRC,
                number_from=2,
            ),
            calendar,
            horizon_end,
            plan,
            min_gap=gap,
        )
    for code in v.immune_mediated_live:
        given = _given(referral, code, None)
        if len(given) >= v.live_series_doses:
            continue
        _schedule(
            Series(
                code,
                v.live_series_doses - len(given),
                start,
                live_blocks,
                f"complete the {code} series ({len(given)} of {v.live_series_doses} documented); "
                "contraindicated under high- and low-level immunosuppression (varicella may be "
                "considered under long-term low-level)",
                IDSA_T6,
                number_from=len(given) + 1,
            ),
            calendar,
            horizon_end,
            plan,
            min_gap=gap,
        )


def _season_bounds(year: int, protocol: Protocol) -> tuple[date, date]:
    v = protocol.vaccination
    sm, sd = (int(x) for x in v.influenza_season_start.split("-"))
    em, ed = (int(x) for x in v.influenza_season_end.split("-"))
    begin = date(year, sm, sd)
    end = date(year + (1 if (em, ed) < (sm, sd) else 0), em, ed)
    return begin, end


def _influenza(
    referral: Referral,
    facts: Facts,
    protocol: Protocol,
    calendar: UnitCalendar,
    start: date,
    horizon_end: date,
    plan: VaccinationPlan,
) -> None:
    blocks = influenza_blocks(referral, protocol)
    # Two doses in the first season after HSCT (none given since the transplant).
    hsct_first = referral.hsct is not None and not any(
        x.vaccine == "IIV" and x.date >= referral.hsct.date for x in referral.vaccinations
    )
    for year in range(start.year - 1, horizon_end.year + 1):
        begin, end = _season_bounds(year, protocol)
        if end < start or begin > horizon_end:
            continue
        given = tuple(
            x.date for x in referral.vaccinations if x.vaccine == "IIV" and begin <= x.date <= end
        )
        doses = protocol.vaccination.hsct.influenza_first_season_doses if hsct_first else 1
        if hsct_first:
            hsct_first = False
        window = (
            Block("outside the influenza season", "unit policy (campaign dates)", begin),
            Block(
                "outside the influenza season",
                "unit policy (campaign dates)",
                None,
                end + timedelta(days=1),
            ),
        )
        series = Series(
            "IIV",
            doses,
            max(start, begin),
            (*blocks, *window),
            f"inactivated influenza every season from 6 months of age (season {begin.year}-"
            f"{end.year})",
            IDSA,
            given,
            gap_months=0,
        )
        before = len(plan.items)
        _schedule(series, calendar, horizon_end, plan, min_gap=timedelta(days=28))
        for i in range(before, len(plan.items)):
            item = plan.items[i]
            plan.items[i] = VaccineDose(
                key=f"vaccine_dose:IIV:{begin.year}:{item.dose_number}",
                due=item.due,
                vaccine="IIV",
                live=False,
                dose_number=item.dose_number,
                earliest=item.earliest,
                latest=min(item.latest, end) if item.latest else end,
            )
