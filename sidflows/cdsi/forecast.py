"""Forecast one relevant patient series (spec chapter 7).

7.1 conditional skip (forecast context), 7.2 evidence of immunity, 7.3 contraindications,
7.4 forecast need (Table 7-10), 7.5 forecast dates (Table 7-13), 7.6 validate the
recommendation (conditional skip at the earliest date).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sidflows.cdsi.dates import Duration, add_duration
from sidflows.cdsi.evaluate import interval_reference
from sidflows.cdsi.model import Antigen, Series, SeriesDose
from sidflows.cdsi.skip import can_skip
from sidflows.cdsi.state import Context, DoseEval, GroupComplete, Record, SeriesRun
from sidflows.cdsi.types import SeriesForecast, SeriesStatus

__all__ = [
    "ForecastDates",
    "contraindicable",
    "forecast_dates",
    "forecast_series",
    "has_immunity",
    "is_contraindicated",
    "recommended_vaccines",
]

ONE_DAY = timedelta(days=1)
NO_DATE = date(2999, 12, 31)
"""Table 7-9: the candidate earliest date assumed when FORECASTDTCAN-1 finds no date
(a target dose with no minimum age and no interval that applies, e.g. a catch-up dose
whose interval counts from a previous dose the patient never had); the maximum age
date is assumed the same, so Table 7-10 finds the series 'Aged Out' (unable to finish
before the maximum age)."""


def has_immunity(ctx: Context, antigen: Antigen) -> bool:
    """Table 7-3: an immunity guideline observed, or born before the immunity birth date
    without an exclusion condition (and, if given, in the immunity birth country)."""
    immunity = antigen.immunity
    if not immunity.guideline_codes.isdisjoint(ctx.observations):
        return True
    if immunity.immunity_birth_date is None:
        return False
    if ctx.patient.birth_date >= immunity.immunity_birth_date:
        return False
    if not immunity.exclusion_codes.isdisjoint(ctx.observations):
        return False
    return immunity.birth_country is None


def _applies(ctx: Context, begin: Duration | None, end: Duration | None) -> bool:
    """CALCDTCI-1/-2: begin age date <= assessment date < end age date."""
    low = ctx.age_bound(begin, low=True)
    high = ctx.age_bound(end, low=False)
    return low <= ctx.assessment_date < high


def is_contraindicated(ctx: Context, antigen: Antigen, target: SeriesDose | None) -> bool:
    """Table 7-7: an antigen contraindication applies, or every vaccine the target dose
    accepts (preferable and allowable) has a vaccine contraindication that applies
    (Tables 7-5 and 7-6): a contraindicated vaccine is otherwise only left out of the
    recommended vaccines (FORECASTRECVAC-1)."""
    if antigen.contraindication_codes.isdisjoint(ctx.observations):
        return False  # none of its contraindications is observed
    for ci in antigen.antigen_contraindications:
        if ci.observation_code in ctx.observations and _applies(ctx, ci.begin_age, ci.end_age):
            return True
    if target is None:
        return False
    usable = target.usable_cvx
    if not usable:
        return False
    blocked = _contraindicated_vaccines(ctx, antigen)
    if not blocked:
        return False
    return usable <= blocked


def _contraindicated_vaccines(ctx: Context, antigen: Antigen) -> set[str]:
    """The CVX codes the patient's observations contraindicate at the assessment date."""
    blocked: set[str] = set()
    for vci in antigen.vaccine_contraindications:
        if vci.observation_code not in ctx.observations:
            continue
        for cvx, begin, end in vci.ages:
            if _applies(ctx, begin, end):
                blocked.add(cvx)
    return blocked


def contraindicable(ctx: Context, antigen: Antigen, series: Sequence[Series]) -> list[bool]:
    """Per series: can its forecast be 'Contraindicated' (chapter 7's order: not if the
    patient is immune; always if an antigen contraindication applies; else only if one of
    its target doses has every vaccine it accepts contraindicated, as in
    :func:`is_contraindicated`)? False is certain; True means "forecast to know"."""
    if antigen.contraindication_codes.isdisjoint(ctx.observations):
        return [False] * len(series)
    if has_immunity(ctx, antigen):
        return [False] * len(series)
    for ci in antigen.antigen_contraindications:
        if ci.observation_code in ctx.observations and _applies(ctx, ci.begin_age, ci.end_age):
            return [True] * len(series)
    blocked = _contraindicated_vaccines(ctx, antigen)
    if not blocked:
        return [False] * len(series)
    return [any(d.usable_cvx and d.usable_cvx <= blocked for d in s.doses) for s in series]


@dataclass(frozen=True, slots=True)
class ForecastDates:
    earliest: date
    unadjusted_recommended: date
    unadjusted_past_due: date | None
    latest: date | None
    max_age_date: date | None
    priority: bool


def forecast_dates(ctx: Context, run: SeriesRun, target: SeriesDose) -> ForecastDates:
    """FORECASTDTCAN-1 and FORECASTDT-1 to -4 for the next target dose."""
    on = ctx.assessment_date
    age = target.age_on(on) or (target.ages[-1] if target.ages else None)
    candidates: list[date] = []
    earliest_rec_age = latest_rec_age = max_age_date = None
    if age is not None:
        if age.min_age is not None:
            candidates.append(ctx.at_age(age.min_age))
        if age.earliest_rec_age is not None:
            earliest_rec_age = ctx.at_age(age.earliest_rec_age)
        if age.latest_rec_age is not None:
            latest_rec_age = ctx.at_age(age.latest_rec_age)
        if age.max_age is not None:
            max_age_date = ctx.at_age(age.max_age)
    # CALCDTINT-1: previous dose = most recent 'Valid'/'Not Valid', not inadvertent.
    previous: Record | None = None
    pairs = list(zip(run.records, run.evals, strict=True))
    for record, ev in pairs:
        if ev.status in ("Valid", "Not Valid") and not ev.inadvertent:
            previous = record
    satisfied = run.satisfied_by
    earliest_rec_int: list[date] = []
    latest_rec_int: list[date] = []
    intervals = target.intervals_on(on)
    for iv in intervals:
        ref = interval_reference(ctx, iv, previous, satisfied, date.max, 1 << 30)
        if ref is None:
            continue
        if iv.min_int is not None:
            candidates.append(add_duration(ref, iv.min_int))
        if iv.earliest_rec_int is not None:
            earliest_rec_int.append(add_duration(ref, iv.earliest_rec_int))
        if iv.latest_rec_int is not None:
            latest_rec_int.append(add_duration(ref, iv.latest_rec_int))
    # CALCDTCONFLICT-3: forecast conflict end dates (each previous dose of a vaccine
    # that conflicts with a preferable vaccine of the target dose).
    if ctx.history:
        conflicts = ctx.data.forecast_conflicts(target)
        if conflicts:
            for record in ctx.history:
                for end_interval in conflicts.get(record.cvx, ()):
                    candidates.append(add_duration(record.when, end_interval))
    if target.seasonal_start is not None:
        candidates.append(target.seasonal_start)
    for record, ev in pairs:
        if ev.target is not None or ev.inadvertent:
            candidates.append(record.when)
    # FORECASTDTCAN-1 over no date at all: Table 7-9 assumes 12/31/2999.
    earliest = max(candidates) if candidates else NO_DATE
    if earliest_rec_age is not None:
        recommended = earliest_rec_age
    elif earliest_rec_int:
        recommended = max(earliest_rec_int)
    else:
        recommended = earliest
    past_due: date | None = None
    if latest_rec_age is not None:
        past_due = latest_rec_age - ONE_DAY
    elif latest_rec_int:
        past_due = max(latest_rec_int) - ONE_DAY
    latest = max_age_date - ONE_DAY if max_age_date is not None else None
    priority = bool(intervals) and all(iv.priority_override for iv in intervals)
    return ForecastDates(earliest, recommended, past_due, latest, max_age_date, priority)


def recommended_vaccines(
    ctx: Context, antigen: Antigen, target: SeriesDose, dates: ForecastDates
) -> tuple[str, ...]:
    """FORECASTRECVAC-1: preferable vaccines flagged as forecast vaccine types, not
    contraindicated, whose age window holds the earliest or the recommended date."""
    blocked: set[str] = set()
    if not antigen.contraindication_codes.isdisjoint(ctx.observations):
        for vci in antigen.vaccine_contraindications:
            if vci.observation_code in ctx.observations:
                blocked.update(cvx for cvx, begin, end in vci.ages if _applies(ctx, begin, end))
    recommended = max(dates.earliest, dates.unadjusted_recommended)
    out: list[str] = []
    for v in target.forecast_vaccines:
        if v.cvx in blocked or v.cvx in out:
            continue
        low = ctx.age_bound(v.begin_age, low=True)
        high = ctx.age_bound(v.end_age, low=False)
        if low <= dates.earliest < high or low <= recommended < high:
            out.append(v.cvx)
    return tuple(out)


def _forecast(
    run: SeriesRun,
    status: SeriesStatus,
    reason: str,
    dates: ForecastDates | None = None,
    dose_number: int | None = None,
    vaccines: tuple[str, ...] = (),
) -> SeriesForecast:
    series = run.series
    if dates is None or status != "Not Complete":
        return SeriesForecast(
            antigen=series.antigen,
            series_name=series.name,
            series_type=series.series_type,
            status=status,
            forecast_dose_number=None,
            earliest=None,
            recommended=None,
            past_due=None,
            latest=None,
            unadjusted_recommended=None,
            unadjusted_past_due=None,
            reasons=(reason,) if reason else (),
        )
    recommended = max(dates.earliest, dates.unadjusted_recommended)
    past_due = (
        max(dates.earliest, dates.unadjusted_past_due)
        if dates.unadjusted_past_due is not None
        else None
    )
    return SeriesForecast(
        antigen=series.antigen,
        series_name=series.name,
        series_type=series.series_type,
        status=status,
        forecast_dose_number=dose_number,
        earliest=dates.earliest,
        recommended=recommended,
        past_due=past_due,
        latest=dates.latest,
        unadjusted_recommended=dates.unadjusted_recommended,
        unadjusted_past_due=dates.unadjusted_past_due,
        reasons=(reason,) if reason else (),
        priority=dates.priority,
        vaccines=vaccines,
    )


def forecast_series(
    ctx: Context, antigen: Antigen, run: SeriesRun, group_complete: GroupComplete
) -> tuple[SeriesForecast, int]:
    """Chapter 7 for one evaluated relevant patient series; also returns the index of
    the target dose forecast (after the skips of 7.1 and 7.6)."""
    return _forecast_series(ctx, antigen, run, group_complete)


def _forecast_series(
    ctx: Context, antigen: Antigen, run: SeriesRun, group_complete: GroupComplete
) -> tuple[SeriesForecast, int]:
    prior: list[tuple[Record, DoseEval | None]] | None = None
    last = run.records[-1] if run.records else None
    t = run.next_target
    targets = run.targets
    dates: ForecastDates | None = None
    while t < len(targets):
        target = targets[t]
        skips = bool(target.forecast_skips)
        if skips and prior is None:
            prior = list(zip(run.records, run.evals, strict=True))
        # 7.1: skip at the assessment date.
        if skips and can_skip(
            ctx, target, "Forecast", ctx.assessment_date, last, prior or [], group_complete
        ):
            t += 1
            continue
        dates = forecast_dates(ctx, run, target)
        if dates.earliest >= NO_DATE:
            break  # Table 7-10 ages the series out before 7.5 and 7.6
        # 7.6: the recommendation must still hold at the earliest date.
        if skips and can_skip(
            ctx, target, "Forecast", dates.earliest, last, prior or [], group_complete
        ):
            t += 1
            dates = None
            continue
        break
    next_target = targets[t] if t < len(targets) else None
    if has_immunity(ctx, antigen):
        return _forecast(run, "Immune", "Patient has evidence of immunity"), t
    if is_contraindicated(ctx, antigen, next_target):
        return _forecast(run, "Contraindicated", "Patient has a contraindication"), t
    if next_target is None or dates is None:
        if run.valid_count > 0:
            return _forecast(run, "Complete", "Patient series is complete"), t
        return _forecast(
            run,
            "Not Recommended",
            "Not recommended at this time due to past immunization history",
        ), t
    if next_target.seasonal_end is not None and ctx.assessment_date > next_target.seasonal_end:
        return _forecast(run, "Not Recommended", "Past seasonal recommendation end date"), t
    if dates.earliest >= NO_DATE:
        # Table 7-10: the candidate earliest date (assumed 12/31/2999) is not before
        # the maximum age date (12/31/2999 when the target dose has none).
        return _forecast(
            run, "Aged Out", "Patient is unable to finish the series prior to the maximum age"
        ), t
    if dates.max_age_date is not None:
        if ctx.assessment_date >= dates.max_age_date:
            return _forecast(run, "Aged Out", "Patient has exceeded the maximum age"), t
        if dates.earliest >= dates.max_age_date:
            return _forecast(
                run, "Aged Out", "Patient is unable to finish the series prior to the maximum age"
            ), t
    vaccines = recommended_vaccines(ctx, antigen, next_target, dates)
    return _forecast(run, "Not Complete", "", dates, run.valid_count + 1, vaccines), t
