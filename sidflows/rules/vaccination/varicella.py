"""Varicella without evidence of immunity in an immunocompromised child (§4.20).

A child graded low or high with fewer than two valid varicella doses (since the
transplant, after HSCT) has no documented evidence of immunity (ACIP: two doses, a
laboratory proof or a diagnosed varicella; the referral carries the doses only). Varicella
is dangerous there, and the vaccine is often the one thing the plan cannot give: the plan
says what protects the child meanwhile, as a decision for the clinician (IDSA 2013; ACIP
VariZIG, MMWR 2013;62:574). No dose is planned here: post-exposure prophylaxis is given on
an exposure, not on a date.
"""

from __future__ import annotations

from datetime import timedelta

from sidflows.rules.facts import name_matches
from sidflows.rules.model import Decision, Grading
from sidflows.rules.vaccination.series import Schedule, given_doses

ACIP_VARIZIG = "ACIP VariZIG (MMWR 2013;62:574)"
ACIP_VARICELLA = (
    "ACIP varicella (Marin M, et al. MMWR Recomm Rep 2007;56(RR-4)): evidence of immunity "
    "includes a varicella or herpes zoster diagnosed or verified by a health-care provider"
)
IMMUNE_DOSES = 2  # ACIP's evidence of immunity: 2 valid doses (the word's definition)


ACIP_MMR = "ACIP MMR (McLean, MMWR Recomm Rep 2013;62(RR-4))"


def exposures_and_household(schedule: Schedule, grading: Grading) -> None:
    """High-level immunosuppression: measles exposure and the household (§4.20)."""
    ctx = schedule.ctx
    v = ctx.protocol.vaccination
    if not v.varicella_exposure_advice or grading.level != "high":
        return
    schedule.plan.decisions.append(
        Decision(
            "vaccination",
            "household and exposures: influenza vaccine for the household each season; "
            "measles exposure is an emergency",
            "graded high-level immunosuppression: household contacts get the inactivated "
            "influenza vaccine each season (MMR and varicella too where they lack them: "
            "they are safe around the child); after any measles exposure, IGIV "
            f"{v.measles_exposure_igiv_g_per_kg:g} g/kg within "
            f"{v.measles_exposure_within_days} days whatever the MMR doses recorded (IG "
            "replacement at that dose given within the last 3 weeks covers it)",
            f"IDSA 2013 (Rubin, CID 58:e44); {ACIP_MMR}; "
            + ctx.cite(
                "vaccination.measles_exposure_igiv_g_per_kg",
                "vaccination.measles_exposure_within_days",
            ),
        )
    )


def varicella_susceptibility(schedule: Schedule, grading: Grading) -> None:
    """The decision for a susceptible immunocompromised child, or nothing."""
    ctx = schedule.ctx
    v = ctx.protocol.vaccination
    if not v.varicella_exposure_advice or grading.level == "none":
        return
    hsct = ctx.referral.hsct
    since = hsct.date if hsct is not None else None
    doses = given_doses(schedule, "VAR", since)
    if len(doses) >= IMMUNE_DOSES:
        return
    # After HSCT a zoster is a reactivation, not new immunity: the transplant team's call.
    diagnosed = [
        i
        for i in ctx.referral.infections
        if since is None and name_matches(i.kind, v.varicella_infection_words)
    ]
    if diagnosed:
        named = "; ".join(f"{i.kind} on {i.date}" for i in diagnosed)
        booked = [i for i in schedule.plan.items if getattr(i, "vaccine", "") in ("VAR", "MMRV")]
        cancel = (
            " (this plan's "
            + ", ".join(f"{getattr(i, 'vaccine', '')} on {i.due}" for i in booked)
            + ": not needed then, modify the plan)"
            if booked
            else ""
        )
        schedule.plan.decisions.append(
            Decision(
                "vaccination",
                "varicella: a recorded varicella or zoster infection: evidence of immunity "
                "if a clinician diagnosed it: confirm",
                f"the record holds {named}"
                + ": a varicella or herpes zoster diagnosed or verified by a health-care "
                "provider is evidence of immunity (ACIP); confirm the diagnosis: then no "
                f"varicella vaccine is needed{cancel} and no VariZIG after an exposure; if it "
                "is not "
                "confirmed, check VZV IgG and follow the post-exposure plan (VariZIG within "
                f"{v.varizig_within_days} days)",
                f"{ACIP_VARICELLA}; {ACIP_VARIZIG}; "
                + ctx.cite(
                    "vaccination.varicella_exposure_advice", "vaccination.varicella_infection_words"
                ),
            )
        )
        return
    counted = f"{len(doses)} valid varicella dose(s)" + (
        f" since the transplant on {since}" if since is not None else ""
    )
    facts = ctx.facts
    last = facts.last_ig_dose
    covered = ""
    if (
        last is not None
        and facts.on_ig_replacement
        and last.g_per_kg >= 0.4
        and ctx.today - last.date <= timedelta(weeks=v.ig_covers_varicella_exposure_weeks)
    ):
        covered = (
            f"; IG replacement ({last.g_per_kg:g} g/kg on {last.date}) given within "
            f"{v.ig_covers_varicella_exposure_weeks} weeks of an exposure probably protects "
            "(no VariZIG needed then)"
        )
    ctx_cite = ctx.cite(
        "vaccination.varicella_exposure_advice",
        "vaccination.varizig_within_days",
        "vaccination.ig_covers_varicella_exposure_weeks",
    )
    schedule.plan.decisions.append(
        Decision(
            "vaccination",
            "varicella: no evidence of immunity: check VZV IgG; post-exposure plan",
            f"{counted}, graded {grading.level}-level immunosuppression: check VZV IgG (not in "
            "the record; measured off IG, or it reflects the infused IgG); if not immune, "
            "after any contact with chickenpox or zoster give VariZIG as soon as possible, "
            f"within {v.varizig_within_days} days "
            "(an antiviral is the clinician's alternative where VariZIG is not available), "
            "and treat chickenpox early; household contacts without immunity are vaccinated "
            "(a vaccinee with a rash keeps away from the child)" + covered,
            f"IDSA 2013 (Rubin, CID 58:e44); {ACIP_VARIZIG}; {ctx_cite}",
        )
    )


REYE_SRC = (
    "varicella vaccine label (Varivax: no salicylates for 6 weeks after vaccination, Reye "
    "syndrome); ACIP varicella (Marin, MMWR Recomm Rep 2007;56(RR-4): long-term salicylate "
    "therapy, the theoretical risk weighed against wild varicella's); ACIP influenza "
    "(Grohskopf, MMWR: LAIV not given with aspirin or salicylates; inactivated influenza "
    "every season)"
)


def salicylate_precaution(schedule: Schedule) -> None:
    """Long-term aspirin (Kawasaki disease): the varicella doses of the plan carry the
    labels' 6 weeks without salicylates (Reye syndrome), and influenza is inactivated only
    (§4.14). Said once, for the clinician, with the doses it concerns."""
    ctx, plan = schedule.ctx, schedule.plan
    v = ctx.protocol.vaccination
    on = [
        t.drug
        for t in ctx.referral.treatments
        if t.active_on(ctx.today)
        and (
            name_matches(t.drug, v.salicylate_drugs)
            or (t.code is not None and t.code.replace(".", "").upper() in v.salicylate_atc)
        )
    ]
    if not on:
        return
    varicella = [i for i in plan.items if getattr(i, "vaccine", "") in ("VAR", "MMRV")]
    deferred = [d for d in plan.deferred if d.vaccine in ("VAR", "MMRV")]
    doses = ", ".join(f"{i.vaccine} on {i.due}" for i in varicella) or (
        "varicella deferred" if deferred else "no varicella dose in this plan"
    )
    plan.decisions.append(
        Decision(
            "vaccination",
            f"on {', '.join(dict.fromkeys(on))}: varicella vaccine is a precaution (Reye "
            "syndrome); influenza vaccine inactivated only",
            f"{doses}: the varicella vaccine's label asks for no salicylates for 6 weeks after "
            "each dose (Reye syndrome); on long-term aspirin the clinician weighs that against "
            "wild varicella (another antiplatelet for those weeks, with the cardiologist); "
            "the live attenuated influenza vaccine is not given on aspirin, the inactivated "
            "one every season (influenza itself carries the Reye risk)",
            f"{REYE_SRC}; {ctx.cite('vaccination.salicylate_drugs', 'vaccination.salicylate_atc')}",
        )
    )
