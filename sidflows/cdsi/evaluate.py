"""Evaluate the immunisation history against one relevant patient series.

Section 4.4 (Figure 4-6) walks the antigen administered records and the target doses
together; chapter 6 evaluates one record against one target dose:
6.1 dose condition, 6.2 conditional skip, 6.3 inadvertent vaccine, 6.4 age,
6.5 preferable interval, 6.6 allowable interval, 6.7 vaccine conflict,
6.8 preferable vaccine, 6.9 allowable vaccine, 6.10 satisfy target dose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from types import MappingProxyType

from sidflows.cdsi.dates import MIN_DATE, Duration, add_duration
from sidflows.cdsi.model import Interval, Series, SeriesDose, VaccineRule
from sidflows.cdsi.skip import can_skip
from sidflows.cdsi.state import Context, DoseEval, GroupComplete, Record, SeriesRun, age_date

__all__ = [
    "R_ALREADY_COMPLETE",
    "R_CONFLICT",
    "R_INADVERTENT",
    "R_NOT_PREFERABLE",
    "R_TOO_OLD",
    "R_TOO_SOON",
    "R_TOO_YOUNG",
    "evaluate_age",
    "evaluate_interval",
    "evaluate_series",
    "interval_reference",
    "is_allowable",
    "is_preferable",
]

R_TOO_YOUNG = "Age: Too Young"
R_TOO_OLD = "Age: Too Old"
R_AGE_GRACE = "Age: Grace Period"
R_TOO_SOON = "Interval: Too Soon"
R_INTERVAL_GRACE = "Interval: Grace Period"
R_INADVERTENT = "Inadvertent Vaccine"
R_CONFLICT = "Live Virus Conflict"
R_NOT_PREFERABLE = "Not a preferable or allowable vaccine"
R_ALREADY_COMPLETE = "Series Already Complete"
R_SUBSTANDARD = "Sub standard: expired lot or dose condition"


def evaluate_age(
    birth: date,
    when: date,
    abs_min: Duration | None,
    minimum: Duration | None,
    maximum: Duration | None,
) -> str:
    """Table 6-15: 'too young', 'grace', 'valid' or 'too old'."""
    if when < age_date(birth, abs_min, low=True):
        return "too young"
    if when >= age_date(birth, maximum, low=False):
        return "too old"
    if when < age_date(birth, minimum, low=True):
        return "grace"
    return "valid"


def evaluate_interval(
    reference: date, when: date, abs_min: Duration | None, minimum: Duration | None
) -> str:
    """Table 6-18: 'too soon', 'grace' or 'valid' (empty intervals assume 01/01/1900)."""
    abs_date = add_duration(reference, abs_min) if abs_min is not None else MIN_DATE
    min_date = add_duration(reference, minimum) if minimum is not None else MIN_DATE
    if when < abs_date:
        return "too soon"
    if when < min_date:
        return "grace"
    return "valid"


def _previous_for_interval(
    records: Sequence[Record], evals: Sequence[DoseEval | None], upto: int
) -> Record | None:
    """CALCDTINT-1: the most immediate previous dose that evaluated 'Valid' or 'Not Valid'
    and was not an inadvertent administration."""
    for k in range(upto - 1, -1, -1):
        ev = evals[k]
        if ev is None or ev.inadvertent:
            continue
        if ev.status in ("Valid", "Not Valid"):
            return records[k]
    return None


def interval_reference(
    ctx: Context,
    interval: Interval,
    previous: Record | None,
    satisfied_by: Mapping[int, Record],
    before: date,
    before_position: int,
) -> date | None:
    """CALCDTINT-1, -2, -8 and -9: the reference date of an interval, or None if the
    interval has no reference (it then does not apply)."""
    if interval.from_previous:
        return previous.when if previous is not None else None
    if interval.from_target_dose is not None:
        record = satisfied_by.get(interval.from_target_dose - 1)
        return record.when if record is not None else None
    if interval.from_most_recent:
        latest: date | None = None
        for record in ctx.history:
            if record.position >= before_position or record.when > before:
                break
            if record.cvx in interval.from_most_recent:
                latest = record.when
        return latest
    if interval.from_relevant_obs is not None:
        return ctx.observations.get(interval.from_relevant_obs)
    return None


def _vaccine_matches(rule: VaccineRule, ctx: Context, record: Record) -> bool:
    if rule.cvx != record.cvx:
        return False
    return (
        ctx.age_bound(rule.begin_age, low=True)
        <= record.when
        < ctx.age_bound(rule.end_age, low=False)
    )


def is_preferable(target: SeriesDose, ctx: Context, record: Record) -> bool:
    """Table 6-26 (volume is reported, never used; trade name compared through MVX)."""
    for rule in target.preferable_vaccines:
        if not _vaccine_matches(rule, ctx, record):
            continue
        if rule.mvx is not None and (record.dose.mvx or "").upper() != rule.mvx.upper():
            continue
        return True
    return False


def is_allowable(target: SeriesDose, ctx: Context, record: Record) -> bool:
    """Table 6-28."""
    return any(_vaccine_matches(rule, ctx, record) for rule in target.allowable_vaccines)


def _in_conflict(ctx: Context, record: Record, statuses: dict[int, str]) -> bool:
    """Section 6.7 (CALCDTCONFLICT-1/-2, CONFLICT-3): is the dose an impacted dose?"""
    conflicts = ctx.data.live_virus_conflicts.get(record.cvx)
    if not conflicts:
        return False
    for previous in ctx.history:
        if previous.when >= record.when:
            break
        for conflict in conflicts:
            if conflict.previous_cvx != previous.cvx:
                continue
            begin = add_duration(previous.when, conflict.begin_interval)
            status = statuses.get(previous.position)
            end_interval = (
                conflict.min_end_interval if status in (None, "Valid") else conflict.end_interval
            )
            end = add_duration(previous.when, end_interval)
            if begin <= record.when < end:
                return True
    return False


def _evaluate_against(
    ctx: Context,
    target: SeriesDose,
    record: Record,
    previous: Record | None,
    satisfied_by: dict[int, Record],
    statuses: dict[int, str],
    target_index: int,
) -> DoseEval:
    """Sections 6.3 to 6.10 for one record and one target dose."""
    if record.cvx in target.inadvertent_vaccines:
        return DoseEval("Not Valid", (R_INADVERTENT,), target_index, inadvertent=True)
    reasons: list[str] = []
    age = target.age_on(record.when)
    age_result = "valid"
    if age is not None:
        # Table 6-15 (evaluate_age) on the patient's age dates.
        when = record.when
        if when < ctx.age_bound(age.abs_min_age, low=True):
            age_result = "too young"
        elif when >= ctx.age_bound(age.max_age, low=False):
            age_result = "too old"
        elif when < ctx.age_bound(age.min_age, low=True):
            age_result = "grace"
    if age_result == "too young":
        reasons.append(R_TOO_YOUNG)
    elif age_result == "too old":
        reasons.append(R_TOO_OLD)
    elif age_result == "grace":
        reasons.append(R_AGE_GRACE)
    interval_ok = True
    for iv in target.intervals_on(record.when):
        ref = interval_reference(ctx, iv, previous, satisfied_by, record.when, record.position)
        if ref is None:
            continue
        result = evaluate_interval(ref, record.when, iv.abs_min_int, iv.min_int)
        if result == "too soon":
            interval_ok = False
        elif result == "grace":
            reasons.append(R_INTERVAL_GRACE)
    if not interval_ok:
        allowable = target.allowable_intervals_on(record.when)
        allowed = bool(allowable)
        for aiv in allowable:
            as_interval = Interval(
                aiv.from_previous,
                aiv.from_target_dose,
                frozenset(),
                None,
                aiv.abs_min_int,
                None,
                None,
                None,
            )
            ref = interval_reference(
                ctx, as_interval, previous, satisfied_by, record.when, record.position
            )
            if ref is not None and record.when < add_duration(ref, aiv.abs_min_int or Duration()):
                allowed = False
        if allowed:
            interval_ok = True
        else:
            reasons.append(R_TOO_SOON)
    conflict = _in_conflict(ctx, record, statuses)
    if conflict:
        reasons.append(R_CONFLICT)
    vaccine_ok = is_preferable(target, ctx, record) or is_allowable(target, ctx, record)
    if not vaccine_ok:
        reasons.append(R_NOT_PREFERABLE)
    # Table 6-31.
    if age_result == "too old":
        return DoseEval("Extraneous", tuple(reasons), target_index)
    if age_result == "too young" or not interval_ok or conflict or not vaccine_ok:
        return DoseEval("Not Valid", tuple(reasons), target_index)
    return DoseEval("Valid", tuple(reasons), target_index)


_UNEVALUATED: dict[int, SeriesRun] = {}


def _unevaluated(series: Series) -> SeriesRun:
    """A series with no records: nothing to evaluate, every target dose still to satisfy.
    The same (frozen) run for every patient, made once per series (it holds the series,
    so the identity it is kept under is not reused)."""
    run = _UNEVALUATED.get(id(series))
    if run is None or run.series is not series:
        doses = series.doses
        run = SeriesRun(
            series=series,
            records=(),
            evals=(),
            targets=doses,
            target_status=("Not Satisfied",) * len(doses),
            satisfied_by=MappingProxyType({}),
            next_target=0,
        )
        if len(_UNEVALUATED) >= 4096:
            _UNEVALUATED.clear()
        _UNEVALUATED[id(series)] = run
    return run


def evaluate_series(
    ctx: Context,
    series: Series,
    records: Sequence[Record],
    group_complete: GroupComplete,
) -> SeriesRun:
    """Figure 4-6: evaluate every antigen administered record against the target doses."""
    if not records:
        return _unevaluated(series)
    targets = list(series.doses)
    status = ["Not Satisfied"] * len(targets)
    satisfied_by: dict[int, Record] = {}
    evals: list[DoseEval | None] = [None] * len(records)
    statuses: dict[int, str] = {}
    t = 0
    for k, record in enumerate(records):
        if record.substandard:
            evals[k] = DoseEval("Sub standard", (R_SUBSTANDARD,), None)
            statuses[record.position] = "Sub standard"
            continue
        if t < len(targets) and targets[t].evaluation_skips:
            prior = [(records[j], evals[j]) for j in range(k)]
            previous_any = records[k - 1] if k > 0 else None
            while t < len(targets) and can_skip(
                ctx, targets[t], "Evaluation", record.when, previous_any, prior, group_complete
            ):
                status[t] = "Skipped"
                t += 1
        if t >= len(targets):
            evals[k] = DoseEval("Extraneous", (R_ALREADY_COMPLETE,), None)
            statuses[record.position] = "Extraneous"
            continue
        previous = _previous_for_interval(records, evals, k)
        ev = _evaluate_against(ctx, targets[t], record, previous, satisfied_by, statuses, t)
        evals[k] = ev
        statuses[record.position] = ev.status
        if ev.status == "Valid":
            status[t] = "Satisfied"
            satisfied_by[t] = record
            if targets[t].recurring:
                targets.insert(t + 1, targets[t])
                status.insert(t + 1, "Not Satisfied")
            t += 1
    final = tuple(e if e is not None else DoseEval("Extraneous", (), None) for e in evals)
    return SeriesRun(
        series=series,
        records=tuple(records),
        evals=final,
        targets=tuple(targets),
        target_status=tuple(status),
        satisfied_by=satisfied_by,
        next_target=t,
    )
