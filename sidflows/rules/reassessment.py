"""Reassessment of transient deficiencies, recovery support and plan reviews.

The section is docs/clinical-reference.md §6. A lab series or review whose
cadence is a protocol parameter cites that parameter's source.
"""

from __future__ import annotations

from datetime import date, timedelta

from sidflows.calendar import add_months
from sidflows.protocol import Protocol
from sidflows.rules.bcells import cd19_recovered
from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import counts_as_immunosuppressive, is_anti_cd20
from sidflows.rules.facts import Facts
from sidflows.rules.grading import (
    ESID_AGAMMA,
    absent_b_cells_without_cause,
    cd4_band,
    cd4_findings,
)
from sidflows.rules.immunoglobulin import IgDecision, b_cells_recovered, recovery_limit
from sidflows.rules.model import Decision, Grading, PlanReviewItem, ReassessmentItem
from sidflows.rules.titres import AFTER_DOSES, AFTER_IG, titres_after_doses, titres_after_ig

UNIT = "unit policy (no published cadence)"
NO_CRITERIA = (
    "docs/clinical-reference.md §6: no published recovery criteria; clinician decision at "
    "plan review"
)

_MERGE_DAYS = 14
# Children under 2 years raise no antibody to polysaccharide antigens (the reason PPSV23
# starts at 2, ACIP): no polysaccharide response is measured before then.
POLYSACCHARIDE_FROM_MONTHS = 24  # labs closer than two weeks are drawn together (one needle)


def _wanted(
    ctx: PlanContext, ig: IgDecision, grading: Grading, titres: list[tuple[date, str]]
) -> list[tuple[date, tuple[str, ...], str, str]]:
    """(date, panel, reason, source) of every lab check the horizon needs."""
    referral, facts, protocol = ctx.referral, ctx.facts, ctx.protocol
    start, horizon_end = ctx.start, ctx.horizon_end
    r = protocol.reassessment
    wanted: list[tuple[date, tuple[str, ...], str, str]] = []
    last_lab = max((lab.date for lab in referral.labs), default=None)

    def series(
        anchor: date, months: list[int], panel: tuple[str, ...], why: str, source: str
    ) -> None:
        for m in months:
            when = add_months(anchor, m)
            if when > horizon_end:
                break
            if when < start:
                # Overdue if no lab was drawn since: catch up at the first possible day.
                if last_lab is None or last_lab < when:
                    wanted.append((start, panel, f"{why} (overdue: due {when})", source))
                continue
            wanted.append((when, panel, why, source))

    span = range(1, 13 * 4)
    b_cells_back = b_cells_recovered(facts, protocol) and (
        facts.latest_cd19 is not None
        and facts.anti_cd20_last is not None
        and facts.latest_cd19.date > facts.anti_cd20_last
    )
    if facts.anti_cd20_last is not None and not facts.anti_cd20_ongoing and not b_cells_back:
        every = r.after_anti_cd20_every_months
        # The series stands in for the default one (below): where another cause, a
        # transplant or a CD4 result grades the child, the default panel's measures stay.
        others = [
            t
            for t in facts.active
            if counts_as_immunosuppressive(t, protocol) and not is_anti_cd20(t, protocol)
        ]
        wider = bool(others) or referral.hsct is not None or bool(cd4_findings(facts, protocol))
        panel = (
            tuple(dict.fromkeys((*r.after_anti_cd20_panel, *r.default_panel)))
            if wider
            else r.after_anti_cd20_panel
        )
        series(
            facts.anti_cd20_last,
            [every * k for k in span],
            panel,
            f"every {every} months from the last anti-CD20 dose until B-cell recovery",
            ctx.cite("reassessment.after_anti_cd20_every_months"),
        )
    if facts.chemotherapy_end is not None:
        series(
            facts.chemotherapy_end,
            list(r.after_chemotherapy_months),
            r.after_chemotherapy_panel,
            f"{'/'.join(str(m) for m in r.after_chemotherapy_months)} months after the end "
            "of chemotherapy",
            ctx.cite("reassessment.after_chemotherapy_months"),
        )
    if not wanted and (grading.transient or grading.level != "none" or ig.gives_ig):
        every = r.default_every_months
        series(
            start,
            [0] + [every * k for k in span],
            r.default_panel,
            f"every {every} months while the deficiency lasts",
            ctx.cite("reassessment.default_every_months"),
        )
    elif not wanted and grading.transient is None:
        # No immunosuppressive cause found (§2.14): one check, not a follow-up series.
        every = r.default_every_months
        series(
            start,
            [every],
            r.default_panel,
            f"once in {every} months to confirm whether there is a deficiency (no "
            "immunosuppressive cause found)",
            ctx.cite("reassessment.default_every_months"),
        )
    if ig.status == "trial_off":
        months = protocol.immunoglobulin.trial_off_recheck_months
        when = add_months(ig.sessions_until or start, months)
        if when <= horizon_end:
            wanted.append(
                (
                    when,
                    ("IgG", "IgA", "IgM", "CD19"),
                    f"IgG recheck {months} months into the trial off IG",
                    ctx.cite("immunoglobulin.trial_off_recheck_months"),
                )
            )
    if facts.stale_panel:
        wanted.append(
            (
                start,
                facts.stale_panel,
                f"repeat stale results ({', '.join(facts.stale)}: older than "
                f"{protocol.reassessment.result_valid_months} months)",
                ctx.cite("reassessment.result_valid_months"),
            )
        )
    for c in facts.confounded_igg:
        wanted.append(
            (
                max(c.until, start),
                ("IgG", "IgA", "IgM"),
                "IgG repeated after the immunomodulatory IVIG washout",
                ctx.cite("immunoglobulin.immunomodulatory_washout_months"),
            )
        )
    # A confounded IgG is repeated after its washout (above), not as a baseline now (§3.9).
    if ig.status == "no_data" and not facts.confounded_igg:
        wanted.append(
            (
                start,
                ("IgG", "IgA", "IgM", "CD4", "CD19"),
                "no IgG result: baseline before deciding on replacement",
                UNIT,
            )
        )
    if ig.asks is not None:
        panel, why = ig.asks
        if facts.age_months < POLYSACCHARIDE_FROM_MONTHS:  # no polysaccharide response yet
            panel = tuple(p for p in panel if "pneumococcal" not in p)
        wanted.append(
            (
                start,
                panel,
                f"{why} (the response is the rise after a pneumococcal polysaccharide "
                f"vaccine dose, below {protocol.immunoglobulin.antibody_failure_fold_rise:g}-"
                "fold a failure: titres again after that dose)",
                ctx.cite("immunoglobulin.antibody_failure_fold_rise"),
            )
        )
    weeks = protocol.vaccination.hsct.titres_after_series_weeks
    for last_dose, panel_word in titres:
        # After the horizon too: plan_reassessments says when they are due (not booked).
        wanted.append(
            (
                last_dose + timedelta(weeks=weeks),
                (panel_word,),
                f"titres {weeks} weeks after the last dose of the series",
                ctx.cite("vaccination.hsct.titres_after_series_weeks"),
            )
        )
    return wanted


def plan_reassessments(
    ctx: PlanContext,
    *,
    ig: IgDecision,
    grading: Grading,
    titres: list[tuple[date, str]],
    dose_days: tuple[date, ...] = (),
) -> tuple[list[ReassessmentItem], list[Decision]]:
    """Lab checks on working days, merged when closer than two weeks. ``dose_days``: the
    days of the plan's vaccine doses (titres are not drawn in the weeks after them)."""
    calendar, start, horizon_end = ctx.calendar, ctx.start, ctx.horizon_end
    wanted = titres_after_doses(ctx, _wanted(ctx, ig, grading, titres), dose_days)
    wanted, titre_notes = titres_after_ig(ctx, ig, wanted)
    wanted.sort(key=lambda w: w[0])
    items: list[ReassessmentItem] = []
    decisions: list[Decision] = list(titre_notes)
    seen_reasons: dict[str, str] = {}
    for when, panel, reason, source in wanted:
        due = calendar.next_working_day(max(when, start))
        titre = (
            reason.endswith(AFTER_IG)
            or reason.startswith("titres ")
            or ("titres " in reason and AFTER_DOSES in reason)
        )
        if due > horizon_end and titre:
            # Titres due after the plan's last day (6 weeks after a series, or moved there
            # by the doses before them, §6.3): said, not dropped.
            decisions.append(_titres_after_the_horizon(ctx, panel, reason, source, due))
            continue
        seen_reasons.setdefault(reason.split(" (overdue")[0], source)
        if due > horizon_end:
            continue
        # Titres (6 weeks after a series, or moved past the IG interval) are never merged
        # into an earlier check: drawn earlier, they would measure too soon (§6.3, §6.8).
        close = bool(items) and (due - items[-1].due).days < _MERGE_DAYS
        if close and (due == items[-1].due or not titre):
            prev = items[-1]
            merged = tuple(dict.fromkeys((*prev.panel, *panel)))
            reasons = prev.reason if reason in prev.reason else f"{prev.reason}; {reason}"
            items[-1] = ReassessmentItem(key=prev.key, due=prev.due, panel=merged, reason=reasons)
            continue
        items.append(
            ReassessmentItem(key=f"reassessment:{due}", due=due, panel=panel, reason=reason)
        )
    for reason, source in seen_reasons.items():
        decisions.append(Decision("reassessment", f"labs {reason}", _why_labs(grading), source))
    if grading.transient is None:
        decisions.append(_scope(ctx, grading))
        absent = absent_b_cells_without_cause(ctx)
        if absent is not None:
            decisions.append(
                Decision(
                    "grading",
                    "absent B cells with agammaglobulinaemia and no acquired cause: refer for "
                    "primary immunodeficiency work-up (e.g. BTK)",
                    absent,
                    ESID_AGAMMA,
                )
            )
    decisions.extend(_recovery(ctx.facts, ctx.protocol, ig, no_cause=grading.transient is None))
    return items, decisions


def _titres_after_the_horizon(
    ctx: PlanContext, panel: tuple[str, ...], reason: str, source: str, due: date
) -> Decision:
    moved = AFTER_DOSES in reason
    return Decision(
        "reassessment",
        f"{', '.join(panel)} from {due}: after this plan's last day ({ctx.horizon_end}), not "
        f"booked: book them on or after {due} if the plan then in force has not",
        f"{reason}"
        + ("; drawn before that day they would measure the doses too soon" if moved else "")
        + "; a plan books only what falls inside its own horizon",
        source,
    )


def _why_labs(grading: Grading) -> str:
    """The rationale of the lab checks, as the grading found the deficiency (§2.14)."""
    if grading.transient is None:
        return (
            "no immunosuppressive cause found: checks to see whether there is a deficiency, "
            "not the follow-up of a transient or permanent one"
        )
    if grading.transient:
        return "transient deficiencies are reassessed until recovery"
    return "a deficiency whose cause continues is reassessed while it lasts"


def _scope(ctx: PlanContext, grading: Grading) -> Decision:
    """No immunosuppressive cause found: whether the child is in scope is the clinician's
    decision, said as one (§2.14)."""
    return Decision(
        "grading",
        "no immunosuppression found: whether the child is in scope is a clinician decision",
        grading.reasons[-1],
        ctx.cite(
            "grading.not_immunosuppressive_drugs",
            "grading.not_immunosuppressive_level",
            "reassessment.default_every_months",
        ),
    )


def _recovery(
    facts: Facts, protocol: Protocol, ig: IgDecision, *, no_cause: bool = False
) -> list[Decision]:
    """The data a clinician weighs at plan review; never a discharge by itself. With no
    immunosuppressive cause found (§2.14) the same data say whether there is a deficiency,
    not whether the child has recovered from one."""
    shown: list[str] = []
    missing: list[str] = []
    igg = facts.latest_igg
    if igg is not None and igg.igg_g_l is not None and not facts.on_ig_replacement:
        (shown if igg.igg_g_l >= facts.igg_lower_limit_g_l else missing).append(
            f"IgG {igg.igg_g_l:g} g/L vs lower limit {facts.igg_lower_limit_g_l:g}"
        )
    else:
        missing.append("IgG off IG replacement")
    b = b_cells_recovered(facts, protocol)
    words, paths = recovery_limit(facts, protocol)
    depletion = facts.b_cell_depletion
    judged = cd19_recovered(facts.latest_cd19, facts.age_months, protocol)
    count_above = judged is not None and judged[0]
    if b is None:
        missing.append("a fresh CD19 count")
    elif facts.cd19_predates is not None:
        missing.append(
            f"a CD19 count after {facts.cd19_predates} (the newest, {words}, was drawn before it)"
        )
    elif not b and count_above and depletion is not None:
        # The count is at or above its limit; the window of the treatment still runs (§2.6).
        missing.append(
            f"the end of the depletion window ({depletion.reason}); {words}: at or above the limit"
        )
    elif b and "grading.b_cell_aplasia_below_cd19_per_ul" in paths:
        # Above the aplasia threshold is not within the age range (§2.13).
        missing.append(f"CD19 within the age range ({words}: no longer aplastic only)")
    else:
        (shown if b else missing).append(
            f"CD19 within range ({words})" if b else f"CD19 below range ({words})"
        )
    cd4 = facts.latest_cd4
    if cd4 is not None and cd4.cd4_per_ul is not None:
        band = cd4_band(facts.age_years_on(cd4.date), protocol)  # the age at the test (§2.3)
        ok = cd4.cd4_per_ul >= band.moderate_below_per_ul
        (shown if ok else missing).append(f"CD4 {cd4.cd4_per_ul:g}/uL")
    else:
        missing.append("CD4")
    if facts.active or facts.chemotherapy_ongoing or facts.anti_cd20_ongoing:
        missing.append("the cause has not ended")
    # The decisions keep their words (plan comparison reads them); the rationale says
    # what was found when no cause was (§2.14).
    lead = (
        "no immunosuppressive cause found: these data say whether there is a deficiency at all; "
        if no_cause
        else ""
    )
    if not missing and ig.status != "trial_off":
        return [
            Decision(
                "reassessment",
                "recovery criteria met: discharge can be considered at plan review",
                lead + "; ".join(shown),
                NO_CRITERIA,
            )
        ]
    return [
        Decision(
            "reassessment",
            "not yet recovered",
            lead
            + "still to show: "
            + "; ".join(missing)
            + (f"; shown: {'; '.join(shown)}" if shown else ""),
            NO_CRITERIA,
        )
    ]


def plan_reviews(
    ctx: PlanContext, *, ig: IgDecision
) -> tuple[list[PlanReviewItem], list[Decision]]:
    """Periodic plan reviews, with an early one when a result asks for it."""
    facts, protocol, calendar = ctx.facts, ctx.protocol, ctx.calendar
    start, horizon_end = ctx.start, ctx.horizon_end
    every = protocol.review.every_months
    items: list[PlanReviewItem] = []
    decisions = [
        Decision(
            "reassessment",
            f"plan review every {every} months",
            "the plan is reviewed until recovery: continue, modify, trial off IG or discharge",
            ctx.cite("review.every_months"),
        )
    ]
    igg = facts.latest_trough
    if (
        (ig.status == "continue" or (ig.status == "trial_off" and ig.sessions_until))
        and igg is not None
        and igg.igg_g_l is not None
        and igg.igg_g_l < ig.trough_target_g_l
        # Each low trough asks for one early review: one held since it was drawn answered it.
        and (ctx.last_review is None or igg.date > ctx.last_review)
    ):
        due = calendar.next_working_day(start)
        items.append(
            PlanReviewItem(
                key=f"plan_review:{due}",
                due=due,
                reason=f"trough IgG {igg.igg_g_l:g} g/L below target "
                f"{ig.trough_target_g_l:g}: review the dose",
            )
        )
    k = 1
    while True:
        due = calendar.next_working_day(add_months(start, every * k))
        if due > horizon_end:
            break
        items.append(PlanReviewItem(key=f"plan_review:{due}", due=due, reason="periodic review"))
        k += 1
    return items, decisions
