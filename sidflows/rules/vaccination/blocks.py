"""What keeps a vaccine from being given: live, inactivated and influenza blocks.

Every cause is a :class:`Block` with the dates it holds between and its source;
:func:`first_free_day` finds the first day no block holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from sidflows.calendar import add_months
from sidflows.referral import LIVE_VACCINES, TreatmentEntry
from sidflows.rules.bcells import depleting_class
from sidflows.rules.coded import unrecognised_biologic_until
from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import anti_cd20_read, counts_as_immunosuppressive, is_anti_cd20
from sidflows.rules.facts import name_matches
from sidflows.rules.igrecord import ig_courses
from sidflows.rules.immunoglobulin import IgDecision
from sidflows.rules.model import Block, Grading
from sidflows.rules.steroids import is_high_dose_steroid
from sidflows.rules.vaccination.cd4_live import acip_cd4_block
from sidflows.rules.vaccination.conditions import (
    chemotherapy_wait_applies,
    off_immunosuppression_after_hsct,
)
from sidflows.rules.vaccination.sources import (
    ACIP_ABS,
    ACIP_STEROIDS,
    CD20_SRC,
    CHEMO_SRC,
    HSCT_SRC,
    IDSA,
    IDSA_T6,
)


def is_live(vaccine: str) -> bool:
    return vaccine in LIVE_VACCINES


def span(t: TreatmentEntry) -> str:
    """A treatment's dates, as the block reasons print them."""
    return f"{t.start} to {t.end}" if t.end else f"since {t.start}, ongoing"


def live_vaccine_blocks(ctx: PlanContext, *, ig: IgDecision, grading: Grading) -> list[Block]:
    """Every cause in docs/clinical-reference.md §4 that keeps MMR or varicella from being given.

    ``grading`` is the plan's own grading of ``ctx.today`` (not graded again here).
    """
    referral, facts, protocol = ctx.referral, ctx.facts, ctx.protocol
    v = protocol.vaccination
    blocks: list[Block] = []
    if grading.level == "high" and grading.markers:
        # Graded high from laboratory markers alone: no treatment block covers it. It holds
        # until a reassessment grades otherwise (the next plan grades again), §4.3.
        blocks.append(
            Block(
                "graded high-level immunosuppression ("
                + "; ".join(grading.markers)
                + "): no live vaccine until a reassessment shows otherwise",
                f"docs/clinical-reference.md §4.3; {IDSA_T6}",
                None,
            )
        )
    if (cd4 := acip_cd4_block(ctx, grading)) is not None:
        blocks.append(cd4)
    before = timedelta(days=v.live_before_immunosuppression_days)
    for t in referral.treatments:
        if not counts_as_immunosuppressive(t, protocol):
            continue  # not immunosuppressive (§2.11): no block
        # Every wait that applies (R-CHOP is chemotherapy and anti-CD20): the longest.
        waits: list[tuple[int, str]] = []
        if ctx.facts.is_chemotherapy(t):
            waits.append((v.after_chemotherapy_live_months, "after chemotherapy"))
        if is_anti_cd20(t, protocol):
            waits.append((v.after_anti_cd20_months, "after the last anti-CD20 dose"))
        steroid = t.drug_class == "corticosteroid"
        high_steroid = steroid and is_high_dose_steroid(t, facts.weight_kg, protocol)
        low_steroid = steroid and high_steroid is False
        if low_steroid and v.live_on_low_dose_steroids == "allow":
            continue  # ACIP: low-dose or alternate-day steroids do not hold live vaccines (§4.18)
        if steroid and not low_steroid:
            waits.append(
                (v.after_high_dose_steroid_live_months, "after stopping high-dose steroids")
            )
        if unrecognised_biologic_until(t, protocol) is not None:
            waits.append(
                (
                    protocol.grading.unrecognised_drug_hold_months,
                    "after it (a drug not recognised: the protocol's longest wait, until the "
                    "clinician names it)",
                )
            )
        wait, why = max(waits, key=lambda w: w[0]) if waits else (0, "")
        until = (
            None
            if t.end is None
            else (add_months(t.end, wait) if wait else t.end + timedelta(days=1))
        )
        text = f"{t.drug} ({span(t)}): no live vaccine under immunosuppression"
        if wait:
            text += f", nor until {wait} months {why}"
        if reading := anti_cd20_read(t, protocol):
            text += f" ({reading})"
        if t.start > ctx.today:
            text += (
                f"; live vaccines >= {v.live_before_immunosuppression_days} days before starting"
            )
        source = f"{IDSA}; {IDSA_T6}"
        if low_steroid:
            text += (
                " (a low-dose or alternate-day corticosteroid: held under IDSA 2013 table 6, "
                "the protocol's cautious default; ACIP general best practice does not count "
                "low-to-moderate or long-term alternate-day short-acting steroids as a "
                "contraindication, the configured alternative)"
            )
            source += f"; {ACIP_STEROIDS}; {ctx.cite('vaccination.live_on_low_dose_steroids')}"
        blocks.append(Block(text, source, until, t.start - before))
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
        blocks.extend(off_immunosuppression_after_hsct(ctx))
    # The record's IG doses first, the IG the plan gives after the blood products (§4.7).
    from_ig = ig_blocks(ctx, ig=ig)
    recorded = [b for b in from_ig if b.reason.startswith("immunoglobulin ")]
    blocks.extend(recorded)
    depletion = facts.b_cell_depletion
    if depletion is not None:
        blocks.append(
            Block(
                f"{depletion.reason}: no live vaccine until B cells have recovered (and the IG "
                "interval has passed)",
                f"{ctx.cite(*depletion.source_paths)}; {IDSA_T6}",
                depletion.until,
                # A low CD19 after another biologic (§2.10) is lifted by a count, not a date.
                awaits_result=depletion.by_count_after_biologic,
            )
        )
    blocks.extend(_no_cd19_recovery_block(ctx))
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
    blocks.extend(b for b in from_ig if b not in recorded)
    blocks.append(
        Block(
            f"MMR and varicella from {v.live_min_age_months} months of age",
            "ACIP routine schedule",
            add_months(referral.patient.birth_date, v.live_min_age_months),
        )
    )
    return blocks


def ig_blocks(ctx: PlanContext, *, ig: IgDecision, what: str = "MMR or varicella") -> list[Block]:
    """The antibody interval of immunoglobulin (§4.7): after the IG doses of the record (a
    course over consecutive days counts as its total), until the interval after a trial off,
    and, while replacement continues, with no end. ``what`` names what waits (live vaccines;
    vaccine titres, §6.8)."""
    v = ctx.protocol.vaccination
    blocks: list[Block] = []
    courses = ig_courses(list(ctx.referral.immunoglobulin_doses))
    if courses:
        ai = v.antibody_interval
        binding = max(courses, key=lambda c: add_months(c.end, ai.ivig_months(c.g_per_kg)))
        months = ai.ivig_months(binding.g_per_kg)
        given = (
            f"{binding.g_per_kg:g} g/kg on {binding.start}"
            if binding.doses == 1
            else f"course of {binding.g_per_kg:g} g/kg over {binding.doses} days "
            f"({binding.start} to {binding.end})"
        )
        blocks.append(
            Block(
                f"immunoglobulin {given}: {months} months before {what}",
                ACIP_ABS,
                add_months(binding.end, months),
            )
        )
    if ig.status == "trial_off" and ig.sessions_until is not None:
        months = v.antibody_interval.ivig_months(ig.dose_g_per_kg)
        blocks.append(
            Block(
                f"IG replacement until the trial off on {ig.sessions_until}: {months} months "
                f"before {what}",
                ACIP_ABS,
                add_months(ig.sessions_until, months),
            )
        )
    elif ig.gives_ig:
        blocks.append(
            Block(
                "while IG replacement continues (it neutralises live vaccines; the clock starts "
                "at the last dose)"
                if what == "MMR or varicella"
                else "while IG replacement continues (its IgG makes serology uninterpretable; "
                f"the clock starts at the last dose): no {what}",
                ACIP_ABS,
                None,
            )
        )
    return blocks


def _no_cd19_recovery_block(ctx: PlanContext) -> list[Block]:
    """§4.12: after a B-cell-depleting treatment, no live vaccine until a fresh CD19 count
    after its last dose shows recovery (at or above the lab's lower limit)."""
    referral, protocol = ctx.referral, ctx.protocol
    depletion = ctx.facts.b_cell_depletion
    if not protocol.vaccination.live_requires_cd19_recovery or (
        depletion is not None and depletion.until is None
    ):
        return []  # a depletion already holds live vaccines until recovery (§2.6)
    depleting = [
        t
        for t in referral.treatments
        if t.start <= ctx.today and depleting_class(t, protocol) is not None
    ]
    if not depleting:
        return []
    last = max(t.end or t.start for t in depleting)
    fresh_from = add_months(ctx.today, -protocol.reassessment.result_valid_months)
    recovered = any(
        lab.date > last
        and lab.date >= fresh_from
        and lab.cd19_per_ul is not None
        and lab.cd19_lower_limit_per_ul is not None
        and lab.cd19_per_ul >= lab.cd19_lower_limit_per_ul
        for lab in referral.labs
    )
    if recovered:
        return []
    drugs = ", ".join(dict.fromkeys(t.drug for t in depleting))
    return [
        Block(
            f"after {drugs} (B-cell depleting, last dose {last}): no fresh CD19 count since "
            "shows B-cell recovery (at or above the lab's lower limit): check CD19 at the "
            "reassessment; no live vaccine until B cells have recovered",
            ctx.cite("vaccination.live_requires_cd19_recovery"),
            None,
            awaits_result=True,
        )
    ]


def inactivated_blocks(ctx: PlanContext) -> list[Block]:
    """Booster doses are not valid during chemotherapy or anti-B-cell antibodies, nor during
    B-cell depletion (§4.2, §4.3, §4.10)."""
    referral, protocol = ctx.referral, ctx.protocol
    v = protocol.vaccination
    chemo = [t for t in referral.treatments if ctx.facts.is_chemotherapy(t)]
    # Any anti-CD20, alone or in a regimen (R-CHOP), whatever the referral's class (§2.7).
    cd20 = [t for t in referral.treatments if is_anti_cd20(t, protocol)]
    # "The regimen included anti-B-cell antibodies": an anti-CD20 course overlapping
    # chemotherapy (R-CHOP overlaps itself).
    with_cd20 = any(
        t.start <= (c.end or date.max) and (t.end or date.max) >= c.start
        for t in cd20
        for c in chemo
    )
    blocks: list[Block] = []
    wait = chemotherapy_wait_applies(ctx)
    for t in referral.treatments:
        if wait and ctx.facts.is_chemotherapy(t):
            months = (
                v.after_chemotherapy_inactivated_months_anti_cd20
                if with_cd20
                else v.after_chemotherapy_inactivated_months
            )
            before = v.inactivated_before_immunosuppression_days
            text = (
                f"{t.drug} ({span(t)}): doses during chemotherapy do not count; boosters "
                f"{months} months after the end"
                + (" (regimen with anti-CD20)" if with_cd20 else "")
            )
            source = CHEMO_SRC
            until = None if t.end is None else add_months(t.end, months)
            blocks.append(Block(text, source, until, t.start - timedelta(days=before)))
        if t in cd20:
            months, before = v.after_anti_cd20_months, v.before_next_anti_cd20_days
            reading = anti_cd20_read(t, protocol)
            text = (
                f"{t.drug} ({span(t)}): vaccinate before starting, or >= {months} months "
                f"after the last dose and >= {before} days before the next"
                + (f" ({reading})" if reading else "")
            )
            until = None if t.end is None else add_months(t.end, months)
            blocks.append(Block(text, CD20_SRC, until, t.start - timedelta(days=before)))
    blocks.extend(b_cell_depletion_blocks(ctx))
    return blocks


def b_cell_depletion_blocks(ctx: PlanContext) -> list[Block]:
    """§4.10: inactivated vaccines other than influenza wait while B cells are depleted
    (CAR-T aplasia; a CD19 below the lab's limit after anti-CD20 or another depleting
    drug): they raise no antibodies, and IG replacement supplies them meanwhile."""
    facts, v = ctx.facts, ctx.protocol.vaccination
    depletion = facts.b_cell_depletion
    if depletion is None or not v.defer_inactivated_in_b_cell_depletion:
        return []
    text = (
        f"{depletion.reason}: conjugate, polysaccharide and other inactivated vaccines raise no "
        "antibodies during B-cell depletion: deferred until B cells recover (a CD19 at or above "
        "the lab's lower limit), then given or repeated where titres are absent"
    )
    if facts.on_ig_replacement:
        text += "; IG replacement supplies the antibodies meanwhile"
    source = ctx.cite("vaccination.defer_inactivated_in_b_cell_depletion", *depletion.source_paths)
    return [Block(text, source, depletion.until)]


def intensive_chemotherapy(ctx: PlanContext, t: TreatmentEntry) -> bool:
    """Is this an intensive phase of chemotherapy (induction, consolidation: the protocol's
    words), during which no influenza vaccine is given (IDSA 2013, §4.5)?"""
    words = ctx.protocol.vaccination.intensive_chemotherapy_words
    return ctx.facts.is_chemotherapy(t) and name_matches(t.drug, words)


def undated_intensive_chemotherapy(ctx: PlanContext) -> list[TreatmentEntry]:
    """The intensive phases of chemotherapy begun by the plan's day with no end date: they
    hold influenza vaccine with no day it can be planned (§4.5)."""
    return [
        t
        for t in ctx.referral.treatments
        if t.end is None and t.start <= ctx.today and intensive_chemotherapy(ctx, t)
    ]


def influenza_blocks(ctx: PlanContext) -> list[Block]:
    """Inactivated influenza: from 6 months, not during intensive chemotherapy, nor during
    anti-B-cell antibodies where the protocol says so (IDSA 2013; default on schedule,
    ACR 2022, §4.5)."""
    referral, protocol = ctx.referral, ctx.protocol
    v = protocol.vaccination
    blocks = [
        Block(
            f"influenza vaccine from {v.influenza_min_age_months} months of age",
            IDSA,
            add_months(referral.patient.birth_date, v.influenza_min_age_months),
        )
    ]
    skip_on_cd20 = v.influenza_on_anti_cd20 == "skip"
    for t in referral.treatments:
        # Default: on schedule on anti-CD20 (ACR 2022); "skip" is IDSA 2013's alternative.
        if skip_on_cd20 and is_anti_cd20(t, protocol):
            until = (
                None
                if t.end is None
                else add_months(t.end, protocol.grading.anti_cd20_depletion_months)
            )
            blocks.append(
                Block(
                    f"{t.drug} ({span(t)}): no influenza vaccine during anti-B-cell antibodies"
                    + (f" ({reading})" if (reading := anti_cd20_read(t, protocol)) else ""),
                    f"{IDSA}; rituximab label (B-cell depletion); "
                    f"{ctx.cite('vaccination.influenza_on_anti_cd20')}",
                    until,
                    t.start,
                )
            )
        if intensive_chemotherapy(ctx, t):
            until = None if t.end is None else t.end + timedelta(days=1)
            blocks.append(
                Block(
                    f"{t.drug} ({span(t)}): no influenza vaccine during intensive chemotherapy",
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
