"""Unit tests of the CDSi engine's steps against the decision tables of the
"Logic Specification for ACIP Recommendations" v4.6 (chapter and table in each docstring)."""

from __future__ import annotations

from datetime import date

import pytest

from sidflows.cdsi import AdministeredDose, Patient, PatientObservation, assess
from sidflows.cdsi.data import load, norm_cvx
from sidflows.cdsi.dates import Duration, add_duration, parse_duration
from sidflows.cdsi.evaluate import evaluate_age, evaluate_interval, is_allowable, is_preferable
from sidflows.cdsi.model import ConditionalSkip, SeriesDose, SkipCondition, SkipSet
from sidflows.cdsi.select import _award
from sidflows.cdsi.skip import can_skip, count_is_met
from sidflows.cdsi.state import Context, Record

D = date


def dur(text: str) -> Duration:
    parsed = parse_duration(text)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize(
    ("start", "amount", "expected"),
    [
        (D(2000, 1, 1), "3 years", D(2003, 1, 1)),  # CALCDT-1
        (D(2000, 1, 1), "6 months", D(2000, 7, 1)),  # CALCDT-2
        (D(2000, 11, 1), "6 months", D(2001, 5, 1)),  # CALCDT-2
        (D(2000, 1, 1), "3 days", D(2000, 1, 4)),  # CALCDT-3
        (D(2000, 1, 1), "3 weeks", D(2000, 1, 22)),  # CALCDT-3
        (D(2000, 2, 1), "5 weeks", D(2000, 3, 7)),  # CALCDT-3, leap year
        (D(2001, 2, 1), "5 weeks", D(2001, 3, 8)),  # CALCDT-3
        (D(2000, 1, 15), "0 days - 4 days", D(2000, 1, 11)),  # CALCDT-4
        (D(2000, 3, 31), "6 months", D(2000, 10, 1)),  # CALCDT-5
        (D(2000, 8, 31), "6 months", D(2001, 3, 1)),  # CALCDT-5
        (D(2000, 1, 31), "6 months - 4 days", D(2000, 7, 27)),  # CALCDT-6
    ],
)
def test_general_date_rules(start: date, amount: str, expected: date) -> None:
    """Section 3.4, Table 3-6 (CALCDT-1 to CALCDT-6), with the table's own examples."""
    assert add_duration(start, dur(amount)) == expected


def test_durations_of_the_supporting_data() -> None:
    """Section 3.4: supporting-data durations such as '18 years - 4 days' or
    '6 months + 4 weeks' combine years/months with weeks/days; empty is no value."""
    assert dur("18 years - 4 days") == Duration(216, -4, "18 years - 4 days")
    assert dur("6 months + 4 weeks") == Duration(6, 28, "6 months + 4 weeks")
    assert parse_duration("") is None
    assert parse_duration(None) is None
    with pytest.raises(ValueError, match="not a CDSi duration"):
        parse_duration("soon")


BIRTH = D(2020, 1, 1)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (D(2020, 2, 7), "too young"),  # before 6 weeks - 4 days
        (D(2020, 2, 8), "grace"),  # at the absolute minimum age
        (D(2020, 2, 11), "grace"),  # one day before the minimum age
        (D(2020, 2, 12), "valid"),  # at the minimum age
        (D(2020, 12, 31), "valid"),  # before the maximum age
        (D(2021, 1, 1), "too old"),  # at the maximum age: extraneous
    ],
)
def test_evaluate_age(given: date, expected: str) -> None:
    """Section 6.4, Table 6-15: absolute minimum age, minimum age (grace period) and
    maximum age (a dose at or after it is extraneous, 'Too old')."""
    result = evaluate_age(BIRTH, given, dur("6 weeks - 4 days"), dur("6 weeks"), dur("1 year"))
    assert result == expected


def test_evaluate_age_without_age_attributes_is_valid() -> None:
    """Section 6.4: a target dose without age attributes accepts any age (Table 6-14's
    assumed 01/01/1900 and 12/31/2999)."""
    assert evaluate_age(BIRTH, BIRTH, None, None, None) == "valid"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (D(2020, 1, 24), "too soon"),
        (D(2020, 1, 25), "grace"),
        (D(2020, 1, 28), "grace"),
        (D(2020, 1, 29), "valid"),
    ],
)
def test_evaluate_preferable_interval(given: date, expected: str) -> None:
    """Section 6.5, Table 6-18: before the absolute minimum interval is 'Too soon',
    between it and the minimum interval is the grace period, after is satisfied."""
    assert evaluate_interval(BIRTH, given, dur("4 weeks - 4 days"), dur("4 weeks")) == expected


@pytest.mark.parametrize(
    ("count", "logic", "wanted", "met"),
    [
        (2, "greater than", 1, True),
        (1, "greater than", 1, False),
        (1, "equal to", 1, True),
        (2, "equal to", 1, False),
        (0, "less than", 1, True),
        (1, "less than", 1, False),
    ],
)
def test_vaccine_count_condition(count: int, logic: str, wanted: int, met: bool) -> None:
    """Section 6.2, Table 6-9: the number of conditional doses against the dose count."""
    assert count_is_met(count, logic, wanted) is met


def _age_condition(begin: str) -> SkipCondition:
    return SkipCondition(
        "1", "age", None, None, dur(begin), None, None, None, None, None, frozenset(), ()
    )


def _target(skip: ConditionalSkip) -> SeriesDose:
    return SeriesDose(2, (), (), (), (), (), frozenset(), (skip,), False, None, None)


def _ctx() -> Context:
    return Context(Patient(BIRTH, "F"), D(2025, 1, 1), {}, (), load())


@pytest.mark.parametrize(
    ("set_logic", "condition_logic", "given", "skipped"),
    [
        ("N/A", "AND", D(2024, 1, 1), True),  # 4 years and 1 year: both met
        ("N/A", "AND", D(2022, 1, 1), False),  # only '1 year' met: AND fails
        ("N/A", "OR", D(2022, 1, 1), True),  # one met is enough for OR
        ("OR", "AND", D(2020, 6, 1), False),  # none met
    ],
)
def test_conditional_skip_sets(
    set_logic: str, condition_logic: str, given: date, skipped: bool
) -> None:
    """Section 6.2, Tables 6-6 (age condition), 6-10 (is the set met?) and 6-11 (can the
    target dose be skipped?)."""
    conditions = (_age_condition("4 years"), _age_condition("1 year"))
    skip_set = SkipSet("1", "", None, None, condition_logic, conditions)
    target = _target(ConditionalSkip("Evaluation", set_logic, (skip_set,)))
    result = can_skip(_ctx(), target, "Evaluation", given, None, (), lambda _group: False)
    assert result is skipped


def test_conditional_skip_context() -> None:
    """Section 6.2: only skips with a context of Evaluation or Both apply in evaluation
    (and Forecast or Both in forecasting, section 7.1)."""
    skip_set = SkipSet("1", "", None, None, "AND", (_age_condition("1 year"),))
    target = _target(ConditionalSkip("Forecast", "N/A", (skip_set,)))
    ctx = _ctx()
    assert not can_skip(ctx, target, "Evaluation", D(2024, 1, 1), None, (), lambda _g: False)
    assert can_skip(ctx, target, "Forecast", D(2024, 1, 1), None, (), lambda _g: False)


def _record(cvx: str, when: date, mvx: str | None = None) -> Record:
    return Record(0, AdministeredDose("1", cvx, when, mvx), norm_cvx(cvx), when)


def test_preferable_and_allowable_vaccines() -> None:
    """Sections 6.8 and 6.9, Tables 6-26 and 6-28: the vaccine type within its age range
    (HepB dose 1: Hep B adult, CVX 43, is preferable from 20 years, allowable from 0)."""
    hepb = load().antigens["HepB"].series[0].doses[0]
    ctx = _ctx()
    infant = _record("43", D(2020, 2, 1))
    assert not is_preferable(hepb, ctx, infant)
    assert is_allowable(hepb, ctx, infant)
    assert is_preferable(hepb, ctx, _record("08", D(2020, 2, 1)))
    assert not is_allowable(hepb, ctx, _record("03", D(2020, 2, 1)))


def _statuses(birth: date, doses: list[tuple[str, date]], on: date, group: str) -> list[str]:
    result = assess(
        Patient(birth, "F"),
        [AdministeredDose(str(i), cvx, when) for i, (cvx, when) in enumerate(doses, 1)],
        on,
        vaccine_groups=[group],
    )
    return [status for _id, status, _reasons in result.vaccine_groups[group].dose_statuses]


def test_live_virus_conflict() -> None:
    """Section 6.7, Table 6-24 (CONFLICT-3): varicella 20 days after MMR is in conflict;
    given the same day or 28 days later it is not."""
    birth = D(2020, 1, 1)
    conflict = _statuses(
        birth, [("03", D(2021, 2, 1)), ("21", D(2021, 2, 21))], D(2021, 3, 1), "Varicella"
    )
    assert conflict == ["Not Valid"]
    later = _statuses(
        birth, [("03", D(2021, 2, 1)), ("21", D(2021, 3, 1))], D(2021, 3, 1), "Varicella"
    )
    assert later == ["Valid"]


def test_inadvertent_vaccine() -> None:
    """Section 6.3, Table 6-13: a vaccine listed as inadvertent for the target dose is
    'Not Valid' (Polio: OPV bivalent, CVX 178)."""
    assert _statuses(D(2020, 1, 1), [("178", D(2020, 3, 1))], D(2020, 4, 1), "Polio") == [
        "Not Valid"
    ]


def test_too_young_then_valid_and_extraneous() -> None:
    """Section 6.10, Table 6-31 with section 4.4: a dose before the absolute minimum age
    is 'Not Valid'; doses after the series is complete are 'Extraneous'."""
    birth = D(2020, 1, 1)
    doses = [
        ("83", D(2020, 6, 1)),
        ("83", D(2021, 1, 1)),
        ("83", D(2021, 7, 1)),
        ("83", D(2022, 1, 1)),
    ]
    assert _statuses(birth, doses, D(2022, 2, 1), "HepA") == [
        "Not Valid",
        "Valid",
        "Valid",
        "Extraneous",
    ]


def test_forecast_dates_of_a_newborn() -> None:
    """Section 7.5, Table 7-13 (FORECASTDT-1 to -6): earliest = minimum age (6 weeks),
    recommended = earliest recommended age (2 months), past due = latest recommended
    age (3 months + 4 weeks) minus one day (CDC test case 2013-0001)."""
    birth = D(2025, 11, 10)
    result = assess(Patient(birth, "F"), [], birth, vaccine_groups=["DTaP/Tdap/Td"])
    forecast = result.vaccine_groups["DTaP/Tdap/Td"]
    assert forecast.status == "Not Complete"
    assert (forecast.earliest, forecast.recommended, forecast.past_due) == (
        D(2025, 12, 22),
        D(2026, 1, 10),
        D(2026, 3, 9),
    )


def test_no_candidate_earliest_date_ages_the_series_out() -> None:
    """Tables 7-9 and 7-10: when FORECASTDTCAN-1 finds no date at all, the candidate
    earliest date is assumed 12/31/2999, not before the maximum age date (also 12/31/2999
    when the target dose has none), so the series is 'Aged Out'. The 'Meningococcal ACWY
    risk 2-23 month' series skips doses 1-3 from 7 months (7.1); its dose 4 has no
    minimum age and, with no dose given, no interval to count from. Table 8-11 then
    scores the series that can start: the risk 2-dose series for an adult with asplenia
    (160), dose 1 at 2 years; the Hib-MenCY-TT series for a 7-month-old in an outbreak
    (070), dose 1 at 2 months."""
    adult = Patient(D(1990, 3, 5), "F")
    result = assess(
        adult, [], D(2020, 6, 1), [PatientObservation("160")], vaccine_groups=["Meningococcal"]
    )
    (best,) = result.antigens["Meningococcal"].best_series
    assert best.series_name == "Meningococcal ACWY risk 2-dose series"
    group = result.vaccine_groups["Meningococcal"]
    assert (group.status, group.earliest) == ("Not Complete", D(1992, 3, 5))
    infant = Patient(D(2020, 1, 20), "M")
    result = assess(
        infant, [], D(2020, 8, 20), [PatientObservation("070")], vaccine_groups=["Meningococcal"]
    )
    (best,) = result.antigens["Meningococcal"].best_series
    assert best.series_name == "Meningococcal ACWY risk Hib-MenCY-TT 4-dose series"
    assert (best.forecast_dose_number, best.earliest) == (1, D(2020, 3, 20))
    # With a dose given before 7 months, dose 4 counts 8 weeks from it: not aged out.
    given = [AdministeredDose("1", "136", D(2020, 3, 20))]
    result = assess(
        infant, given, D(2020, 8, 20), [PatientObservation("160")], vaccine_groups=["Meningococcal"]
    )
    names = [f.series_name for f in result.antigens["Meningococcal"].best_series]
    assert result.vaccine_groups["Meningococcal"].status == "Not Complete", names


def test_aged_out_risk_series_does_not_hold_lower_priorities_out() -> None:
    """Section 8.1: a priority-A risk series forecast 'Aged Out' (the 'risk 2-23 month'
    series of a child past 2 years with no dose, see above) leaves SELECTSCORE-2's
    priority comparison, as SELECTB-24 leaves out a contraindicated one: the priority-B
    'risk 1-dose series' is then scored and forecast (outbreak, 070: one dose from
    2 years). While the priority-A series can still be completed, it holds B out."""
    child = Patient(D(2019, 5, 6), "M")
    outbreak = [PatientObservation("070")]
    result = assess(child, [], D(2021, 11, 20), outbreak, vaccine_groups=["Meningococcal"])
    (best,) = result.antigens["Meningococcal"].best_series
    assert best.series_name == "Meningococcal ACWY risk 1-dose series"
    group = result.vaccine_groups["Meningococcal"]
    assert (group.status, group.forecast_dose_number, group.earliest) == (
        "Not Complete",
        1,
        D(2021, 5, 6),
    )
    given = [AdministeredDose("1", "136", D(2019, 7, 6))]
    result = assess(child, given, D(2021, 11, 20), outbreak, vaccine_groups=["Meningococcal"])
    names = [f.series_name for f in result.antigens["Meningococcal"].best_series]
    assert names == ["Meningococcal ACWY risk 2-23 month"]


def test_evidence_of_immunity() -> None:
    """Section 7.2, Table 7-3: born before 1957 is immune to measles unless an exclusion
    (health care personnel, 055) applies; a lab-evidence guideline code (020) makes
    anyone immune."""
    old = Patient(D(1950, 1, 1), "M")
    on = D(2020, 1, 1)
    measles = assess(old, [], on, vaccine_groups=["MMR"]).antigens["Measles"]
    assert measles.best_series[0].status == "Immune"
    worker = assess(old, [], on, [PatientObservation("055")], vaccine_groups=["MMR"])
    assert worker.antigens["Measles"].best_series[0].status != "Immune"
    young = Patient(D(2000, 1, 1), "M")
    lab = assess(young, [], on, [PatientObservation("020")], vaccine_groups=["MMR"])
    assert lab.antigens["Measles"].best_series[0].status == "Immune"


def test_antigen_contraindication() -> None:
    """Section 7.3, Tables 7-5 and 7-7: an antigen contraindication (080, adverse reaction
    to a vaccine component) makes every series contraindicated, and the vaccine group too
    (Table 9-4)."""
    result = assess(
        Patient(D(2020, 1, 1), "F"),
        [],
        D(2020, 6, 1),
        [PatientObservation("080")],
        vaccine_groups=["DTaP/Tdap/Td"],
    )
    assert result.vaccine_groups["DTaP/Tdap/Td"].status == "Contraindicated"


def test_vaccine_contraindication_leaves_other_vaccines() -> None:
    """Section 7.3, Tables 7-6 and 7-7: a vaccine contraindication (079, encephalopathy
    after a pertussis vaccine) contraindicates the series only when every vaccine its
    target dose accepts is contraindicated; otherwise the contraindicated vaccines are
    only left out of the recommended ones (FORECASTRECVAC-1)."""
    result = assess(
        Patient(D(2011, 2, 2), "F"),
        [AdministeredDose("1", "110", D(2011, 4, 2))],
        D(2011, 4, 2),
        [PatientObservation("079")],
        vaccine_groups=["DTaP/Tdap/Td"],
    )
    group = result.vaccine_groups["DTaP/Tdap/Td"]
    assert group.status == "Not Complete"
    assert (group.earliest, group.recommended) == (D(2011, 4, 30), D(2011, 6, 2))
    assert "110" not in group.vaccines


def test_scoring_rows() -> None:
    """Section 8.5, Table 8-9: a condition true for one series scores +n, true for two or
    more scores the tie value (0), untrue scores -n; 'n/a' ties keep +n."""
    scores = [0, 0, 0]
    _award(scores, [True, False, False], 2, 0, -2)
    assert scores == [2, -2, -2]
    scores = [0, 0, 0]
    _award(scores, [True, True, False], 2, 0, -2)
    assert scores == [0, 0, -2]
    scores = [0, 0]
    _award(scores, [True, True], 3, None, -3)
    assert scores == [3, 3]


def test_supporting_data_is_parsed_once() -> None:
    """The supporting data 4.64 (every antigen, the schedule data) loads once, cached."""
    data = load()
    assert data is load()
    assert len(data.antigens) == 30
    assert data.vaccine_groups["MMR"].antigens == ("Measles", "Mumps", "Rubella")
    assert [a.antigen for a in data.cvx_map["94"]] == ["Measles", "Mumps", "Rubella", "Varicella"]
