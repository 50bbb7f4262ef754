"""Reinforcement under immunosuppression for immune-mediated and other diseases (§4).

The section is docs/clinical-reference.md §4: pneumococcal conjugate then PPSV23,
the inactivated boosters, and completing the live series where allowed.
"""

from __future__ import annotations

from datetime import timedelta

from sidflows.calendar import add_years
from sidflows.rules.bcells import cd19_recovered
from sidflows.rules.drugs import is_anti_cd20
from sidflows.rules.immunoglobulin import recovery_limit
from sidflows.rules.model import Decision, VaccineDose
from sidflows.rules.vaccination.blocks import inactivated_blocks
from sidflows.rules.vaccination.cd4_live import moderate_cd4_note
from sidflows.rules.vaccination.chemotherapy import complete_the_series
from sidflows.rules.vaccination.pneumococcal import pcv_needed
from sidflows.rules.vaccination.risk import ACIP_RISK
from sidflows.rules.vaccination.series import Schedule, Series, given_doses, schedule_series
from sidflows.rules.vaccination.sources import CD20_SRC, IDSA


def reinforce_immune_mediated(schedule: Schedule) -> None:
    """Neither HSCT nor chemotherapy: reinforce the routine schedule of a child with a risk
    condition; complete the live series of every child (the routine catch-up of the
    inactivated vaccines is :mod:`.routine`, §4.16)."""
    if schedule.risk:
        _reinforce(schedule)
    else:
        ctx = schedule.ctx
        schedule.plan.decisions.append(
            Decision(
                "vaccination",
                "no reinforcement beyond the routine schedule: no PPSV23",
                "no immunocompromising or other risk condition (no immunosuppressive "
                "treatment, transplant, chemotherapy, antibody or complement deficiency; "
                "immunomodulatory IVIG is not one, §3.1): PPSV23 and the risk-table conjugate "
                "doses are for children 2-18 years with a risk condition only; the missing "
                "routine doses are planned as the routine catch-up (§4.16)",
                f"{ACIP_RISK}; {ctx.cite('vaccination.routine_catch_up')}",
            )
        )
    _complete_live(schedule)


def _reinforce(schedule: Schedule) -> None:
    """The pneumococcal reinforcement and the protocol's inactivated list (§4.3, §4.4)."""
    ctx = schedule.ctx
    referral, protocol, start = ctx.referral, ctx.protocol, ctx.start
    v = protocol.vaccination
    base = tuple(inactivated_blocks(ctx))
    # The unit's rule owns the pneumococcal group (the routine catch-up leaves it, §4.16).
    schedule.handled.update(("PCV", "PPSV23"))
    # §4.3/§4.4: the unit's PCV-then-PPSV23 schedule (IDSA 2013) stands over CDSi's
    # pneumococcal dates: beyond the childhood series CDSi has only its risk or 50+ series.
    rule = "pneumococcal reinforcement under immunosuppression (IDSA 2013, §4.3, §4.4)"
    pcv_given = given_doses(schedule, "PCV", None, protocol_dates=True)
    pcv_doses: list[VaccineDose] = []
    # §4.13: complete an incomplete conjugate series first (ACIP), then PPSV23.
    needed, why = pcv_needed(referral.patient.birth_date, start, list(pcv_given))
    infant_series = needed is None  # under 12 months: the next dose, then CDSi's forecast
    if infant_series:
        needed = 1
    if "PCV" in v.immune_mediated_inactivated and needed:
        pcv_doses = schedule_series(
            schedule,
            Series(
                "PCV",
                len(pcv_given) + needed,
                start,
                base,
                f"pneumococcal conjugate first, then PPSV23 ({'; '.join(schedule.risk)}): "
                f"{why}; vaccinate before anti-CD20 or >= 6 months after it",
                ctx.cite("vaccination.pcv_catch_up_interval_weeks"),
                tuple(pcv_given),
                gap_months=0,
                protocol_rule=rule,
                protocol_dates=True,
            ),
            min_gap=timedelta(weeks=v.pcv_catch_up_interval_weeks),
        )
        if infant_series:
            more = complete_the_series(schedule, "PCV", pcv_doses, base)
            pcv_doses = [*pcv_doses, *more]
            needed += len(more)
    for code in v.immune_mediated_inactivated:
        if code != "PCV":
            schedule_series(
                schedule,
                Series(
                    code,
                    1,
                    start,
                    base,
                    "reinforcement under immunosuppression",
                    IDSA,
                    given_doses(schedule, code, None),
                ),
            )
    pcv_dates = [*pcv_given, *(d.due for d in pcv_doses)]
    ppsv = given_doses(schedule, "PPSV23", None, protocol_dates=True)
    if pcv_dates and not ppsv and (not needed or len(pcv_doses) == needed):
        schedule_series(
            schedule,
            Series(
                "PPSV23",
                1,
                max(start, pcv_dates[-1] + timedelta(weeks=v.ppsv23_after_pcv_weeks)),
                base,
                f"PPSV23 >= {v.ppsv23_after_pcv_weeks} weeks after the conjugate"
                + ("" if needed else f" ({why})"),
                ctx.cite("vaccination.ppsv23_after_pcv_weeks"),
                protocol_rule=rule,
                protocol_dates=True,
            ),
        )
    elif len(ppsv) == 1 and referral.diagnosis.category == "immune_mediated":
        schedule_series(
            schedule,
            Series(
                "PPSV23",
                1,
                max(start, add_years(ppsv[0], v.ppsv23_repeat_years)),
                base,
                f"second PPSV23 {v.ppsv23_repeat_years} years after the first in chronic "
                "inflammatory disease",
                ctx.cite("vaccination.ppsv23_repeat_years"),
                number_from=2,
                protocol_rule=rule,
                protocol_dates=True,
            ),
        )


def _complete_live(schedule: Schedule) -> None:
    """MMR and varicella: complete the series where nothing holds them back (§4.3)."""
    ctx = schedule.ctx
    v, start = ctx.protocol.vaccination, ctx.start
    marker_note = moderate_cd4_note(ctx)
    for code in v.immune_mediated_live:
        given = given_doses(schedule, code, None)
        if len(given) >= v.live_series_doses:
            continue
        schedule_series(
            schedule,
            Series(
                code,
                v.live_series_doses - len(given),
                start,
                schedule.live_blocks,
                f"complete the {code} series ({len(given)} of {v.live_series_doses} documented); "
                "contraindicated under high- and low-level immunosuppression (varicella may be "
                f"considered under long-term low-level){marker_note}",
                ctx.cite("vaccination.live_series_doses", "vaccination.immune_mediated_live")
                + (f"; {IDSA}" if marker_note else ""),
                number_from=len(given) + 1,
            ),
        )


WINDOW = ("vaccination.after_anti_cd20_months", "vaccination.before_next_anti_cd20_days")


def anti_cd20_regimen(schedule: Schedule) -> None:
    """An anti-CD20 regimen with no end date (ocrelizumab every 6 months): the inactivated
    vaccines wait for the window between doses (§4.3), which the record cannot give without
    the dates of the doses. Said once, with the B cells now and what lets the plan
    schedule them."""
    ctx = schedule.ctx
    protocol, facts, v = ctx.protocol, ctx.facts, ctx.protocol.vaccination
    regimens = [
        t
        for t in ctx.referral.treatments
        if t.end is None and t.start <= ctx.today and is_anti_cd20(t, protocol)
    ]
    if not regimens:
        return
    named = "; ".join(f"{t.drug} (since {t.start}, no end date)" for t in regimens)
    judged = cd19_recovered(facts.latest_cd19, facts.age_months, protocol)
    shown = recovery_limit(facts, protocol)[0]
    if judged is None:
        b_cells = f"{shown}: whether B cells are present is not known (a CD19 tells)"
    elif judged[0]:
        b_cells = (
            f"{shown}: B cells present, so a response is likely now: the clinician may give "
            f"them now where the next dose is >= {v.before_next_anti_cd20_days} days away"
        )
    else:
        b_cells = f"{shown}: B cells depleted, no response expected until they recover"
    schedule.plan.decisions.append(
        Decision(
            "vaccination",
            "inactivated vaccines on an anti-CD20 regimen with no end date: record its doses",
            f"{named}: the inactivated vaccines wait for the window >= "
            f"{v.after_anti_cd20_months} months after the last dose and >= "
            f"{v.before_next_anti_cd20_days} days before the next, which the record cannot "
            f"give; {b_cells}. Record each dose (a treatment entry with its dates) and the "
            "next planned one, or an end date, and the plan schedules them where such a "
            "window exists (with a dose every 6 months there is none: vaccinate >= "
            f"{v.before_next_anti_cd20_days} days before a dose, or delay the dose, a "
            "clinician decision; a treatment change re-plans); influenza: "
            + (
                "on schedule (§4.5)"
                if v.influenza_on_anti_cd20 == "on_schedule"
                else "not during the anti-CD20 (the protocol's choice, §4.5)"
            ),
            f"{ctx.cite(*WINDOW)}; {CD20_SRC}",
        )
    )
