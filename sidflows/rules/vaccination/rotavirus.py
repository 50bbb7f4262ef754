"""Rotavirus and BCG, the live vaccines of infancy (docs/clinical-reference.md §4.17).

Primary care gives them on the routine schedule; this unit does not, but every plan of an
infant in the rotavirus window says whether they may be given. Rotavirus has a closing
window (ACIP): dose 1 from 6 weeks to 14 weeks 6 days, the last dose by 8 months 0 days,
so a deferral past it means the series is not given. SCID is a contraindication (ACIP,
MMWR 2010;59:687), as is high-level immunosuppression; altered immunocompetence is a
precaution (a clinician decision). After a biologic in utero no live vaccine is given
before 6 months, except rotavirus unless the biologic was anti-CD20 (Australian
Immunisation Handbook 2025; the infliximab label defers every live vaccine 6 months).
BCG is a statement only: contraindicated while a live-vaccine block of immunosuppression
holds. Rotavirus and BCG are not neutralised by immunoglobulin: the IG interval and the
MMR age do not hold them (ACIP antibody-live vaccine table).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sidflows.calendar import add_months
from sidflows.codes import load_codes, words_match
from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import ANTI_CD20
from sidflows.rules.model import Block, Decision, Grading
from sidflows.rules.vaccination.blocks import first_free_day, holding
from sidflows.rules.vaccination.cvx import series_of
from sidflows.rules.vaccination.series import Schedule
from sidflows.rules.vaccination.sources import ACIP_ABS, IDSA_T6

ACIP_ROTA = "ACIP rotavirus (Cortese, MMWR Recomm Rep 2009;58(RR-2)): age limits"
ACIP_SCID = "CDC/ACIP: SCID a contraindication to rotavirus vaccine (MMWR 2010;59:687)"
AIH_IN_UTERO = (
    "Australian Immunisation Handbook 2025 (infants exposed to immunosuppressive therapy in "
    "utero); infliximab label (live vaccines deferred >= 6 months after birth)"
)
INFANT_MONTHS = 12
"""An infant: under 1 year of age (the word's definition, not a clinical parameter)."""
LIVE_KINDS = "rotavirus, BCG, MMR, varicella, LAIV, yellow fever, oral polio or typhoid"


@dataclass(frozen=True, slots=True)
class InUtero:
    """A biologic named as taken by the mother in pregnancy (the referral's words)."""

    text: str
    anti_cd20: bool
    recognised: bool


def plan_rotavirus(schedule: Schedule, grading: Grading) -> None:
    """A rotavirus decision for an infant inside the rotavirus window, a BCG statement for
    an infant, and "no live vaccine of any kind" where an infant with no recorded cause is
    graded high on a CD4 marker (SCID-like, §4.17)."""
    ctx, plan = schedule.ctx, schedule.plan
    birth, today = ctx.referral.patient.birth_date, ctx.today
    infant = add_months(birth, INFANT_MONTHS) > today
    if not infant:
        return
    in_utero = in_utero_exposure(ctx)
    cd4_marker = [m for m in grading.markers if "CD4" in m]
    # No recorded cause (transient None, §2.14): a primary immunodeficiency until proven not.
    if grading.level == "high" and cd4_marker and grading.transient is None:
        plan.decisions.append(
            Decision(
                "vaccination",
                f"no live vaccine of any kind ({LIVE_KINDS})",
                f"an infant graded high on {'; '.join(cd4_marker)}: a severe combined "
                "immunodeficiency-like presentation until proven otherwise (urgent "
                "immunology work-up; primary care must not give rotavirus or BCG)",
                f"{ACIP_SCID}; {IDSA_T6}; docs/clinical-reference.md §4.17",
            )
        )
    _rotavirus(schedule, grading, in_utero)
    _bcg(schedule, grading, in_utero)


def rotavirus_window(ctx: PlanContext) -> tuple[date, date, date]:
    """(dose 1 from, dose 1 by, last dose by), ACIP (§4.17)."""
    v, birth = ctx.protocol.vaccination, ctx.referral.patient.birth_date
    return (
        birth + timedelta(weeks=v.rotavirus_first_dose_min_weeks),
        birth + timedelta(days=v.rotavirus_first_dose_max_days),
        add_months(birth, v.rotavirus_last_dose_max_months),
    )


def in_utero_exposure(ctx: PlanContext) -> InUtero | None:
    """A biologic taken in pregnancy, as the diagnosis label says it (curated words,
    ``vaccination.in_utero_exposure_words``, as the label's other recognitions are); the
    drug read by its curated names. The referral's free-text reason is not read (§5.11)."""
    v = ctx.protocol.vaccination
    text = ctx.referral.diagnosis.label or ""
    if not text or words_match(text, v.in_utero_exposure_words) is None:
        return None
    names = load_codes().drug_names
    classes = {cls for cls, words in names.items() if words_match(text, words) is not None}
    return InUtero(text, ANTI_CD20 in classes, bool(classes))


def _rotavirus(schedule: Schedule, grading: Grading, in_utero: InUtero | None) -> None:
    ctx, plan = schedule.ctx, schedule.plan
    v, today, birth = ctx.protocol.vaccination, ctx.today, ctx.referral.patient.birth_date
    first_from, first_by, last_by = rotavirus_window(ctx)
    if today > last_by:
        return  # outside the window: no rotavirus dose at any rate
    schedule.handled.add("ROTA")
    given = sorted(x.date for x in ctx.referral.vaccinations if "rotavirus" in series_of(x.vaccine))
    window = (
        f"ACIP: dose 1 from {first_from} ({v.rotavirus_first_dose_min_weeks} weeks) to "
        f"{first_by} (14 weeks 6 days), the last dose by {last_by} (8 months 0 days); "
        "a series deferred past these dates is not given"
    )
    source = f"{ACIP_ROTA}; " + ctx.cite(
        "vaccination.rotavirus_first_dose_min_weeks",
        "vaccination.rotavirus_first_dose_max_days",
        "vaccination.rotavirus_last_dose_max_months",
    )
    had = f"{len(given)} dose(s) recorded" + (f" (last {given[-1]})" if given else "")
    if not given and today > first_by:
        plan.decisions.append(
            Decision(
                "vaccination",
                f"rotavirus: not given (dose 1 not started after {first_by})",
                f"no rotavirus dose recorded; {window}",
                source,
            )
        )
        return
    high = grading.level == "high"
    cd20 = in_utero is not None and in_utero.anti_cd20
    if high or cd20:
        live_months = v.in_utero_biologic_live_months
        # A decision, not a deferral: the deferred list dates when a vaccine may be given,
        # and a rotavirus series deferred past its window is never given.
        held = list(grading.reasons) if high else []
        if in_utero is not None and in_utero.anti_cd20:
            held.append(
                f"exposed in utero to an anti-CD20 antibody ({in_utero.text}): no rotavirus "
                f"(nor any live vaccine) before {add_months(birth, live_months)}"
            )
        sources = [ACIP_SCID, IDSA_T6, source] + ([AIH_IN_UTERO] if cd20 else [])
        held_by = immunosuppression_blocks(schedule)
        free = first_free_day(held_by, today) if held_by and not cd20 else None
        # Dose 1 is not started after its own limit; later doses by the last dose's.
        limit = last_by if given else first_by
        if free is not None and free <= limit:
            fit = 1 + (last_by - free).days // 28
            # A dated cause (a steroid course) whose wait ends inside the window: the
            # remaining doses are possible between its end and the last permitted day.
            plan.decisions.append(
                Decision(
                    "vaccination",
                    f"rotavirus: contraindicated until {free}; then possible until {limit}",
                    f"{'; '.join(held)}; SCID and high-level immunosuppression contraindicate "
                    f"rotavirus; the wait ends on {free} ("
                    + "; ".join(f"{b.reason}" for b in holding(held_by, today, free))
                    + f"), before the last permitted day: the "
                    f"{'remaining doses' if given else 'series'} may be given from {free} "
                    f"(dose 1 by {first_by}, the last by {last_by}; primary care; the "
                    f"product's own age limits permitting): {fit} dose(s) at ACIP's 4-week "
                    "interval fit by then (RV1 is 2 doses in all, RV5 3; a series that does "
                    f"not fit stays incomplete); {had}; {window}",
                    "; ".join(dict.fromkeys([*sources, *(b.source for b in held_by)])),
                )
            )
            return
        plan.decisions.append(
            Decision(
                "vaccination",
                "rotavirus: contraindicated",
                f"{'; '.join(held)}; SCID and high-level immunosuppression "
                f"contraindicate rotavirus; {had}; {window}",
                "; ".join(sources),
            )
        )
        return
    # A dated live-vaccine wait (after chemotherapy, anti-CD20, a transplant) that outlasts
    # the window (6 months after chemotherapy in a 4-month-old): the series cannot be
    # completed. An ongoing low-level treatment stays ACIP's precaution, below.
    blocking = [
        b for b in immunosuppression_blocks(schedule) if b.until is not None and b.until > last_by
    ]
    if blocking:
        plan.decisions.append(
            Decision(
                "vaccination",
                "rotavirus: not to be given (a live-vaccine block outlasts the window)",
                "; ".join(f"{b.reason} (until {b.until})" for b in blocking)
                + f": past the last permitted dose day {last_by}, so the series is not "
                f"completed; {had}; {window}",
                "; ".join(dict.fromkeys([*(b.source for b in blocking), source])),
            )
        )
        return
    if grading.level == "low" or (in_utero is not None and not in_utero.recognised):
        why = list(grading.reasons) if grading.level == "low" else []
        if in_utero is not None and not in_utero.recognised:
            why.append(
                f"a treatment in pregnancy is named but not recognised ({in_utero.text}): "
                "anti-CD20 exposure contraindicates rotavirus, other biologics do not"
            )
        plan.decisions.append(
            Decision(
                "vaccination",
                "rotavirus: precaution, clinician decision (altered immunocompetence)",
                f"{'; '.join(why)}; ACIP: weigh the risks and benefits in known or suspected "
                f"altered immunocompetence, with an immunologist; {had}; {window}",
                f"{ACIP_ROTA}; {ACIP_SCID}",
            )
        )
        return
    if in_utero is not None:
        plan.decisions.append(
            Decision(
                "vaccination",
                "rotavirus: may be given on the routine schedule (primary care)",
                f"exposed in utero to a biologic other than anti-CD20 ({in_utero.text}): oral "
                "rotavirus vaccine is safe (the infliximab label's 6-month deferral would "
                f"mean no rotavirus at all); {had}; {window}",
                f"{AIH_IN_UTERO}; {source}",
            )
        )
        return
    plan.decisions.append(
        Decision(
            "vaccination",
            "rotavirus: on the routine schedule (primary care; not given by this unit)",
            f"no immunosuppression graded; immunoglobulin does not interfere with rotavirus "
            f"vaccine; {had}; {window}",
            f"{source}; {ACIP_ABS}",
        )
    )


def immunosuppression_blocks(schedule: Schedule) -> list[Block]:
    """The live-vaccine blocks of immunosuppression holding today: not the IG interval nor
    the MMR age, which do not hold rotavirus or BCG (ACIP antibody-live vaccine table)."""
    today = schedule.ctx.today
    return [
        b
        for b in schedule.live_blocks
        if b.source != ACIP_ABS
        and not b.reason.startswith("MMR and varicella from")
        and (b.until is None or b.until > today)
        and (b.start is None or b.start <= today)
    ]


def _bcg(schedule: Schedule, grading: Grading, in_utero: InUtero | None) -> None:
    """BCG where the unit's setting gives it: contraindicated while a live-vaccine block of
    immunosuppression holds (not the IG interval, nor the MMR age), §4.17."""
    ctx, plan = schedule.ctx, schedule.plan
    v, today = ctx.protocol.vaccination, ctx.today
    holding = immunosuppression_blocks(schedule)
    reasons = [b.reason for b in holding]
    if grading.level == "high" and not holding:
        reasons.extend(grading.reasons)
    sources = [IDSA_T6]
    if in_utero is not None:
        until = add_months(ctx.referral.patient.birth_date, v.in_utero_biologic_live_months)
        if until > today:
            reasons.append(
                f"exposed in utero to a biologic ({in_utero.text}): no BCG before {until}"
            )
            sources.append(AIH_IN_UTERO)
            sources.append(ctx.cite("vaccination.in_utero_biologic_live_months"))
    if reasons:
        plan.decisions.append(
            Decision(
                "vaccination",
                "BCG (where the setting gives it): contraindicated",
                "; ".join(dict.fromkeys(reasons)),
                "; ".join(dict.fromkeys(sources)),
            )
        )
    else:
        plan.decisions.append(
            Decision(
                "vaccination",
                "BCG (where the setting gives it): no live-vaccine contraindication in this plan",
                "no immunosuppression graded and no live-vaccine block of immunosuppression "
                "holds (immunoglobulin does not interfere with BCG)",
                f"{IDSA_T6}; {ACIP_ABS}",
            )
        )
