"""Revaccination after haematopoietic stem cell transplant (docs/clinical-reference.md §4)."""

from __future__ import annotations

from datetime import timedelta

from sidflows.calendar import add_months
from sidflows.rules.model import Decision
from sidflows.rules.vaccination.blocks import inactivated_blocks
from sidflows.rules.vaccination.series import (
    Schedule,
    Series,
    given_doses,
    post_hsct_dtap,
    schedule_series,
    tetanus_code,
)


def revaccinate_after_hsct(schedule: Schedule) -> None:
    """Conjugate pneumococcal, PPSV23 or a 4th conjugate, inactivated and live series."""
    ctx, plan = schedule.ctx, schedule.plan
    referral, protocol, start = ctx.referral, ctx.protocol, ctx.start
    assert referral.hsct is not None
    h = protocol.vaccination.hsct
    hsct = referral.hsct
    titre = protocol.reassessment.titre_panel_words
    base = tuple(inactivated_blocks(ctx))
    # §4.6: the schedule counted from the transplant stands over CDSi's (which knows
    # neither the restart of every series nor the unit's month between doses).
    rule = f"revaccination after HSCT on {hsct.date} on the protocol's schedule (§4.6)"
    pcv = Series(
        "PCV",
        h.pcv_doses,
        max(start, add_months(hsct.date, h.pcv_start_months)),
        base,
        f"revaccination after HSCT: pneumococcal conjugate from {h.pcv_start_months} months, "
        f"{h.pcv_doses} doses {h.pcv_dose_interval_months} month(s) apart",
        ctx.cite(
            "vaccination.hsct.pcv_start_months",
            "vaccination.hsct.pcv_doses",
            "vaccination.hsct.pcv_dose_interval_months",
        ),
        given_doses(schedule, "PCV", hsct.date, protocol_dates=True),
        h.pcv_dose_interval_months,
        protocol_rule=rule,
        protocol_dates=True,
    )
    pcv_doses = schedule_series(schedule, pcv)
    pcv_done = list(pcv.given) + [d.due for d in pcv_doses]
    if len(pcv_done) >= h.pcv_doses:
        if hsct.active_gvhd:
            fourth = Series(
                "PCV",
                1,
                max(start, add_months(pcv_done[0], h.pcv4_after_first_months)),
                base,
                "active GVHD: a 4th conjugate dose instead of PPSV23 (EBMT 0-1-2-12 months)",
                ctx.cite("vaccination.hsct.pcv4_after_first_months"),
                given_doses(schedule, "PCV", hsct.date, protocol_dates=True)[h.pcv_doses :],
                number_from=h.pcv_doses + 1,
                protocol_rule=rule,
                protocol_dates=True,
            )
            schedule_series(schedule, fourth)
        else:
            earliest = max(
                start,
                add_months(hsct.date, h.ppsv23_from_months),
                pcv_done[-1] + timedelta(weeks=protocol.vaccination.ppsv23_after_pcv_weeks),
            )
            schedule_series(
                schedule,
                Series(
                    "PPSV23",
                    1,
                    earliest,
                    base,
                    f"PPSV23 at >= {h.ppsv23_from_months} months after HSCT, no chronic GVHD, "
                    f">= {protocol.vaccination.ppsv23_after_pcv_weeks} weeks after the conjugate",
                    ctx.cite(
                        "vaccination.hsct.ppsv23_from_months", "vaccination.ppsv23_after_pcv_weeks"
                    ),
                    given_doses(schedule, "PPSV23", hsct.date, protocol_dates=True),
                    titres=titre.get("PCV"),
                    protocol_rule=rule,
                    protocol_dates=True,
                ),
            )
    for code in h.inactivated:
        tetanus = code in ("DTaP", "Tdap")
        dtap = tetanus and post_hsct_dtap(ctx)
        vaccine = ("DTaP" if dtap else tetanus_code(ctx)) if tetanus else code
        why = f"revaccination after HSCT: from {h.inactivated_start_months} months, " + (
            f"{h.inactivated_doses} doses"
        )
        if dtap:
            why += (
                " of DTaP at every age (full-dose diphtheria and pertussis: IDSA 2013 table 4's "
                "first option from 7 years, ECIL-7/ESCMID; Tdap then Td is the configured "
                "alternative)"
            )
        schedule_series(
            schedule,
            Series(
                vaccine,
                h.inactivated_doses,
                max(start, add_months(hsct.date, h.inactivated_start_months)),
                base,
                why,
                ctx.cite(
                    "vaccination.hsct.inactivated_start_months",
                    "vaccination.hsct.inactivated_doses",
                    *(("vaccination.hsct.tetanus_series",) if tetanus else ()),
                ),
                given_doses(schedule, vaccine, hsct.date, protocol_dates=True),
                h.inactivated_dose_interval_months,
                titres=titre.get(vaccine),
                protocol_rule=rule,
                protocol_dates=True,
            ),
        )
    for code in h.live:
        schedule_series(
            schedule,
            Series(
                code,
                h.live_doses,
                start,
                schedule.live_blocks,
                f"after HSCT: {h.live_doses} doses from {h.live_from_months} months, no GVHD, "
                + (
                    f">= {h.live_months_off_immunosuppression} months off all systemic "
                    "immunosuppression (the 2-1-8 rule), "
                    if h.live_months_off_immunosuppression
                    else "off immunosuppression, "
                )
                + "8-11 months after the last IVIG",
                ctx.cite(
                    "vaccination.hsct.live_doses",
                    "vaccination.hsct.live_from_months",
                    "vaccination.hsct.live_months_off_immunosuppression",
                ),
                given_doses(schedule, code, hsct.date, protocol_dates=True),
                protocol_rule=rule,
                protocol_dates=True,
            ),
        )
    plan.decisions.append(
        Decision(
            "vaccination",
            "hepatitis B: check anti-HBs after the series",
            f"anti-HBs < {protocol.vaccination.anti_hbs_protective_miu_ml:g} mIU/mL after the "
            "series: repeat the series; titres 6-8 weeks after the last dose of a series",
            ctx.cite("vaccination.anti_hbs_protective_miu_ml"),
        )
    )
