"""The CDSi engine: from a patient, the doses and the observations to the forecasts.

Chapter 4's processing model: 4.1 gather data, 4.2 organise the immunisation history by
antigen, 4.3 (chapter 5) create the relevant patient series, 4.4 evaluate (chapter 6) and
forecast (chapter 7) each, 4.5 select the best patient series (chapter 8), 4.6 (chapter 9)
the vaccine group forecasts. Pure: no clock, no I/O besides the cached supporting data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from sidflows.cdsi.data import load, norm_cvx
from sidflows.cdsi.evaluate import evaluate_series
from sidflows.cdsi.forecast import contraindicable, forecast_series
from sidflows.cdsi.model import Antigen, Series, SupportingData, VaccineGroup
from sidflows.cdsi.select import Candidate, best_series
from sidflows.cdsi.state import Context, Record, SeriesRun, age_date
from sidflows.cdsi.types import (
    AdministeredDose,
    AntigenEvaluation,
    Assessment,
    DoseResult,
    EvaluationStatus,
    Patient,
    PatientObservation,
    SeriesForecast,
    SeriesStatus,
    VaccineGroupForecast,
)

__all__ = ["Assessor", "assess", "organize_history", "relevant_series"]

_GENDER = {"F": "Female", "M": "Male", "U": "Unknown"}


def organize_history(
    data: SupportingData, patient: Patient, doses: Sequence[AdministeredDose]
) -> tuple[tuple[Record, ...], dict[str, list[Record]]]:
    """Section 4.2: split each dose into antigen administered records (CVX-to-antigen map
    with association ages), sorted by date within each antigen."""
    ordered = sorted(enumerate(doses), key=lambda pair: (pair[1].date_administered, pair[0]))
    history: list[Record] = []
    by_antigen: dict[str, list[Record]] = {}
    birth = patient.birth_date
    for position, (_, dose) in enumerate(ordered):
        cvx = norm_cvx(dose.cvx)
        when = dose.date_administered
        substandard = dose.dose_condition or (
            dose.lot_expiration is not None and when > dose.lot_expiration
        )
        record = Record(position, dose, cvx, when, substandard)
        history.append(record)
        for assoc in data.cvx_map.get(cvx, ()):
            if not (
                age_date(birth, assoc.begin_age, low=True)
                <= when
                < age_date(birth, assoc.end_age, low=False)
            ):
                continue
            by_antigen.setdefault(assoc.antigen, []).append(record)
    return tuple(history), by_antigen


def relevant_series(ctx: Context, antigen: Antigen) -> list[Series]:
    """Section 5.1 (Tables 5-4 and 5-5): gender, series type and indications."""
    gender = _GENDER.get(ctx.patient.gender, "Unknown")
    observations = ctx.observations
    out: list[Series] = []
    upcoming: list[Series] = []
    for series in antigen.series:
        if series.required_genders and gender not in series.required_genders:
            continue
        if series.series_type in ("Standard", "Evaluation Only"):
            out.append(series)
            continue
        if series.indication_codes.isdisjoint(observations):
            continue  # no indication observed: neither relevant nor upcoming
        soon = False
        for ind in series.indications:
            if ind.observation_code not in observations:
                continue
            begin = ctx.age_bound(ind.begin_age, low=True)
            end = ctx.age_bound(ind.end_age, low=False)
            if begin <= ctx.assessment_date < end:
                out.append(series)
                break
            soon = soon or ctx.assessment_date < begin
        else:
            if soon:
                upcoming.append(series)
    # An antigen with no relevant series at all whose risk indication the patient
    # will reach (observation present, begin age still ahead): CDC forecasts that
    # series for its begin age (dengue at 9 years) rather than nothing.
    return out or upcoming


def _antigen_candidates(
    ctx: Context, antigen: Antigen, series_list: Sequence[Series], records: Sequence[Record]
) -> list[Candidate]:
    """Section 4.4 for every relevant series; 'Completed Series' skip conditions (Table
    6-7) are answered by evaluating the named series group first.

    When the order the series run in cannot matter (``Antigen.order_free``: no series of
    a named series group names one itself), each series is evaluated and forecast only
    when the selection (chapter 8) first reads it; otherwise all run now, in order.
    """
    may_ci = dict(
        zip((s.name for s in series_list), contraindicable(ctx, antigen, series_list), strict=True)
    )
    busy: set[str] = set()
    if antigen.order_free:
        lazy: dict[str, Candidate] = {}

        def lazy_group_complete(group: str) -> bool:
            for other in series_list:
                if other.series_group != group or other.name in busy:
                    continue
                if lazy[other.name].forecast.status == "Complete":
                    return True
            return False

        def candidate(series: Series) -> Candidate:
            def evaluate() -> SeriesRun:
                busy.add(series.name)
                try:
                    return evaluate_series(ctx, series, records, lazy_group_complete)
                finally:
                    busy.discard(series.name)

            def predict(run: SeriesRun) -> tuple[SeriesForecast, int]:
                busy.add(series.name)
                try:
                    return forecast_series(ctx, antigen, run, lazy_group_complete)
                finally:
                    busy.discard(series.name)

            # No records: the evaluation is immediate and asks no series group.
            run = (
                evaluate_series(ctx, series, records, lazy_group_complete) if not records else None
            )
            return Candidate.lazy(
                series, evaluate, predict, may_be_contraindicated=may_ci[series.name], run=run
            )

        for series in series_list:
            lazy[series.name] = candidate(series)
        return [lazy[series.name] for series in series_list]

    done: dict[str, Candidate] = {}

    def run(series: Series) -> Candidate:
        if series.name in done:
            return done[series.name]
        busy.add(series.name)
        ev = evaluate_series(ctx, series, records, group_complete)
        fc, target = forecast_series(ctx, antigen, ev, group_complete)
        busy.discard(series.name)
        cand = Candidate(ev, fc, target, may_be_contraindicated=may_ci[series.name])
        done[series.name] = cand
        return cand

    def group_complete(group: str) -> bool:
        for other in series_list:
            if other.series_group != group or other.name in busy:
                continue
            if run(other).forecast.status == "Complete":
                return True
        return False

    return [run(series) for series in series_list]


_PREFERENCE = {"Valid": 0, "Not Valid": 1, "Sub standard": 2, "Extraneous": 3}


def _dose_results(antigen: str, best: Sequence[Candidate]) -> tuple[DoseResult, ...]:
    """Each dose's evaluation in the best patient series; where several best series
    (non-equivalent series groups) evaluated it, the one that counts it the most
    (Valid, then Not Valid, then Extraneous) is reported."""
    chosen: dict[int, DoseResult] = {}
    for cand in best:
        for record, ev in zip(cand.run.records, cand.run.evals, strict=True):
            result = DoseResult(
                dose_id=record.dose.dose_id,
                antigen=antigen,
                series_name=cand.run.series.name,
                target_dose=None if ev.target is None else ev.target + 1,
                status=ev.status,
                reasons=ev.reasons,
            )
            current = chosen.get(record.position)
            if current is None or _PREFERENCE[ev.status] < _PREFERENCE[current.status]:
                chosen[record.position] = result
    return tuple(chosen[k] for k in sorted(chosen))


def _group_status(forecasts: Sequence[SeriesForecast], single: bool) -> SeriesStatus:
    """Table 9-4 (and SINGLEANTVG-1 when there is one forecast)."""
    statuses = [f.status for f in forecasts]
    if len(statuses) == 1:
        return statuses[0]
    if single:
        # Several best series of one antigen (non-equivalent series groups): the
        # patient needs a dose if any of them still does, unless a risk series that
        # completes the antigen (the HepA travel dose) is among them.
        if any(f.status == "Complete" and f.series_type == "Risk" for f in forecasts):
            return "Complete"
        order: tuple[SeriesStatus, ...] = (
            "Contraindicated",
            "Not Complete",
            "Complete",
            "Immune",
            "Aged Out",
        )
        for status in order:
            if status in statuses:
                return status
        return statuses[0]
    table: tuple[SeriesStatus, ...] = (
        "Contraindicated",
        "Aged Out",
        "Not Recommended",
        "Not Complete",
    )
    for status in table:
        if status in statuses:
            return status
    if all(s == "Immune" for s in statuses):
        return "Immune"
    return "Complete"


def _combine_dose(statuses: Sequence[EvaluationStatus]) -> EvaluationStatus:
    if "Not Valid" in statuses:
        return "Not Valid"
    if "Valid" in statuses:
        return "Valid"
    if "Sub standard" in statuses:
        return "Sub standard"
    return "Extraneous"


def _soonest(forecast: SeriesForecast) -> date:
    return forecast.earliest or date.max


def _group_forecast(
    group: VaccineGroup,
    antigens: dict[str, AntigenEvaluation],
    history: Sequence[Record],
    data: SupportingData,
) -> VaccineGroupForecast | None:
    present = [antigens[a] for a in group.antigens if a in antigens]
    if not present:
        return None
    forecasts = [f for a in present for f in a.best_series]
    per_dose: dict[str, list[tuple[EvaluationStatus, tuple[str, ...]]]] = {}
    order: list[str] = []
    for a in present:
        for d in a.doses:
            if d.dose_id not in per_dose:
                per_dose[d.dose_id] = []
                order.append(d.dose_id)
            per_dose[d.dose_id].append((d.status, d.reasons))
    dose_statuses = tuple(
        (
            dose_id,
            _combine_dose([s for s, _ in per_dose[dose_id]]),
            tuple(r for _, rs in per_dose[dose_id] for r in rs),
        )
        for dose_id in order
    )
    reasons = tuple(r for f in forecasts for r in f.reasons)
    if not forecasts:
        return VaccineGroupForecast(
            group.name, "Not Recommended", None, None, None, None, None, reasons, dose_statuses
        )
    status = _group_status(forecasts, len(group.antigens) == 1)
    due = [f for f in forecasts if f.status == "Not Complete" and f.earliest is not None]
    if len(group.antigens) > 1:
        # Several best series of one antigen (non-equivalent series groups, e.g. the
        # measles travel dose beside the 2-dose series): that antigen is due at the
        # earliest of them (SINGLEANTVG-2) before the group combines its antigens.
        soonest: dict[str, SeriesForecast] = {}
        for f in due:
            held = soonest.get(f.antigen)
            if held is None or _soonest(f) < _soonest(held):
                soonest[f.antigen] = f
        due = list(soonest.values())
    if status != "Not Complete" or not due:
        return VaccineGroupForecast(
            group.name, status, None, None, None, None, None, reasons, dose_statuses
        )
    earliest_dates = [f.earliest for f in due if f.earliest is not None]
    if len(group.antigens) > 1:
        # MULTIANTVG-1 with FORECASTPRIORITY-1.
        if any(f.priority for f in due):
            group_cvx = data.group_cvx.get(group.name)
            if group_cvx is None or data.vaccine_groups.get(group.name) is not group:
                group_cvx = frozenset(
                    cvx
                    for cvx, assocs in data.cvx_map.items()
                    if any(x.antigen in group.antigens for x in assocs)
                )
            latest_given = max(
                (r.when for r in history if r.cvx in group_cvx), default=min(earliest_dates)
            )
            earliest = max(min(earliest_dates), latest_given)
        else:
            earliest = max(earliest_dates)
    else:
        earliest = min(earliest_dates)  # SINGLEANTVG-2
    recs = [f.recommended for f in due if f.recommended is not None]
    recommended = max(min(recs), earliest) if recs else earliest  # FORECASTVG-2
    dues = [f.past_due for f in due if f.past_due is not None]
    past_due = max(min(dues), earliest) if dues else None  # FORECASTVG-3
    latests = [f.latest for f in due if f.latest is not None]
    numbers = [f.forecast_dose_number for f in due if f.forecast_dose_number is not None]
    number = None
    if numbers:
        number = min(numbers) if group.administer_full_vaccine_group else max(numbers)
    vaccines = tuple(dict.fromkeys(cvx for f in due for cvx in f.vaccines))
    return VaccineGroupForecast(
        vaccine_group=group.name,
        status=status,
        forecast_dose_number=number,
        earliest=earliest,
        recommended=recommended,
        past_due=past_due,
        latest=min(latests) if latests else None,
        reasons=reasons,
        dose_statuses=dose_statuses,
        vaccines=vaccines,
    )


class Assessor:
    """One patient on one assessment date, assessed a vaccine group at a time.

    The history is organised once (section 4.2); each antigen is evaluated and
    forecast the first time a vaccine group needs it, then kept. ``group(name)`` is
    exactly ``assess(..., vaccine_groups=[name]).vaccine_groups.get(name)``: the
    antigens of a vaccine group do not depend on which other groups are assessed.
    """

    __slots__ = ("_antigens", "by_antigen", "ctx", "data")

    def __init__(
        self,
        patient: Patient,
        doses: Sequence[AdministeredDose],
        assessment_date: date,
        observations: Iterable[PatientObservation] = (),
        *,
        data: SupportingData | None = None,
    ) -> None:
        data = data or load()
        obs: dict[str, date | None] = {}
        for o in observations:
            code = o.code.strip()
            if code.isdigit():
                code = code.zfill(3)
            obs[code] = o.observed_on or obs.get(code)
        history, by_antigen = organize_history(data, patient, doses)
        self.data = data
        self.ctx = Context(patient, assessment_date, obs, history, data)
        self.by_antigen = by_antigen
        self._antigens: dict[str, AntigenEvaluation | None] = {}

    def antigen(self, name: str) -> AntigenEvaluation | None:
        """Chapters 5 to 8 for one antigen (None: unknown, or no relevant series)."""
        if name in self._antigens:
            return self._antigens[name]
        result: AntigenEvaluation | None = None
        antigen = self.data.antigens.get(name)
        if antigen is not None:
            ctx = self.ctx
            series_list = relevant_series(ctx, antigen)
            if series_list:
                records = self.by_antigen.get(name, [])
                candidates = _antigen_candidates(ctx, antigen, series_list, records)
                best = best_series(ctx, candidates)
                result = AntigenEvaluation(
                    antigen=name,
                    best_series=tuple(c.forecast for c in best),
                    doses=_dose_results(name, best),
                )
        self._antigens[name] = result
        return result

    def group(self, name: str) -> VaccineGroupForecast | None:
        """Chapter 9 for one vaccine group (None: none of its antigens has a forecast)."""
        group = self.data.vaccine_groups[name]
        antigens = {a: ev for a in group.antigens if (ev := self.antigen(a)) is not None}
        return _group_forecast(group, antigens, self.ctx.history, self.data)


def assess(
    patient: Patient,
    doses: Sequence[AdministeredDose],
    assessment_date: date,
    observations: Iterable[PatientObservation] = (),
    *,
    vaccine_groups: Iterable[str] | None = None,
    data: SupportingData | None = None,
) -> Assessment:
    """Evaluate every dose and forecast every vaccine group (or only ``vaccine_groups``)."""
    assessor = Assessor(patient, doses, assessment_date, observations, data=data)
    data = assessor.data
    if vaccine_groups is None:
        groups = list(data.vaccine_groups.values())
    else:
        groups = [data.vaccine_groups[name] for name in vaccine_groups]
    antigens: dict[str, AntigenEvaluation] = {}
    for group in groups:
        for name in group.antigens:
            if name in antigens:
                continue
            evaluation = assessor.antigen(name)
            if evaluation is not None:
                antigens[name] = evaluation
    forecasts: dict[str, VaccineGroupForecast] = {}
    for group in groups:
        result = _group_forecast(group, antigens, assessor.ctx.history, data)
        if result is not None:
            forecasts[group.name] = result
    return Assessment(assessment_date, antigens, forecasts)
