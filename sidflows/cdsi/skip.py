"""Conditional skip (spec section 6.2, reused by 7.1 and 7.6): can a target dose be skipped?"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sidflows.cdsi.dates import MAX_DATE, MIN_DATE, add_duration
from sidflows.cdsi.model import SeriesDose, SkipCondition, SkipSet, in_effect
from sidflows.cdsi.state import Context, DoseEval, GroupComplete, Record

__all__ = ["can_skip", "count_is_met"]


def count_is_met(count: int, logic: str | None, wanted: int) -> bool:
    """Table 6-9: the number of conditional doses against the dose count logic."""
    if logic is None:
        return False
    if logic.startswith("greater"):
        return count > wanted
    if logic.startswith("equal"):
        return count == wanted
    if logic.startswith("less"):
        return count < wanted
    return False


def _condition_met(
    ctx: Context,
    condition: SkipCondition,
    reference: date,
    previous: Record | None,
    prior: Sequence[tuple[Record, DoseEval | None]],
    group_complete: GroupComplete,
) -> bool:
    kind = condition.condition_type
    if kind == "age":
        # Table 6-6: begin age date <= reference date < end age date.
        begin = ctx.age_bound(condition.begin_age, low=True)
        end = ctx.age_bound(condition.end_age, low=False)
        return begin <= reference < end
    if kind == "completed series":
        # Table 6-7.
        return any(group_complete(group) for group in condition.series_groups)
    if kind == "interval":
        # Table 6-8 with CALCDTSKIP-5 (from the immediate previous dose administered).
        if previous is None or condition.interval is None:
            return False
        return reference >= add_duration(previous.when, condition.interval)
    if kind.startswith("vaccine count"):
        # CONDSKIP-1 and Table 6-9.
        begin_age = ctx.age_bound(condition.begin_age, low=True)
        end_age = ctx.age_bound(condition.end_age, low=False)
        start = condition.start_date or MIN_DATE
        end = condition.end_date or MAX_DATE
        valid_only = condition.dose_type == "valid"
        count = 0
        for record, ev in prior:
            if condition.vaccine_types and record.cvx not in condition.vaccine_types:
                continue
            if not (begin_age <= record.when < end_age and start <= record.when < end):
                continue
            if valid_only and (ev is None or ev.status != "Valid"):
                continue
            count += 1
        return count_is_met(count, condition.dose_count_logic, condition.dose_count or 0)
    return False


def _set_met(
    ctx: Context,
    skip_set: SkipSet,
    reference: date,
    previous: Record | None,
    prior: Sequence[tuple[Record, DoseEval | None]],
    group_complete: GroupComplete,
) -> bool:
    """Table 6-10: AND needs every condition, OR at least one (the first condition that
    settles the set ends it)."""
    if skip_set.condition_logic == "OR":
        for c in skip_set.conditions:
            if _condition_met(ctx, c, reference, previous, prior, group_complete):
                return True
        return False
    for c in skip_set.conditions:
        if not _condition_met(ctx, c, reference, previous, prior, group_complete):
            return False
    return True


def can_skip(
    ctx: Context,
    target: SeriesDose,
    context: str,
    reference: date,
    previous: Record | None,
    prior: Sequence[tuple[Record, DoseEval | None]],
    group_complete: GroupComplete,
) -> bool:
    """Table 6-11: can the target dose be skipped in this context ('Evaluation'/'Forecast')?

    ``reference`` is CONDSKIP-2's reference date, ``previous`` the immediate previous
    dose administered, and ``prior`` the antigen doses (with their evaluations) that the
    dose counts of CONDSKIP-1 may count.
    """
    if context == "Evaluation":
        skips = target.evaluation_skips
    elif context == "Forecast":
        skips = target.forecast_skips
    else:
        skips = tuple(s for s in target.conditional_skips if s.applies_to(context))
    for skip in skips:
        if skip.undated:
            sets: Sequence[SkipSet] = skip.sets
        else:
            sets = [
                s for s in skip.sets if in_effect(s.effective_date, s.cessation_date, reference)
            ]
        if not sets:
            continue
        met = [_set_met(ctx, s, reference, previous, prior, group_complete) for s in sets]
        if skip.set_logic == "AND":
            if all(met):
                return True
        elif any(met):
            return True
    return False
