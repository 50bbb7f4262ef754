"""What the plan could not read in the record: unknown drugs, coded classes, stale results,
anti-CD20 read in a regimen, conflicting doses, an IgG confounded by infused IgG.

Each becomes a decision for the clinician instead of a silent default
(docs/clinical-reference.md §2.7, §3.9, §6.6, §6.7 and §8).
"""

from __future__ import annotations

from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import drug_is
from sidflows.rules.facts import dose_per_kg_week, name_matches
from sidflows.rules.model import Decision

CODES = "config/codes.toml (WHO ATC index; unit policy names), docs/clinical-reference.md §8.2"
CODES_DX = (
    "config/codes.toml (WHO ICD-10; SNOMED CT; unit policy labels), docs/clinical-reference.md "
    "§8.1, §8.4"
)
CONFLICT = (
    "unit policy (a record that contradicts itself is the clinician's to correct; the plan "
    "never picks one entry), docs/clinical-reference.md §6.7"
)


def record_checks(ctx: PlanContext) -> list[Decision]:
    """Drugs the protocol does not know, ATC classes that disagree, stale results."""
    facts = ctx.facts
    found: list[Decision] = []
    for drug in facts.unrecognised_drugs:
        found.append(
            Decision(
                "grading",
                f"drug not recognised: {drug}",
                "neither an ATC code nor a drug name the protocol knows: graded by the class "
                "the referral gives; check the grading, the Pneumocystis indications "
                "(alemtuzumab, fludarabine) and the live-vaccine blocks",
                CODES,
            )
        )
    for kind, what in facts.unrecognised_codes:
        if kind == "diagnosis":
            found.append(
                Decision(
                    "grading",
                    f"diagnosis code not recognised: check {what}",
                    f"{what} is well-formed but not in the protocol's code tables: the diagnosis "
                    f"is read from its label ({_group_name(ctx)}); check the Pneumocystis "
                    "indications and the diagnosis-specific rules",
                    CODES_DX,
                )
            )
        else:
            found.append(
                Decision(
                    "grading",
                    f"drug code not recognised: check {what}",
                    f"{what} is a well-formed ATC code the protocol's code tables do not "
                    "map: the drug is read by its name and the class the referral gives; check "
                    "the grading, the Pneumocystis indications and the live-vaccine blocks",
                    CODES,
                )
            )
    for mismatch in facts.class_mismatches:
        found.append(
            Decision(
                "grading",
                "treatment class differs from its ATC code: check it",
                f"{mismatch}; graded as the referral says",
                CODES,
            )
        )
    for reading in facts.anti_cd20_readings:
        found.append(
            Decision(
                "grading",
                "anti-CD20 read in a treatment of another class: check it",
                f"{reading}: B-cell depletion, the anti-CD20 vaccine windows and the "
                "reassessments after anti-CD20 apply to it",
                ctx.cite(
                    "regimens.components",
                    *(["regimens.r_affix_means_rituximab"] if "R- convention" in reading else []),
                ),
            )
        )
    found.extend(methotrexate_daily(ctx))
    for conflict in facts.dose_conflicts:
        found.append(
            Decision(
                "grading",
                f"conflicting doses: {conflict.split(':', 1)[0]}: clinician to decide",
                f"{conflict}: the record gives the same drug two ways; the plan does not pick "
                "one: each entry is graded as given (the higher level stands, cautious) until "
                "the record is corrected",
                CONFLICT,
            )
        )
    for c in facts.confounded_igg:
        course = c.course
        found.append(
            Decision(
                "reassessment",
                f"IgG of {c.lab.date} confounded by an immunomodulatory IVIG course: not used",
                f"IgG {c.lab.igg_g_l:g} g/L drawn after the IV course of {course.g_per_kg:g} g/kg "
                f"({course.start} to {course.end}); IgG's half-life is about 3-4 weeks, so until "
                f"{c.until} the level measures the infused immunoglobulin, not the child's own: "
                "not used for the IG indication, antibody deficiency or recovery; repeat it from "
                f"{c.until}",
                ctx.cite("immunoglobulin.immunomodulatory_washout_months"),
            )
        )
    if facts.stale:
        months = ctx.protocol.reassessment.result_valid_months
        found.append(
            Decision(
                "reassessment",
                f"stale results: {', '.join(facts.stale)}",
                f"older than {months} months: not used to grade, to decide on IG or to lift a "
                "restriction; repeated at the first reassessment",
                ctx.cite("reassessment.result_valid_months"),
            )
        )
    return found


def _group_name(ctx: PlanContext) -> str:
    group = ctx.facts.diagnosis_group
    return f"group {group}" if group is not None else "no group recognised"


def methotrexate_daily(ctx: PlanContext) -> list[Decision]:
    """Methotrexate graded by its weekly ceiling but written as a daily dose (§2.1): the
    grading reads the daily figure as given every day (x 7, cautious) and the clinician is
    asked to confirm the weekly dose (a daily figure is most often the weekly dose in the
    wrong field; a daily methotrexate is a known fatal error)."""
    facts, protocol = ctx.facts, ctx.protocol
    g = protocol.grading
    found: list[Decision] = []
    for t in facts.active:
        if (
            t.dose_mg_per_kg_week is not None
            or (t.dose_mg_per_kg_day is None and t.dose_mg_day is None)
            or not drug_is(t, g.methotrexate_names, protocol)
            or name_matches(t.drug, g.single_day_methotrexate_words)
        ):
            continue  # a high-dose IV or intrathecal course is a day's dose, not a weekly one
        given = (
            f"{t.dose_mg_per_kg_day:g} mg/kg/day"
            if t.dose_mg_per_kg_day is not None
            else f"{t.dose_mg_day:g} mg/day"
        )
        if facts.is_chemotherapy(t) or t.drug_class != "antimetabolite":
            # Graded as chemotherapy (or by its class) whatever the dose: the prescribing
            # check stands all the same (ALL maintenance is oral methotrexate once a week).
            found.append(
                Decision(
                    "grading",
                    f"methotrexate written as a daily dose: {t.drug} {given}: confirm the "
                    "weekly dose",
                    f"oral methotrexate (in ALL maintenance too) is given once a week, and a "
                    f"daily methotrexate is a known fatal prescribing error; the record gives "
                    f"{given}: confirm the schedule and record the weekly dose "
                    "(dose_mg_per_kg_week; an entry naming methotrexate with another drug "
                    "gives each drug's dose in its own entry); the grading does not depend on "
                    "it (chemotherapy, or the entry's class)",
                    ctx.cite("grading.methotrexate_names"),
                )
            )
            continue
        per_week, conversion = dose_per_kg_week(t, facts.weight_kg)
        found.append(
            Decision(
                "grading",
                f"methotrexate written as a daily dose: {t.drug} {given}: confirm the weekly dose",
                f"methotrexate is given once a week; the record gives {given}: graded as "
                f"{given} every day ({conversion}; {per_week or 0:.2f} mg/kg/week against the "
                f"{g.methotrexate_low_max_mg_per_kg_week:g} mg/kg/week low-level ceiling, the "
                "cautious reading); if the figure is the weekly dose, correct the record "
                "(dose_mg_per_kg_week) and the grading follows",
                ctx.cite(
                    "grading.methotrexate_low_max_mg_per_kg_week", "grading.methotrexate_names"
                ),
            )
        )
    return found
