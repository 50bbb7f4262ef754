"""Select the best patient series of an antigen (spec chapter 8, Tables 8-2 to 8-14)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from sidflows.cdsi.dates import add_duration
from sidflows.cdsi.model import Series
from sidflows.cdsi.state import Context, SeriesRun
from sidflows.cdsi.types import SeriesForecast

__all__ = ["Candidate", "best_series", "prioritized_in_group", "scorable"]

_PRIORITY_RANK = {"A": 0, "B": 1, "C": 2, "D": 3}


class Candidate:
    """A relevant patient series with its evaluation and forecast.

    Built either from both (``Candidate(run, forecast, forecast_target)``) or by the
    engine with :meth:`lazy`, which evaluates and forecasts the series only when the
    selection first reads them: pure steps, so when (and whether) a series is run
    changes nothing in its result.
    """

    __slots__ = (
        "_evaluate",
        "_forecast",
        "_predict",
        "_run",
        "_target",
        "may_be_contraindicated",
        "series",
    )

    def __init__(
        self,
        run: SeriesRun,
        forecast: SeriesForecast,
        forecast_target: int,
        *,
        may_be_contraindicated: bool = True,
    ) -> None:
        self.series: Series = run.series
        self._run: SeriesRun | None = run
        self._forecast: SeriesForecast | None = forecast
        self._target = forecast_target
        self._evaluate: Callable[[], SeriesRun] | None = None
        self._predict: Callable[[SeriesRun], tuple[SeriesForecast, int]] | None = None
        self.may_be_contraindicated = may_be_contraindicated
        """False when no candidate of the antigen can forecast 'Contraindicated' (the
        patient has none of its contraindication observations)."""

    @classmethod
    def lazy(
        cls,
        series: Series,
        evaluate: Callable[[], SeriesRun],
        predict: Callable[[SeriesRun], tuple[SeriesForecast, int]],
        *,
        may_be_contraindicated: bool = True,
        run: SeriesRun | None = None,
    ) -> Candidate:
        """A candidate evaluated (``evaluate``, unless ``run`` is given) and forecast
        (``predict``) when first read."""
        self = cls.__new__(cls)
        self.series = series
        self._run = run
        self._forecast = None
        self._target = 0
        self._evaluate = evaluate
        self._predict = predict
        self.may_be_contraindicated = may_be_contraindicated
        return self

    @property
    def run(self) -> SeriesRun:
        run = self._run
        if run is None:
            assert self._evaluate is not None
            run = self._run = self._evaluate()
        return run

    @property
    def forecast(self) -> SeriesForecast:
        forecast = self._forecast
        if forecast is None:
            assert self._predict is not None
            forecast, self._target = self._predict(self.run)
            self._forecast = forecast
        return forecast

    @property
    def forecast_target(self) -> int:
        """Index of the target dose forecast (after forecast-time skips)."""
        if self._forecast is None:
            self.forecast  # noqa: B018 (computes the forecast and its target)
        return self._target

    @property
    def remaining(self) -> int:
        """Target doses still to satisfy (those skipped at forecast excluded)."""
        return max(len(self.run.targets) - self.forecast_target, 0)

    @property
    def complete(self) -> bool:
        """SELECTB-6."""
        return self.forecast.status == "Complete"

    @property
    def in_process(self) -> bool:
        """SELECTB-16."""
        return self.run.valid_count > 0 and self.forecast.status == "Not Complete"

    @property
    def default(self) -> bool:
        """SELECTB-7."""
        return self.series.default_series


def _rank(c: Candidate) -> int:
    return _PRIORITY_RANK.get(c.series.series_priority.upper(), 9)


def can_start(ctx: Context, c: Candidate) -> bool:
    """A series without valid doses cannot start before its minimum age to start
    (selectSeries ``minAgeToStart``); such a series is left out of its series group
    before section 8.1 (the test cases expect, e.g., no adult pneumococcal forecast for
    a child who completed the childhood series)."""
    start = ctx.age_bound(c.series.min_age_to_start, low=True)
    return start <= ctx.assessment_date or c.run.valid_count > 0


def scorable(ctx: Context, group: Sequence[Candidate]) -> list[Candidate]:
    """Section 8.1: SELECTB-24 (candidates) and SELECTSCORE-2 (scorable)."""
    if any(c.may_be_contraindicated for c in group):
        all_ci = all(c.forecast.status == "Contraindicated" for c in group)
        candidates = [c for c in group if c.forecast.status != "Contraindicated" or all_ci]
    else:
        candidates = list(group)  # none is contraindicated
    # A risk series forecast 'Aged Out' (it can no longer be completed) does not hold
    # the group's lower-priority risk series out of scoring, unless every risk series
    # of the group is aged out: the analogue, for SELECTSCORE-2's priority comparison,
    # of SELECTB-24's rule for 'Contraindicated' (see docs/cdsi.md).
    risks = [c for c in group if c.series.series_type == "Risk"]
    if risks:
        live = [c for c in risks if c.forecast.status != "Aged Out"]
        if live and len(live) < len(risks):
            candidates = [c for c in candidates if c.series.series_type != "Risk" or c in live]
            risks = live
    risk_rank = min((_rank(c) for c in risks), default=9)
    none_valid: bool | None = None  # computed when first needed
    has_default = any(c.default for c in group)
    out: list[Candidate] = []
    for c in candidates:
        series = c.series
        if series.series_type == "Risk":
            if _rank(c) <= risk_rank:
                out.append(c)
        elif series.series_type == "Standard":
            first = c.run.first_valid()
            if first is not None:
                if first.when < ctx.age_bound(series.max_age_to_start, low=False):
                    out.append(c)
            elif not has_default:
                if none_valid is None:
                    none_valid = all(m.run.valid_count == 0 for m in group)
                if none_valid:
                    out.append(c)
        elif c.complete:
            out.append(c)
    return out


def _finish_date(c: Candidate) -> date | None:
    """SELECTB-12: earliest date plus the minimum intervals of the remaining target doses."""
    if c.forecast.earliest is None:
        return None
    finish = c.forecast.earliest
    for target in c.run.targets[c.forecast_target + 1 :]:
        mins = [iv.min_int for iv in target.intervals if iv.from_previous and iv.min_int]
        if mins:
            finish = add_duration(finish, max(mins, key=lambda d: (d.months, d.days)))
    return finish


def _completable(ctx: Context, c: Candidate) -> bool:
    """SELECTB-3: the forecast finish date is before the maximum age date of the last
    target dose."""
    if c.forecast.status != "Not Complete":
        return False
    finish = _finish_date(c)
    if finish is None:
        return False
    last = c.run.targets[-1]
    age = last.age_on(ctx.assessment_date) or (last.ages[-1] if last.ages else None)
    if age is None or age.max_age is None:
        return True
    return finish < add_duration(ctx.patient.birth_date, age.max_age)


def _award(scores: list[int], flags: Sequence[bool], yes: int, tie: int | None, no: int) -> None:
    """One row of Tables 8-7, 8-9 or 8-11 (``tie`` is None where it reads 'n/a')."""
    many = sum(flags) >= 2
    for i, flag in enumerate(flags):
        if flag:
            scores[i] += tie if (many and tie is not None) else yes
        else:
            scores[i] += no


def _score(ctx: Context, pool: Sequence[Candidate], rules: str) -> Candidate:
    scores = [0] * len(pool)
    valid = [c.run.valid_count for c in pool]
    most_valid = [v >= max(valid) for v in valid]
    if rules == "complete":
        _award(scores, most_valid, 1, 0, -1)
    elif rules == "in-process":
        product_all_valid = [
            c.series.product_path
            and all(e.status == "Valid" for e in c.run.evals if e.target is not None)
            for c in pool
        ]
        completable = [_completable(ctx, c) for c in pool]
        remaining = [c.remaining for c in pool]
        closest = [r <= min(remaining) for r in remaining]
        finishes = [
            _finish_date(c) if ok else None for c, ok in zip(pool, completable, strict=True)
        ]
        known = [f for f in finishes if f is not None]
        earliest_finish = [f is not None and f <= min(known) for f in finishes]
        _award(scores, product_all_valid, 2, None, -2)
        _award(scores, completable, 3, None, -3)
        _award(scores, most_valid, 2, 0, -2)
        _award(scores, closest, 2, 0, -2)
        _award(scores, earliest_finish, 1, 0, -1)
    else:
        starts = [c.forecast.earliest for c in pool]
        known_starts = [s for s in starts if s is not None]
        start_earliest = [s is not None and s <= min(known_starts) for s in starts]
        _award(scores, start_earliest, 1, 0, -1)
        _award(scores, [_completable(ctx, c) for c in pool], 1, None, -1)
        _award(scores, [not c.series.product_path for c in pool], 1, None, -1)
    best = max(range(len(pool)), key=lambda i: (scores[i], -pool[i].series.series_preference))
    return pool[best]


def prioritized_in_group(ctx: Context, group: Sequence[Candidate]) -> Candidate | None:
    """Sections 8.2 to 8.7: the prioritized patient series of one series group."""
    group = [c for c in group if can_start(ctx, c)]
    pool = scorable(ctx, group)
    defaults = [c for c in group if c.default]
    if not pool:
        return defaults[0] if len(defaults) == 1 else None
    if len(pool) == 1:
        return pool[0]
    complete = [c for c in pool if c.complete]
    in_process = [c for c in pool if c.in_process]
    if len(complete) == 1:
        return complete[0]
    if not complete and len(in_process) == 1:
        return in_process[0]
    if not complete and not in_process and len(defaults) == 1 and defaults[0] in pool:
        return defaults[0]
    # Table 8-5.
    if len(complete) >= 2:
        return _score(ctx, complete, "complete")
    if len(in_process) >= 2:
        return _score(ctx, in_process, "in-process")
    if all(c.run.valid_count == 0 for c in pool):
        return _score(ctx, pool, "no-valid")
    return _score(ctx, pool, "in-process")


def best_series(
    ctx: Context,
    candidates: Sequence[Candidate],
    prioritize: Callable[[Context, Sequence[Candidate]], Candidate | None] | None = None,
) -> list[Candidate]:
    """Section 8.8 (Table 8-14): the best patient series across series groups."""
    prioritize = prioritize or prioritized_in_group
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.series.series_group, []).append(c)
    prioritized: dict[str, Candidate] = {}
    for name, members in groups.items():
        chosen = prioritize(ctx, members)
        if chosen is not None:
            prioritized[name] = chosen
    best: list[Candidate] = []
    for name, c in prioritized.items():
        equivalents = [
            prioritized[g]
            for g in c.series.equivalent_series_groups
            if g in prioritized and g != name
        ]
        if c.complete:
            best.append(c)
            continue
        if any(e.complete for e in equivalents):
            continue
        kind = c.series.series_type
        if kind == "Evaluation Only":
            continue
        if kind == "Risk" or not any(e.series.series_type == "Risk" for e in equivalents):
            best.append(c)
    return best
