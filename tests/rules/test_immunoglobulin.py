"""Immunoglobulin replacement: docs/clinical-reference.md §3 as tables of clinical cases."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import pytest
from conftest_rules import (
    CALENDAR,
    HORIZON_END,
    PROTOCOL,
    START,
    TODAY,
    ago,
    ahead,
    born,
    context_for,
    decisions_text,
    ig_dose,
    infection,
    items_of,
    lab,
    make_referral,
    plan_for,
    treatment,
    with_protocol,
)

from sidflows.calendar import add_months
from sidflows.planning import propose_plan
from sidflows.referral import ReferralDocument
from sidflows.rules.ig_schedule import session_minutes
from sidflows.rules.immunoglobulin import (
    IgDecision,
    decide_immunoglobulin,
    dose_for,
    round_to_vials,
)
from sidflows.rules.model import IgSession, IgTrough

IV = PROTOCOL.immunoglobulin.iv
SC = PROTOCOL.immunoglobulin.sc


def _decide(**fields: Any) -> IgDecision:
    referral = make_referral(**fields)
    return decide_immunoglobulin(context_for(referral))


def _decisions_text(ig: IgDecision) -> str:
    return " | ".join(f"{d.decision} {d.rationale}" for d in ig.decisions)


def _igg(value: float, **more: float) -> list[dict[str, Any]]:
    return [lab(ago(days=10), igg_g_l=value, **more)]


TWO_MILD = [infection(ago(months=2)), infection(ago(months=5))]
ONE_SERIOUS = [infection(ago(months=3), serious=True, kind="pneumonia")]
# Off every treatment, B cells back: the only case in which a trial off is allowed.
RECOVERED_B_CELLS = [lab(ago(days=10), igg_g_l=6.5, cd19_per_ul=250, cd19_lower_limit_per_ul=100)]

# (id citing docs/clinical-reference.md, referral fields, expected status)
INDICATION_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "§3 IgG 1.4 g/L, no infection -> start (AAAAI: < 1.5 whatever the infections)",
        {"labs": _igg(1.4)},
        "start",
    ),
    (
        "§3 IgG 1.5 g/L, no infection -> not indicated (1.5 is not < 1.5)",
        {"labs": _igg(1.5)},
        "not_indicated",
    ),
    (
        "§3 IgG 3.9 g/L + one serious infection -> start (EMA: < 4 with severe infection)",
        {"labs": _igg(3.9), "infections": ONE_SERIOUS},
        "start",
    ),
    (
        "§3 IgG 3.9 g/L + 2 infections in 12 months -> start (EMA: < 4 with recurrent)",
        {"labs": _igg(3.9), "infections": TWO_MILD},
        "start",
    ),
    (
        "§3 IgG 3.9 g/L + one mild infection -> not indicated (neither severe nor recurrent)",
        {"labs": _igg(3.9), "infections": TWO_MILD[:1]},
        "not_indicated",
    ),
    (
        "§3 IgG 3.9 g/L + 2 infections more than 12 months ago -> not indicated",
        {"labs": _igg(3.9), "infections": [infection(ago(months=13)), infection(ago(months=14))]},
        "not_indicated",
    ),
    (
        "§3 IgG 4.0 g/L + 2 infections -> not indicated (EMA threshold is < 4)",
        {"labs": _igg(4.0), "infections": TWO_MILD},
        "not_indicated",
    ),
    (
        "§3 IgG 3.0 g/L, no infection -> not indicated (low IgG without infections)",
        {"labs": _igg(3.0)},
        "not_indicated",
    ),
    ("§3 IgG 8 g/L, no infection -> not indicated", {"labs": _igg(8.0)}, "not_indicated"),
    (
        "§3 antibody failure (1.5-fold) + recurrent infections, IgG normal -> start",
        {"labs": _igg(7.0, pneumococcal_fold_rise=1.5), "infections": TWO_MILD},
        "start",
    ),
    (
        "§3 antibody failure (1.5-fold) + one infection -> not indicated (needs recurrent)",
        {"labs": _igg(7.0, pneumococcal_fold_rise=1.5), "infections": TWO_MILD[:1]},
        "not_indicated",
    ),
    (
        "§3 2-fold rise is not a failure, even with recurrent infections -> not indicated",
        {"labs": _igg(7.0, pneumococcal_fold_rise=2.0), "infections": TWO_MILD},
        "not_indicated",
    ),
    ("§3 no IgG result -> no data", {"labs": [lab(ago(days=10), cd19_per_ul=50)]}, "no_data"),
    ("§3 no lab at all -> no data", {}, "no_data"),
    (
        "§3 the latest IgG decides: 1.2 g/L last year, 6.0 last week -> not indicated",
        {"labs": [lab(ago(months=12), igg_g_l=1.2), lab(ago(days=7), igg_g_l=6.0)]},
        "not_indicated",
    ),
    (
        "§3 on IV replacement (last dose 3 weeks ago) -> continue, whatever the IgG",
        {"labs": _igg(9.0), "immunoglobulin_doses": [ig_dose(ago(days=21))]},
        "continue",
    ),
    (
        "§3 on SC replacement (last dose 6 days ago) -> continue",
        {"labs": _igg(9.0), "immunoglobulin_doses": [ig_dose(ago(days=6), 0.1, "sc")]},
        "continue",
    ),
    (
        "§3 last IV dose 57 days ago (over 2 intervals): no longer on replacement -> decide afresh",
        {"labs": _igg(9.0), "immunoglobulin_doses": [ig_dose(ago(days=57))]},
        "not_indicated",
    ),
    (
        "§3 trial off: on IG, cause ended, CD19 >= lab lower limit -> trial off",
        {
            "treatments": [treatment("rituximab", "anti_cd20", ago(months=12), ago(months=11))],
            "labs": RECOVERED_B_CELLS,
            "immunoglobulin_doses": [ig_dose(ago(days=20))],
        },
        "trial_off",
    ),
    (
        "§3 no trial off while a treatment continues (CD19 recovered) -> continue",
        {
            "treatments": [
                treatment("methotrexate", "antimetabolite", ago(months=12), dose_mg_per_kg_week=0.3)
            ],
            "labs": RECOVERED_B_CELLS,
            "immunoglobulin_doses": [ig_dose(ago(days=20))],
        },
        "continue",
    ),
    (
        "§3 no trial off while a treatment is planned -> continue",
        {
            "treatments": [
                treatment("rituximab", "anti_cd20", ahead(months=1), ahead(months=1, days=14))
            ],
            "labs": RECOVERED_B_CELLS,
            "immunoglobulin_doses": [ig_dose(ago(days=20))],
        },
        "continue",
    ),
    (
        "§3/§6 no trial off inside the 6-month anti-CD20 depletion window -> continue",
        {
            "treatments": [treatment("rituximab", "anti_cd20", ago(months=5), ago(months=4))],
            "labs": RECOVERED_B_CELLS,
            "immunoglobulin_doses": [ig_dose(ago(days=20))],
        },
        "continue",
    ),
    (
        "§3 no trial off when CD19 is below the lab lower limit -> continue",
        {
            "labs": [lab(ago(days=10), igg_g_l=6.5, cd19_per_ul=80, cd19_lower_limit_per_ul=100)],
            "immunoglobulin_doses": [ig_dose(ago(days=20))],
        },
        "continue",
    ),
    (
        "§2.13 the lab gives no CD19 lower limit: 900/uL judged against Hill 2019 -> trial off",
        {
            "labs": [lab(ago(days=10), igg_g_l=6.5, cd19_per_ul=900)],
            "immunoglobulin_doses": [ig_dose(ago(days=20))],
        },
        "trial_off",
    ),
    (
        "§3 no trial off without a CD19 count -> continue",
        {"labs": _igg(6.5), "immunoglobulin_doses": [ig_dose(ago(days=20))]},
        "continue",
    ),
]


@pytest.mark.parametrize(
    ("fields", "status"), [pytest.param(f, s, id=case) for case, f, s in INDICATION_CASES]
)
def test_immunoglobulin_indication(fields: dict[str, Any], status: str) -> None:
    """Start, continue, trial off, not indicated or no data: docs/clinical-reference.md §3."""
    ig = _decide(**fields)
    assert ig.status == status, [d.rationale for d in ig.decisions]
    # A trial off outside its season keeps the sessions until the season starts (§3.7).
    assert ig.gives_ig is (status in ("start", "continue") or ig.sessions_until is not None)
    first = ig.decisions[0]
    assert first.topic == "immunoglobulin"
    assert first.rationale
    assert first.source


# (id citing docs/clinical-reference.md §3.1, labs, infections, what the rationale says, what it
# must not say): a low IgG above the 4 g/L threshold is "not indicated", and the reason given
# is the one that holds, never "without severe or recurrent infections" for a child who had one.
NOT_INDICATED_WORDING: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], str, str]] = [
    (
        "§3.1 IgG 4.1 + one serious pneumonia: the level, not the infections",
        _igg(4.1),
        ONE_SERIOUS,
        "with severe or recurrent infections (1 infection(s) in 12 months (1 serious)), but not "
        "below the 4 g/L the indication asks for: recheck",
        "without severe or recurrent",
    ),
    (
        "§3.1 IgG 4.1 + recurrent infections, no response measured: the response would decide",
        _igg(4.1),
        [infection(ago(months=m)) for m in (1, 3, 5, 7)],
        "no specific antibody response measured: a pneumococcal rise below 2-fold would "
        "indicate it",
        "without severe or recurrent",
    ),
    (
        "§3.1 IgG 4.1, no infection: without severe or recurrent infections",
        _igg(4.1),
        [],
        "but without severe or recurrent infections (0 infection(s) in 12 months (0 serious)): "
        "recheck at reassessment",
        "the indication asks for",
    ),
]


@pytest.mark.parametrize(
    ("labs", "infections", "says", "never"),
    [case[1:] for case in NOT_INDICATED_WORDING],
    ids=[case[0] for case in NOT_INDICATED_WORDING],
)
def test_a_low_igg_not_indicated_says_why_truly(
    labs: list[dict[str, Any]], infections: list[dict[str, Any]], says: str, never: str
) -> None:
    ig = _decide(labs=labs, infections=infections)
    assert ig.status == "not_indicated", _decisions_text(ig)
    assert says in ig.decisions[0].rationale
    assert never not in ig.decisions[0].rationale


def test_trial_off_is_proposed_with_a_recheck_not_stopped_silently() -> None:
    """§3: a trial off names its evidence, the unit-policy recheck, and plans the IgG recheck."""
    referral = make_referral(
        treatments=[treatment("rituximab", "anti_cd20", ago(months=12), ago(months=11))],
        labs=RECOVERED_B_CELLS,
        immunoglobulin_doses=[ig_dose(ago(days=20))],
    )
    plan = plan_for(referral)
    text = decisions_text(plan, "immunoglobulin")
    assert "trial off" in text
    assert "unit policy" in text
    # §3.7: TODAY (November) is outside the June-October season: IG goes on until 1 June,
    # then stops; the recheck is counted from the stop.
    season = date(2027, 6, 1)
    sessions = items_of(plan, "ig_session")
    assert sessions
    assert all(s.due < season for s in sessions)
    months = PROTOCOL.immunoglobulin.trial_off_recheck_months
    recheck = [
        r for r in items_of(plan, "reassessment") if f"IgG recheck {months} months" in r.reason
    ]
    assert [r.due for r in recheck] == [CALENDAR.next_working_day(add_months(season, months))]


# (id, last IV dose, the last session's expected day): the trial off stops on 1 June 2026.
TRIAL_OFF_STOP_CASES: list[tuple[str, str, date | None]] = [
    (
        "§3.7 last nominal session Saturday 30 May -> Friday 29 May, not the stop day 1 June",
        "2026-05-02",
        date(2026, 5, 29),
    ),
    (
        "§3.7 last nominal session Thursday 28 May (a working day) -> kept on 28 May",
        "2026-04-30",
        date(2026, 5, 28),
    ),
]


@pytest.mark.parametrize(
    ("last_dose", "last_session"),
    [pytest.param(last, due, id=case) for case, last, due in TRIAL_OFF_STOP_CASES],
)
def test_no_session_on_or_after_the_trial_off_stop_day(last_dose: str, last_session: date) -> None:
    """§3.7: a trial off from the season's start (1 June): sessions until then, none on or
    after the stop day; a closed day before it takes the working day before, in the window."""
    today = date(2026, 5, 4)
    referral = make_referral(
        received="2026-05-04",
        treatments=[treatment("rituximab", "anti_cd20", "2025-03-02", "2025-04-02")],
        labs=[lab("2026-05-02", cd19_per_ul=300.0, cd19_lower_limit_per_ul=100.0, igg_g_l=8.0)],
        immunoglobulin_doses=[
            ig_dose(last_dose),
            ig_dose(date.fromisoformat(last_dose) - timedelta(days=28)),
        ],
    )
    ig = decide_immunoglobulin(context_for(referral, today=today))
    assert ig.status == "trial_off"
    assert ig.sessions_until == date(2026, 6, 1)
    sessions = items_of(plan_for(referral, today=today), "ig_session")
    assert sessions
    assert all(s.due < date(2026, 6, 1) for s in sessions)
    assert sessions[-1].due == last_session
    assert sessions[-1].earliest <= sessions[-1].due <= sessions[-1].latest


ROUTE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("§3 no preference -> IV in the day unit (protocol default)", {}, "iv", "protocol default"),
    ("§3 family prefers SC -> SC at home", {"preferences": {"ig_route": "sc"}}, "sc", "preference"),
    ("§3 family prefers IV -> IV", {"preferences": {"ig_route": "iv"}}, "iv", "preference"),
    (
        "§3 already on SC, no preference -> stay SC",
        {"immunoglobulin_doses": [ig_dose(ago(days=5), 0.1, "sc")]},
        "sc",
        "already in use",
    ),
    (
        "§3 on SC but the family now prefers IV -> IV (preference wins)",
        {
            "immunoglobulin_doses": [ig_dose(ago(days=5), 0.1, "sc")],
            "preferences": {"ig_route": "iv"},
        },
        "iv",
        "preference",
    ),
    (
        "§3 preferences given without a route -> default IV",
        {"preferences": {}},
        "iv",
        "protocol default",
    ),
]


@pytest.mark.parametrize(
    ("fields", "route", "why"), [pytest.param(f, r, w, id=case) for case, f, r, w in ROUTE_CASES]
)
def test_route(fields: dict[str, Any], route: str, why: str) -> None:
    """The route follows the family's preference, then the route in use, then IV."""
    fields.setdefault("labs", _igg(1.0))
    ig = _decide(**fields)
    assert ig.gives_ig
    assert ig.route == route
    assert why in _decisions_text(ig)


# (id, route, weight kg, expected grams)
DOSE_CASES: list[tuple[str, str, float, float]] = [
    ("§3 IV 0.4 g/kg x 27 kg = 10.8 g -> 11 g (whole vials)", "iv", 27.0, 11.0),
    ("§3 IV 0.4 g/kg x 30 kg = 12 g -> 12 g", "iv", 30.0, 12.0),
    ("§3 IV 0.4 g/kg x 10 kg = 4 g -> 4 g", "iv", 10.0, 4.0),
    ("§3 IV 0.4 g/kg x 3 kg = 1.2 g -> one 1 g vial (0.33 g/kg, within 0.2-0.6)", "iv", 3.0, 1.0),
    ("§3 IV 0.4 g/kg x 1.5 kg = 0.6 g -> no whole vial fits: partial 0.6 g", "iv", 1.5, 0.6),
    ("§3 IV 0.4 g/kg x 150 kg = 60 g -> 60 g", "iv", 150.0, 60.0),
    ("§3 SC 0.1 g/kg x 20 kg = 2 g -> 2 g", "sc", 20.0, 2.0),
    (
        "§3 SC 0.1 g/kg x 25 kg = 2.5 g -> 3 g (nearest whole vials not below 0.1 g/kg)",
        "sc",
        25.0,
        3.0,
    ),
    ("§3 SC 0.1 g/kg x 33 kg = 3.3 g -> 4 g", "sc", 33.0, 4.0),
    ("§3 SC 0.1 g/kg x 7 kg = 0.7 g -> one 1 g vial", "sc", 7.0, 1.0),
    ("§3 SC 0.1 g/kg x 4 kg = 0.4 g -> no whole vial fits: partial 0.4 g", "sc", 4.0, 0.4),
]


@pytest.mark.parametrize(
    ("route", "weight", "grams"), [pytest.param(r, w, g, id=case) for case, r, w, g in DOSE_CASES]
)
def test_dose_rounded_to_vials(route: str, weight: float, grams: float) -> None:
    """The default dose per kg, rounded to the formulary's vials, stays within the route's range."""
    dosing = PROTOCOL.immunoglobulin.route(route)
    ig = _decide(
        weight_kg=weight,
        birth_date=born(years=1) if weight < 10 else born(years=10),
        labs=_igg(1.0),
        preferences={"ig_route": route},
    )
    assert ig.route == route
    assert ig.dose_g == pytest.approx(grams)
    assert dosing.min_g_per_kg - 1e-9 <= grams / weight <= dosing.max_g_per_kg + 1e-9
    assert ig.dose_g_per_kg == round(grams / weight, 2)


@pytest.mark.parametrize("route", ["iv", "sc"])
@pytest.mark.parametrize(
    "weight",
    [
        0.5,
        0.55,
        0.7,
        0.95,
        1.0,
        1.44,
        1.45,
        1.49,
        1.9,
        2.4,
        3.3,
        4.9,
        5.0,
        6.6,
        9.99,
        13.3,
        47.7,
        99.9,
        149.9,
        150.0,
    ],
)
def test_dose_never_outside_the_route_range(route: str, weight: float) -> None:
    """§3: whole vials or a partial vial, the dose per kg stays within [min, max] of the route."""
    dosing = PROTOCOL.immunoglobulin.route(route)
    grams, _ = dose_for(dosing, weight, dosing.g_per_kg)
    assert grams > 0
    assert dosing.min_g_per_kg * weight - 1e-9 <= grams <= dosing.max_g_per_kg * weight + 1e-9


@pytest.mark.parametrize(
    ("target", "low", "high", "vials", "expected"),
    [
        pytest.param(
            10.8,
            5.4,
            16.2,
            (1.0, 2.5, 5.0, 10.0, 20.0),
            (11.0, True),
            id="nearest whole-vial total",
        ),
        pytest.param(
            10.5, 0.0, 20.0, (1.0,), (11.0, True), id="never below the target (§3.12): up to 11"
        ),
        pytest.param(7.5, 0.0, 20.0, (2.5, 5.0), (7.5, True), id="combinations of vial sizes"),
        pytest.param(
            9.9, 0.0, 9.9, (5.0,), (5.0, True), id="never above the upper bound (10 is nearer)"
        ),
        pytest.param(
            5.1, 5.1, 20.0, (5.0,), (10.0, True), id="never below the lower bound (5 is nearer)"
        ),
        pytest.param(
            0.6, 0.3, 0.9, (1.0,), (0.6, False), id="no whole-vial total fits: partial vial"
        ),
        pytest.param(3.0, 3.0, 3.0, (1.0, 2.0), (3.0, True), id="exact bound reachable"),
        pytest.param(12.0, 6.0, 18.0, (20.0,), (12.0, False), id="smallest vial above the range"),
    ],
)
def test_round_to_vials(
    target: float,
    low: float,
    high: float,
    vials: tuple[float, ...],
    expected: tuple[float, bool],
) -> None:
    """The smallest whole-vial total not below the target within [low, high] (§3.12), else
    the largest within range, else the partial-vial dose."""
    assert round_to_vials(target, low, high, vials) == expected


def test_round_to_vials_partial_dose_stays_in_range() -> None:
    """A partial-vial dose is never outside [low, high], even when the target sits on a bound."""
    for tenths in range(5, 50):
        weight = tenths / 10 + 0.04
        low, high = 0.1 * weight, 0.2 * weight
        grams, exact = round_to_vials(low, low, high, (1.0, 2.0, 4.0, 10.0))
        assert low - 1e-9 <= grams <= high + 1e-9, (weight, grams, exact)


@pytest.mark.parametrize("weight", [3.0, 12.0, 27.0, 60.0])
def test_session_minutes_monotonic_in_dose(weight: float) -> None:
    """§3: a bigger dose never takes less time in the chair; a first infusion adds 40 min."""
    previous = 0
    for tenths in range(1, 200):
        grams = tenths * weight / 200  # 0.005 to ~1 g/kg
        minutes = session_minutes(IV, grams, weight, first=False)
        assert minutes >= previous
        first = session_minutes(IV, grams, weight, first=True)
        assert first - minutes == IV.observe_first_minutes - IV.observe_minutes == 40
        previous = minutes


def test_session_minutes_worked_example() -> None:
    """§3: 11 g at 100 g/L for 27 kg, 0.5 rising to 6 mL/kg/h: 124 min plus observation."""
    # 110 mL; 6.75 + 13.5 + 27 + 54 mL in four 30-min steps, the last 8.75 mL at 162 mL/h.
    assert session_minutes(IV, 11.0, 27.0, first=False) == 124 + 20
    assert session_minutes(IV, 11.0, 27.0, first=True) == 124 + 60


def _sessions(referral: ReferralDocument) -> list[IgSession]:
    return [i for i in plan_for(referral).items if isinstance(i, IgSession)]


def test_iv_sessions_every_28_days_in_the_day_unit() -> None:
    """§3: IV every 28 days (shifted to the next working day), first as a first infusion."""
    sessions = _sessions(make_referral(labs=_igg(1.0)))
    assert sessions[0].due == START
    assert all(s.route == "iv" and s.setting == "day_unit" and s.hospital for s in sessions)
    for k, s in enumerate(sessions):
        nominal = START + timedelta(days=28 * k)
        assert s.due == CALENDAR.next_working_day(nominal)
        assert s.earliest == max(START, nominal - timedelta(days=IV.window_days_early))
        assert s.earliest <= s.due <= s.latest
    assert len(sessions) == 13  # 2026-12-01 + 12 x 28 days = 2027-11-02, before 2027-11-24
    assert sessions[0].session_minutes == session_minutes(IV, 12.0, 30.0, first=True)
    assert sessions[1].session_minutes == session_minutes(IV, 12.0, 30.0, first=False)


def test_sc_sessions_weekly_first_two_supervised() -> None:
    """§3: SC every 7 days; the first 2 are supervised training visits, the rest at home."""
    sessions = _sessions(make_referral(labs=_igg(1.0), preferences={"ig_route": "sc"}))
    assert [s.setting for s in sessions[:3]] == ["supervised", "supervised", "home"]
    assert all(s.setting == "home" and not s.hospital for s in sessions[2:])
    assert all(s.hospital and CALENDAR.is_working_day(s.due) for s in sessions[:2])
    home = [s.due for s in sessions[2:]]
    assert all((b - a).days == 7 for a, b in itertools.pairwise(home))
    assert sessions[0].due == START
    assert all(s.dose_g == 3.0 for s in sessions)  # 0.1 g/kg x 30 kg
    assert all(s.session_minutes is None for s in sessions)


def test_sc_already_at_home_no_more_supervised_sessions() -> None:
    """§3: a child already on home SC is not sent back to supervised sessions."""
    referral = make_referral(labs=_igg(5.0), immunoglobulin_doses=[ig_dose(ago(days=5), 0.1, "sc")])
    sessions = _sessions(referral)
    assert sessions
    assert all(s.setting == "home" for s in sessions)
    assert "supervised" not in decisions_text(plan_for(referral), "immunoglobulin")


def test_continuing_iv_resumes_one_interval_after_the_last_dose() -> None:
    """§3: continuing IV is due 28 days after the last dose, not on the first free day."""
    last = TODAY - timedelta(days=10)
    sessions = _sessions(make_referral(labs=_igg(8.0), immunoglobulin_doses=[ig_dose(last)]))
    assert sessions[0].due == CALENDAR.next_working_day(last + timedelta(days=28))
    assert sessions[0].session_minutes == session_minutes(IV, 12.0, 30.0, first=False)


def test_troughs_every_three_months_target_seven() -> None:
    """§3: trough IgG from steady state (3 months), every 3 months, drawn before an infusion."""
    plan = plan_for(make_referral(labs=_igg(1.0)))
    troughs = [i for i in plan.items if isinstance(i, IgTrough)]
    session_days = sorted(s.due for s in plan.items if isinstance(s, IgSession))
    wanted = [add_months(START, 3 * k) for k in range(1, 5)]  # 1 Mar, 1 Jun, 1 Sep, 1 Dec
    expected = [min(d for d in session_days if d >= w) for w in wanted if w <= HORIZON_END]
    assert [t.due for t in troughs] == expected
    assert len(troughs) == 3
    assert all(t.target_g_l == 7.0 for t in troughs)


def test_trough_target_ten_after_car_t() -> None:
    """§3: B-cell aplasia after CD19 CAR-T targets a trough above 10 g/L (CHOP)."""
    referral = make_referral(
        treatments=[treatment("tisagenlecleucel", "car_t", ago(months=4), ago(months=4))],
        labs=_igg(2.0),
        immunoglobulin_doses=[ig_dose(ago(days=14))],
    )
    ig = decide_immunoglobulin(context_for(referral))
    assert ig.trough_target_g_l == 10.0
    plan = plan_for(referral)
    troughs = [i for i in plan.items if isinstance(i, IgTrough)]
    assert troughs
    assert all(t.target_g_l == 10.0 for t in troughs)


def test_trough_below_target_asks_for_an_early_review() -> None:
    """§3: a trough below target while continuing brings a plan review at the first day."""
    referral = make_referral(
        # §3.5: a trough is drawn before the dose, on the infusion day.
        labs=[lab(ago(days=20), igg_g_l=5.2)],
        immunoglobulin_doses=[ig_dose(ago(days=20))],
    )
    plan = plan_for(referral)
    early = [r for r in items_of(plan, "plan_review") if "below target" in r.reason]
    assert [r.due for r in early] == [START]
    assert "review the dose" in decisions_text(plan, "immunoglobulin")


@pytest.mark.parametrize(
    ("last_review_days_ago", "early"),
    [(None, True), (27, True), (20, False), (6, False)],
    ids=["never-reviewed", "reviewed-before-the-trough", "reviewed-that-day", "reviewed-since"],
)
def test_a_low_trough_asks_for_one_early_review(
    last_review_days_ago: int | None, early: bool
) -> None:
    """§3.5, §6.5: each low trough asks for one early review. A review held since it was
    drawn answered it: the plan that review made does not book another (before, every
    weekly review re-planned and booked the next, for as long as the trough stayed the
    latest: the demo's year had children reviewed every week)."""
    referral = make_referral(
        labs=[lab(ago(days=20), igg_g_l=5.2)],
        immunoglobulin_doses=[ig_dose(ago(days=20))],
    )
    last = (
        None if last_review_days_ago is None else date.fromisoformat(ago(days=last_review_days_ago))
    )
    plan = propose_plan(
        referral, today=TODAY, protocol=PROTOCOL, calendar=CALENDAR, last_review=last
    )
    booked = [r for r in items_of(plan, "plan_review") if "below target" in r.reason]
    assert bool(booked) is early
    assert [r.reason for r in items_of(plan, "plan_review")].count("periodic review") >= 3


def test_no_sessions_when_not_indicated() -> None:
    """§3: no IG item at all unless IG is started or continued."""
    plan = plan_for(make_referral(labs=_igg(3.0)))
    assert not items_of(plan, "ig_session")
    assert not items_of(plan, "ig_trough")


def test_loading_dose_when_the_protocol_asks_for_it() -> None:
    """§3: loading 0.8 g/kg once at the first session when propose_loading is set."""
    protocol = with_protocol(PROTOCOL, "immunoglobulin.iv.propose_loading", True)
    referral = make_referral(labs=_igg(1.0))
    plan = plan_for(referral, protocol=protocol)
    sessions = [i for i in plan.items if isinstance(i, IgSession)]
    assert sessions[0].loading
    # The loading dose has its own ceiling (0.8 g/kg x 30 kg = 24 g), above the maintenance max.
    assert sessions[0].dose_g == IV.loading_g_per_kg * 30.0
    assert not any(s.loading for s in sessions[1:])
    assert all(s.dose_g == 12.0 for s in sessions[1:])
    default = plan_for(referral)
    assert "no loading dose proposed" in decisions_text(default, "immunoglobulin")


def test_dose_never_above_max_per_kg_for_any_configured_target() -> None:
    """§3: whatever g_per_kg a unit configures, rounding never exceeds max_g_per_kg."""
    for route, dosing in (("iv", IV), ("sc", SC)):
        for weight in (2.2, 7.3, 18.0, 33.3, 71.0):
            steps = round((dosing.max_g_per_kg - dosing.min_g_per_kg) / 0.05)
            for k in range(steps + 1):
                g_per_kg = round(dosing.min_g_per_kg + 0.05 * k, 2)
                grams, _ = dose_for(dosing, weight, g_per_kg)
                assert grams <= dosing.max_g_per_kg * weight + 1e-9, (route, weight, g_per_kg)


# ----------------------------------------------------------------------------- immunomodulatory IG
# §3.1: replacement is 0.2-0.6 g/kg IV every 3-4 weeks (0.4-0.8 g/kg a month SC); 1-2 g/kg
# is immunomodulatory (EMA core SmPC IVIg). A course over consecutive days counts as its total.

IMMUNOMODULATORY_CASES: list[tuple[str, list[dict[str, Any]], float, bool]] = [
    (
        "§3.1 Kawasaki 2 g/kg over 2 days 3 weeks ago, IgG 18 -> not on replacement",
        [ig_dose(ago(days=21), 1.0), ig_dose(ago(days=20), 1.0)],
        18.0,
        False,
    ),
    (
        "§3.1 ITP 1 g/kg once 2 weeks ago, IgG 9 -> not on replacement",
        [ig_dose(ago(days=14), 1.0)],
        9.0,
        False,
    ),
    (
        "§3.1 0.8 g/kg IV course 3 weeks ago (between the ranges) -> still replacement "
        "(cautious: immunomodulatory from 1 g/kg)",
        [ig_dose(ago(days=21), 0.8)],
        9.0,
        True,
    ),
    (
        "§3.1 SC 0.2 g/kg on 6 consecutive days (1.2 g/kg) -> replacement (SC is never "
        "immunomodulatory)",
        [ig_dose(ago(days=k), 0.2, route="sc") for k in range(10, 16)],
        9.0,
        True,
    ),
]


@pytest.mark.parametrize(
    ("doses", "igg", "on_replacement"),
    [pytest.param(doses, igg, on, id=case) for case, doses, igg, on in IMMUNOMODULATORY_CASES],
)
def test_an_immunomodulatory_course_is_not_replacement(
    doses: list[dict[str, Any]], igg: float, on_replacement: bool
) -> None:
    referral = make_referral(
        birth_date=born(years=4),
        weight_kg=16.0,
        immunoglobulin_doses=doses,
        labs=[lab(ago(days=5), igg_g_l=igg)],
    )
    ctx = context_for(referral)
    assert ctx.facts.on_ig_replacement is on_replacement
    ig = decide_immunoglobulin(ctx)
    assert (ig.status == "continue") is on_replacement, [x.decision for x in ig.decisions]
    said = decisions_text(plan_for(referral))
    assert ("not counted as replacement" in said) is (not on_replacement), said
    if not on_replacement:
        assert not items_of(plan_for(referral), "ig_session")


def test_an_immunomodulatory_course_keeps_its_live_vaccine_interval() -> None:
    """§3.1 and §4.7: not replacement, but 2 g/kg (Kawasaki) still holds MMR and varicella
    11 months from the course's end (ACIP antibody-live vaccine interval table)."""
    end = ago(days=20)
    referral = make_referral(
        birth_date=born(years=4),
        weight_kg=16.0,
        immunoglobulin_doses=[ig_dose(ago(days=21), 1.0), ig_dose(end, 1.0)],
        labs=[lab(ago(days=5), igg_g_l=18.0)],
    )
    plan = plan_for(referral)
    for vaccine in ("MMR", "VAR"):
        doses = items_of(plan, "vaccine_dose", vaccine=vaccine)
        assert doses, [i.key for i in plan.items]
        assert doses[0].due >= add_months(date.fromisoformat(end), 11), doses[0]


def test_an_immunomodulatory_course_during_replacement_keeps_the_replacement_dose() -> None:
    """§3.1 and §3.8: a child on 0.4 g/kg every 28 days given 2 g/kg for ITP in between goes on
    at the replacement dose in use, not at the immunomodulatory one (capped at the maximum)."""
    referral = make_referral(
        weight_kg=20.0,
        immunoglobulin_doses=[
            ig_dose(ago(days=45), 0.4),
            ig_dose(ago(days=17), 0.4),
            ig_dose(ago(days=10), 1.0),
            ig_dose(ago(days=9), 1.0),
        ],
        labs=[lab(ago(days=17), igg_g_l=7.5)],
    )
    ig = decide_immunoglobulin(context_for(referral))
    assert ig.status == "continue", [x.decision for x in ig.decisions]
    assert ig.dose_g_per_kg == pytest.approx(0.4), ig
