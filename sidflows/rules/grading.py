"""Degree of immunosuppression: high / low / none; transient, not, or no cause found.

The section is docs/clinical-reference.md §2.
"""

from __future__ import annotations

from datetime import date

from sidflows.calendar import add_months
from sidflows.protocol import Cd4Band, Protocol
from sidflows.referral import LabEntry, ReferralDocument, TreatmentEntry
from sidflows.rules.coded import unrecognised_biologic_until
from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import (
    classes_of,
    complement_inhibitor,
    counts_as_immunosuppressive,
    drug_is,
    not_immunosuppressive,
)
from sidflows.rules.facts import (
    Facts,
    course_days,
    dose_per_kg_day,
    dose_per_kg_week,
)
from sidflows.rules.model import Grading
from sidflows.rules.steroids import conversion_note, equivalence, is_high_dose_steroid

IDSA = "IDSA 2013 (Rubin, CID 58:e44)"
# Classes that go on with no planned end make the deficiency last as long as they do.
_MAINTENANCE = frozenset(
    {
        "anti_cd20",  # a maintenance regimen (ocrelizumab every 6 months) when it has no end
        "corticosteroid",
        "antimetabolite",
        "anti_tnf",
        "jak_inhibitor",
        "calcineurin_inhibitor",
        "other_biologic",
    }
)


def cd4_band(age_years: int, protocol: Protocol) -> Cd4Band:
    for band in protocol.grading.cd4:
        if age_years < band.below_age_years:
            return band
    return protocol.grading.cd4[-1]


def cd4_severity(cd4: float | None, percent: float | None, band: Cd4Band) -> str | None:
    """CDC 2014 paediatric staging by age, count and percentage each: the worse of the two."""
    if (cd4 is not None and cd4 < band.severe_below_per_ul) or (
        percent is not None and percent < band.severe_below_percent
    ):
        return "severe"
    if (cd4 is not None and cd4 < band.moderate_below_per_ul) or (
        percent is not None
        and band.moderate_below_percent is not None
        and percent < band.moderate_below_percent
    ):
        return "moderate"
    return None


def band_words(band: Cd4Band, protocol: Protocol) -> str:
    """The age range a CD4 band covers, as the protocol's table has it (§2.3)."""
    bands = protocol.grading.cd4
    index = next(i for i, b in enumerate(bands) if b is band)
    if index == 0:
        return f"under {band.below_age_years} year{'s' if band.below_age_years != 1 else ''}"
    if band is bands[-1]:  # the last band also stands for every older age (cd4_band)
        return f"{bands[index - 1].below_age_years} years or more"
    return f"{bands[index - 1].below_age_years}-{band.below_age_years - 1} years"


def cd4_band_on(facts: Facts, lab: LabEntry, protocol: Protocol) -> tuple[Cd4Band, str]:
    """The band of the child's age on the test's date (CDC 2014 stages by the age on the
    date of the CD4 test, §2.3), and the words that say so when it is not today's band."""
    band = cd4_band(facts.age_years_on(lab.date), protocol)
    if band is cd4_band(facts.age_years, protocol):
        return band, ""
    return band, f" (the band of the age at the test: {band_words(band, protocol)})"


def cd4_findings(facts: Facts, protocol: Protocol) -> list[tuple[str, str]]:
    """(severity, text) of the newest fresh CD4 count and the newest fresh CD4 percentage,
    each against the thresholds of the child's age on the day it was drawn (§2.3)."""
    found: list[tuple[str, str]] = []
    count, percent = facts.latest_cd4_count, facts.latest_cd4_percent
    if count is not None and count.cd4_per_ul is not None:
        band, at = cd4_band_on(facts, count, protocol)
        severity = cd4_severity(count.cd4_per_ul, None, band)
        if severity:
            found.append((severity, f"CD4 {count.cd4_per_ul:g}/uL on {count.date}{at}"))
    if percent is not None and percent.cd4_percent is not None:
        band, at = cd4_band_on(facts, percent, protocol)
        severity = cd4_severity(None, percent.cd4_percent, band)
        if severity:
            found.append((severity, f"CD4 {percent.cd4_percent:g} % on {percent.date}{at}"))
    return found


def stale_severe_cd4(facts: Facts, protocol: Protocol) -> str | None:
    """A stale newest CD4 count or percentage in the severe band of the age it was drawn at,
    with no fresh one of the same measure (§6.6): not graded, but it keeps a prophylaxis
    (§5.1). The reason, or None."""
    for lab in facts.stale_cd4:
        band, at = cd4_band_on(facts, lab, protocol)
        if lab.cd4_per_ul is not None and facts.latest_cd4_count is None:
            severity = cd4_severity(lab.cd4_per_ul, None, band)
            shown = f"CD4 {lab.cd4_per_ul:g}/uL on {lab.date}"
        elif lab.cd4_percent is not None and facts.latest_cd4_percent is None:
            severity = cd4_severity(None, lab.cd4_percent, band)
            shown = f"CD4 {lab.cd4_percent:g} % on {lab.date}"
        else:
            continue
        if severity == "severe":
            return (
                f"the last {shown} (stale: older than {protocol.reassessment.result_valid_months}"
                f" months) was below the severe threshold for age{at}: until a fresh CD4 is "
                "above it (repeat it now)"
            )
    return None


def _treatment_level(
    t: TreatmentEntry, today: date, weight_kg: float, protocol: Protocol, chemotherapy: bool
) -> tuple[str, str]:
    """(level, reason) of one active treatment (``chemotherapy``: read as chemotherapy, §2.8)."""
    g = protocol.grading
    if (how := complement_inhibitor(t, protocol)) is not None:
        # Only graded when the protocol takes the alternative, "low" (§2.12).
        return protocol.prophylaxis.meningococcal.grading_level, (
            f"{t.drug} (complement inhibitor, {how}): a specific susceptibility to Neisseria, "
            "not general immunosuppression; graded low-level by protocol (the alternative, "
            "§2.12)"
        )
    if chemotherapy and t.drug_class != "chemotherapy" and "chemotherapy" in g.high_classes:
        return "high", (
            f"{t.drug} ({t.drug_class.replace('_', ' ')} referred): read as chemotherapy, "
            f"high-level ({IDSA}; §2.8)"
        )
    if t.drug_class in g.high_classes:
        return "high", f"{t.drug} ({t.drug_class.replace('_', '-')}): high-level ({IDSA})"
    read_as = sorted(c for c in classes_of(t, protocol) & {"car_t", "anti_cd20"})
    if read_as and t.drug_class not in ("corticosteroid", "antimetabolite"):
        cls = read_as[0]
        return "high", (
            f"{t.drug} ({t.drug_class.replace('_', ' ')} referred): recognised as "
            f"{cls.replace('_', '-')} by its name or ATC code (config/codes.toml): high-level "
            f"({IDSA}; §2.10)"
        )
    if g.not_immunosuppressive_level == "low" and (named := not_immunosuppressive(t, protocol)):
        return "low", (
            f"{t.drug} ({named}): not immunosuppressive at usual doses (IDSA 2013); graded "
            "low-level by protocol (the alternative, §2.11)"
        )
    if t.drug_class == "corticosteroid":
        high = is_high_dose_steroid(t, weight_kg, protocol)
        days = course_days(t, today)
        dosed = any(
            d is not None for d in (t.dose_mg_day, t.dose_mg_per_kg_day, t.dose_mg_per_kg_week)
        )
        if dosed and equivalence(t, protocol).factor is None:
            return g.steroid_unknown_dose_level, (
                f"{t.drug}: {conversion_note(t, protocol, weight_kg)}; graded "
                f"{g.steroid_unknown_dose_level}-level (cautious): clinician to check"
            )
        if high is None:
            return g.steroid_unknown_dose_level, (
                f"{t.drug}: dose not given, graded {g.steroid_unknown_dose_level}-level "
                "(cautious): no dose_mg_day, dose_mg_per_kg_day or dose_mg_per_kg_week"
            )
        level, why = _steroid_level(t, high, days, protocol)
        converted = conversion_note(t, protocol, weight_kg)
        if converted:
            why = f"{why} [{converted}]"
        note = dose_per_kg_day(t, weight_kg)[1] if t.dose_mg_per_kg_day is None else ""
        return level, f"{why} [{note}]" if note and t.dose_mg_day is None else why
    if t.drug_class == "antimetabolite":
        return _antimetabolite_level(t, weight_kg, protocol)
    if t.drug_class in g.b_cell_depleting_classes:
        return "high", f"{t.drug} ({t.drug_class.replace('_', '-')}): B-cell depleting ({IDSA})"
    return g.unlisted_level, (
        f"{t.drug} ({t.drug_class.replace('_', ' ')}): not graded by IDSA 2013; "
        f"{g.unlisted_level}-level by protocol (cautious)"
    )


def _steroid_level(t: TreatmentEntry, high: bool, days: int, protocol: Protocol) -> tuple[str, str]:
    g = protocol.grading
    if high and days >= g.steroid_high_min_days:
        return "high", (
            f"{t.drug}: high dose for {days} days (>= {g.steroid_high_min_days}) ({IDSA})"
        )
    if high:
        return "low", (
            f"{t.drug}: high dose for {days} days so far; high-level from day "
            f"{g.steroid_high_min_days} ({IDSA})"
        )
    return "low", f"{t.drug}: below the high-dose threshold: low-level ({IDSA})"


def _antimetabolite_level(
    t: TreatmentEntry, weight_kg: float, protocol: Protocol
) -> tuple[str, str]:
    g = protocol.grading
    per_week = dose_per_kg_week(t, weight_kg)
    per_day = dose_per_kg_day(t, weight_kg)
    ceilings: list[tuple[tuple[str, ...], tuple[float | None, str], float, str]] = [
        (g.methotrexate_names, per_week, g.methotrexate_low_max_mg_per_kg_week, "mg/kg/week"),
        (g.azathioprine_names, per_day, g.azathioprine_low_max_mg_per_kg_day, "mg/kg/day"),
        (g.mercaptopurine_names, per_day, g.mercaptopurine_low_max_mg_per_kg_day, "mg/kg/day"),
    ]
    for names, (dose, conversion), ceiling, unit in ceilings:
        if not drug_is(t, names, protocol):
            continue
        if dose is None:
            return g.unlisted_level, (
                f"{t.drug}: dose not given, graded {g.unlisted_level}-level (cautious): "
                "no dose_mg_per_kg_week, dose_mg_per_kg_day or dose_mg_day"
            )
        note = f" [{conversion}]" if conversion else ""
        if dose <= ceiling:
            return "low", (
                f"{t.drug} {round(dose, 2):g} {unit}{note} (<= {ceiling:g}): low-level ({IDSA})"
            )
        return "high", (
            f"{t.drug} {round(dose, 2):g} {unit}{note} (> {ceiling:g} low-level ceiling) ({IDSA})"
        )
    return g.unlisted_level, (
        f"{t.drug}: antimetabolite not graded by IDSA 2013; {g.unlisted_level}-level by "
        "protocol (cautious)"
    )


def grade(ctx: PlanContext) -> Grading:
    """Grade the child's immunosuppression on ``ctx.today``."""
    referral, facts, protocol = ctx.referral, ctx.facts, ctx.protocol
    g = protocol.grading
    today = ctx.today
    levels: list[str] = []
    reasons: list[str] = []
    markers: list[str] = []

    def add(level: str, reason: str) -> None:
        levels.append(level)
        reasons.append(reason)

    for t in facts.active:
        add(*_treatment_level(t, today, facts.weight_kg, protocol, facts.is_chemotherapy(t)))
    not_suppressive = ctx.cite(
        "grading.not_immunosuppressive_drugs", "grading.not_immunosuppressive_level"
    )
    for drug in facts.not_immunosuppressive:
        add(
            "none", f"{drug}: not immunosuppressive at usual doses, graded none ({not_suppressive})"
        )
    complement = ctx.cite("prophylaxis.meningococcal.grading_level")
    for drug in facts.complement_inhibitors:
        add(
            "none",
            f"{drug}: complement inhibitor: a specific susceptibility to Neisseria "
            "(meningococcus), not general immunosuppression: graded none and no live-vaccine "
            f"block; meningococcal vaccines and antibiotic cover are planned ({complement})",
        )
    for t in referral.treatments:
        until = unrecognised_biologic_until(t, protocol)
        if until is not None and t.end is not None and t.end < today < until:
            add(
                "high",
                f"{t.drug} (referred as other biologic, not recognised) ended {t.end}: graded "
                f"high until {until}, {g.unrecognised_drug_hold_months} months after it, or "
                "until the clinician names the drug "
                f"({ctx.cite('grading.unrecognised_drug_hold_months')})",
            )
    ended = facts.chemotherapy_end
    v = protocol.vaccination
    if ended is not None and today < add_months(ended, v.after_chemotherapy_live_months):
        # Named, not graded: the windows after it hold the vaccines (§4.2), whatever the
        # level the child's results give now.
        inactivated = (
            v.after_chemotherapy_inactivated_months_anti_cd20
            if facts.had_anti_cd20
            else v.after_chemotherapy_inactivated_months
        )
        reasons.append(
            f"chemotherapy ended {ended}: inactivated vaccines from "
            f"{add_months(ended, inactivated)}, live from "
            f"{add_months(ended, v.after_chemotherapy_live_months)} ({IDSA} rec. 73; §4.2)"
        )
    depletion = facts.b_cell_depletion
    if depletion is not None:
        add("high", f"{depletion.reason} ({ctx.cite(*depletion.source_paths)})")
    if referral.hsct is not None:
        until = add_months(referral.hsct.date, g.hsct_high_months)
        if referral.hsct.active_gvhd:
            add("high", "active GVHD after HSCT (IDSA 2013 table 4)")
        elif today < until:
            add(
                "high",
                f"{referral.hsct.type} HSCT on {referral.hsct.date}: immune "
                f"reconstitution until {until} (IDSA 2013 table 4)",
            )
    anc = facts.latest_anc
    if (
        anc is not None
        and anc.anc_per_ul is not None
        and anc.anc_per_ul < g.anc_severe_below_per_ul
    ):
        word = "profound" if anc.anc_per_ul < g.anc_profound_below_per_ul else "severe"
        add(
            "high",
            f"{word} neutropenia: ANC {anc.anc_per_ul:g}/uL on {anc.date} "
            "(IDSA febrile neutropenia)",
        )
        markers.append(reasons[-1])
    for severity, shown in cd4_findings(facts, protocol):
        if severity == "severe":
            add(
                "high",
                f"{shown}: below the severe threshold for age (CDC 2014 staging, used as a flag)",
            )
            markers.append(reasons[-1])
        else:
            add(
                "low",
                f"{shown}: moderately low for age (CDC 2014 staging, used as a flag)",
            )
    absent = absent_b_cells_without_cause(ctx)
    if absent is not None:
        add("high", f"{absent} ({ESID_AGAMMA})")
        markers.append(reasons[-1])
    if facts.stale:
        reasons.append(
            f"stale results not used (older than {protocol.reassessment.result_valid_months} "
            f"months): {', '.join(facts.stale)}; repeat them"
        )
    level = "high" if "high" in levels else "low" if "low" in levels else "none"
    if level == "none":
        reasons.append("no active immunosuppressive treatment and no marker of immunosuppression")
    transient, why = _transience(referral, facts, protocol, level)
    reasons.append(why)
    return Grading(
        level=level,  # type: ignore[arg-type]
        transient=transient,
        reasons=tuple(reasons),
        markers=tuple(markers),
    )


def _transience(
    referral: ReferralDocument, facts: Facts, protocol: Protocol, level: str
) -> tuple[bool | None, str]:
    """Transient (time-limited causes), not (a cause with no planned end), or None: no
    immunosuppressive cause was found, so neither can be said (§2.14)."""
    # Chemotherapy (an antimetabolite maintenance of ALL too, §2.8) is time-limited.
    lasting = [
        t
        for t in facts.active
        if t.end is None and t.drug_class in _MAINTENANCE and not facts.is_chemotherapy(t)
    ]
    if lasting:
        drugs = ", ".join(t.drug for t in lasting)
        return False, f"not transient while {drugs} continue(s) with no planned end"
    if referral.hsct is not None and referral.hsct.active_gvhd:
        return False, "not transient while GVHD is active"
    causes = [t for t in referral.treatments if counts_as_immunosuppressive(t, protocol)]
    if not causes and referral.hsct is None:
        # A complement inhibitor is an acquired complement deficiency (§2.12): a cause.
        complement = [
            t
            for t in referral.treatments
            if t.active_on(facts.today) and complement_inhibitor(t, protocol)
        ]
        if complement:
            drugs = ", ".join(t.drug for t in complement)
            if any(t.end is None for t in complement):
                return False, (
                    f"not transient while {drugs} continue(s) with no planned end: an acquired "
                    "complement deficiency, not general immunosuppression"
                )
            return True, f"transient: the complement deficiency ends with {drugs}"
        return None, _no_cause_found(facts, level)
    return True, "transient: the causes are time-limited; reassess until recovery"


def _no_cause_found(facts: Facts, level: str) -> str:
    """What was found when no immunosuppressive treatment or transplant is recorded (§2.14)."""
    found = facts.not_immunosuppressive
    drugs = f" (only {', '.join(found)}: not immunosuppressive)" if found else ""
    markers = (
        f"; markers graded {level} without a recorded cause: a primary or other cause is a "
        "clinician question"
        if level != "none"
        else ""
    )
    return (
        f"no immunosuppressive treatment or transplant recorded{drugs}{markers}: neither "
        "transient nor permanent can be said; whether the child is in scope (an acquired "
        "immunodeficiency) is a clinician decision"
    )


ESID_AGAMMA = (
    "ESID clinical working definitions, X-linked agammaglobulinaemia (CD19+ B cells < 2 %; "
    "IgG usually < 2 g/L; possible XLA: IgG, IgM and IgA > 2 SD below normal for age, other "
    "causes excluded); ACIP general best practice guidelines, altered immunocompetence "
    "(severe antibody deficiency, e.g. XLA: OPV, LAIV, BCG, Ty21a, yellow fever "
    "contraindicated; IGIV interferes with measles and varicella vaccines), "
    "docs/clinical-reference.md §2.14"
)


def absent_b_cells_without_cause(ctx: PlanContext) -> str | None:
    """Absent B cells (a fresh CD19 below the aplasia threshold) with an IgG below the limit
    for age and no immunosuppressive cause, transplant, complement inhibitor or B-cell
    depleting treatment recorded (§2.14): a primary agammaglobulinaemia (XLA) until proven
    otherwise, graded high (no live vaccines). The reason, or None."""
    referral, facts, protocol = ctx.referral, ctx.facts, ctx.protocol
    cd19 = facts.latest_cd19
    if (
        cd19 is None
        or cd19.cd19_per_ul is None
        or cd19.cd19_per_ul >= protocol.grading.b_cell_aplasia_below_cd19_per_ul
        or not facts.igg_low
        or facts.b_cell_depletion is not None
        or referral.hsct is not None
        or facts.complement_inhibitors
        or any(counts_as_immunosuppressive(t, protocol) for t in referral.treatments)
    ):
        return None
    igg = facts.latest_igg
    shown = f"IgG {igg.igg_g_l:g} g/L" if igg is not None and igg.igg_g_l is not None else "IgG"
    return (
        f"absent B cells (CD19 {cd19.cd19_per_ul:g}/uL on {cd19.date}, below "
        f"{protocol.grading.b_cell_aplasia_below_cd19_per_ul:g}) with {shown} below the limit "
        "for age and no acquired cause recorded: a primary agammaglobulinaemia until proven "
        "otherwise, graded high: no live vaccines"
    )
