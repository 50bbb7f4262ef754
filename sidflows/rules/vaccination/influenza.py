"""Inactivated influenza every season of the horizon (docs/clinical-reference.md §4)."""

from __future__ import annotations

from datetime import date, timedelta

from sidflows.protocol import Protocol
from sidflows.rules.model import Block, VaccineDose
from sidflows.rules.vaccination.blocks import influenza_blocks
from sidflows.rules.vaccination.series import Schedule, Series, schedule_series


def season_bounds(year: int, protocol: Protocol) -> tuple[date, date]:
    """First and last day of the influenza season that begins in ``year``."""
    v = protocol.vaccination
    sm, sd = (int(x) for x in v.influenza_season_start.split("-"))
    em, ed = (int(x) for x in v.influenza_season_end.split("-"))
    begin = date(year, sm, sd)
    end = date(year + (1 if (em, ed) < (sm, sd) else 0), em, ed)
    return begin, end


def plan_influenza(schedule: Schedule) -> None:
    """One dose a season (two in the first season after HSCT), inside the campaign dates."""
    ctx, plan = schedule.ctx, schedule.plan
    referral, protocol, start, horizon_end = ctx.referral, ctx.protocol, ctx.start, ctx.horizon_end
    blocks = influenza_blocks(ctx)
    # Two doses in the first season after HSCT (none given since the transplant).
    hsct_first = referral.hsct is not None and not any(
        x.vaccine == "IIV" and x.date >= referral.hsct.date for x in referral.vaccinations
    )
    for year in range(start.year - 1, horizon_end.year + 1):
        begin, end = season_bounds(year, protocol)
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
            ctx.cite(
                "vaccination.influenza_min_age_months",
                "vaccination.influenza_season_start",
                "vaccination.influenza_season_end",
            ),
            given,
            gap_months=0,
        )
        before = len(plan.items)
        schedule_series(schedule, series, min_gap=timedelta(days=28))
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
