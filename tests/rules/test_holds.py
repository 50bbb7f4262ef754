"""Safety holds while a re-plan waits: docs/clinical-reference.md §4.8 as cases."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from conftest_rules import (
    CALENDAR,
    PROTOCOL,
    TODAY,
    ago,
    day,
    document_for,
    lab,
    make_doc,
    make_referral,
    treatment,
    vaccination,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sidflows.referral import validate_referral
from sidflows.rules.holds import OpenItem, Proposal, held_items, kept_by
from sidflows.rules.model import Block, Decision, IgDecision

START = date(2026, 12, 1)  # TODAY plus the unit's lead time
CONTINUE = IgDecision("continue", "iv", 12.0, 0.4, 6.0, ())
STOP = IgDecision(
    "not_indicated",
    "iv",
    0.0,
    0.0,
    6.0,
    (Decision("immunoglobulin", "IG replacement not indicated", "IgG 8 g/L", "ASBMT"),),
)
TRIAL_OFF = IgDecision(
    "trial_off",
    "iv",
    12.0,
    0.4,
    6.0,
    (Decision("immunoglobulin", "trial off IG", "cause ended", "Immunotherapy 2021"),),
    sessions_until=date(2027, 6, 1),
)
MTX = Block("methotrexate (since 2026-11-24, ongoing): no live vaccine", "IDSA 2013 table 6", None)
CD20 = Block("rituximab (since 2026-12-10, ongoing): vaccinate before", "ACR 2022", None, START)
FLU_CD20 = Block("rituximab: no influenza vaccine", "IDSA 2013", None, START)
D = date(2027, 1, 12)


def mmr(due: date = D) -> OpenItem:
    return OpenItem(
        key="vaccine_dose:MMR:2", kind="vaccine_dose", due=due, vaccine="MMR", live=True
    )


def pcv(due: date = D) -> OpenItem:
    return OpenItem(key="vaccine_dose:PCV:1", kind="vaccine_dose", due=due, vaccine="PCV")


def iiv(due: date = D) -> OpenItem:
    return OpenItem(key="vaccine_dose:IIV:2026:1", kind="vaccine_dose", due=due, vaccine="IIV")


def session(due: date = D) -> OpenItem:
    return OpenItem(key=f"ig_session:{due}", kind="ig_session", due=due)


def proposal(
    items: dict[str, date] | None = None,
    *,
    ig: IgDecision = CONTINUE,
    live: tuple[Block, ...] = (),
    inactivated: tuple[Block, ...] = (),
    influenza: tuple[Block, ...] = (),
) -> Proposal:
    return Proposal(2, START, items or {}, ig, live, inactivated, influenza)


# (what, the active plan's item, the proposal, held, words the reason must hold)
CASES = [
    (
        "§4.3 live vaccine after a new immunosuppressant",
        mmr(),
        proposal(live=(MTX,)),
        True,
        ["live vaccine blocked", "methotrexate", "IDSA 2013 table 6", "§4.8"],
    ),
    (
        "§4.3 live vaccine the proposal still gives on its day",
        mmr(),
        proposal({"vaccine_dose:MMR:2": D}),
        False,
        [],
    ),
    (
        "§4.3 inactivated vaccine inside a new anti-CD20 window",
        pcv(),
        proposal({"vaccine_dose:PCV:1": D}, inactivated=(CD20,)),
        True,
        ["vaccine blocked", "rituximab", "ACR 2022"],
    ),
    (
        "§4.3 a vaccine before the anti-CD20 window opens goes ahead",
        pcv(date(2026, 11, 30)),
        proposal(inactivated=(CD20,)),
        False,
        [],
    ),
    (
        "§4.5 influenza vaccine during anti-B-cell antibodies",
        iiv(),
        proposal({"vaccine_dose:IIV:2026:1": D}, influenza=(FLU_CD20,)),
        True,
        ["influenza vaccine blocked", "rituximab"],
    ),
    (
        "§4.5 influenza is not held by the live-vaccine blocks",
        iiv(),
        proposal({"vaccine_dose:IIV:2026:1": D}, live=(MTX,)),
        False,
        [],
    ),
    (
        "§4.8 a dose the proposal moves later",
        pcv(),
        proposal({"vaccine_dose:PCV:1": D + timedelta(days=14)}),
        True,
        ["moves it to 2027-01-26"],
    ),
    (
        "§4.8 a dose the proposal gives earlier",
        pcv(),
        proposal({"vaccine_dose:PCV:1": D - timedelta(days=7)}),
        False,
        [],
    ),
    ("§4.8 a dose the proposal drops", pcv(), proposal(), True, ["no longer gives it"]),
    (
        "§4.8 inside the lead time only a block holds a dose",
        pcv(date(2026, 11, 27)),
        proposal(),
        False,
        [],
    ),
    (
        "§4.7 overdue live vaccine checked today",
        mmr(date(2026, 11, 2)),
        proposal(live=(Block("IG on 2026-11-20: 8 months", "ACIP", date(2027, 7, 20)),)),
        True,
        ["on 2026-11-24", "until 2027-07-20"],
    ),
    (
        "§3.1 IG session after a decision to stop",
        session(),
        proposal(ig=STOP),
        True,
        ["IG session", "decision to stop", "not indicated", "ASBMT"],
    ),
    (
        "§3 IG session of a continuing replacement, moved",
        session(),
        proposal(ig=CONTINUE),
        False,
        [],
    ),
    ("§3.7 IG session before a trial off stops", session(), proposal(ig=TRIAL_OFF), False, []),
    (
        "§3.7 IG session from the trial off's stop",
        session(date(2027, 6, 1)),
        proposal(ig=TRIAL_OFF),
        True,
        ["stops on 2027-06-01", "Immunotherapy 2021"],
    ),
    (
        "§6.6 IG session when the proposal has no IgG to decide on",
        session(),
        proposal(ig=IgDecision("no_data", "iv", 0.0, 0.0, 6.0, ())),
        False,
        [],
    ),
    (
        "§5 prophylaxis is never held",
        OpenItem(key="prophylaxis:TMP-SMX", kind="prophylaxis", due=D),
        proposal(ig=STOP),
        False,
        [],
    ),
    (
        "§6 labs, troughs and reviews are never held",
        OpenItem(key=f"reassessment:{D}", kind="reassessment", due=D),
        proposal(ig=STOP),
        False,
        [],
    ),
]


@pytest.mark.parametrize(("what", "item", "new", "held", "words"), CASES, ids=[c[0] for c in CASES])
def test_hold_rule(what: str, item: OpenItem, new: Proposal, held: bool, words: list[str]) -> None:
    found = held_items([item], new, today=TODAY, protocol=PROTOCOL)
    assert bool(found) is held, found
    for hold in found:
        assert hold.key == item.key
        assert hold.version == 2
        for word in words:
            assert word in hold.text, (word, hold.text)


def test_a_new_immunosuppressant_holds_the_scheduled_live_vaccines() -> None:
    """§4.3, §4.8: the whole rule on a real proposal: MMR and varicella held, nothing else."""
    fields = {
        "category": "immune_mediated",
        "label": "juvenile idiopathic arthritis",
        "labs": [lab(ago(days=10), igg_g_l=9.0, cd19_per_ul=300, cd4_per_ul=900)],
        "vaccinations": [vaccination("MMR", "2017-06-20"), vaccination("VAR", "2017-06-20")],
    }
    before = document_for(make_referral(**fields))
    changed = make_doc(**fields)
    changed["treatments"] = [
        treatment("methotrexate", "antimetabolite", TODAY, None, dose_mg_per_kg_week=0.3)
    ]
    referral = validate_referral(changed)
    after = document_for(referral)
    new = Proposal.build(
        referral,
        version=2,
        items={i["key"]: day(i["due"]) for i in after["items"]},
        today=TODAY,
        protocol=PROTOCOL,
        calendar=CALENDAR,
    )
    items = [
        OpenItem.of(key=i["key"], kind=i["kind"], due=day(i["due"]), details=i)
        for i in before["items"]
    ]
    found = {h.key: h for h in held_items(items, new, today=TODAY, protocol=PROTOCOL)}
    assert set(found) == {"vaccine_dose:MMR:2", "vaccine_dose:VAR:2"}
    assert "live vaccine blocked on 2026-12-01: methotrexate (since 2026-11-24" in (
        found["vaccine_dose:MMR:2"].text
    )


def test_kept_by_same_key_same_day() -> None:
    assert kept_by("vaccine_dose:MMR:2", D, {"vaccine_dose:MMR:2": D})
    assert not kept_by("vaccine_dose:MMR:2", D, {"vaccine_dose:MMR:2": D + timedelta(days=1)})
    assert not kept_by("vaccine_dose:MMR:2", D, {})


days = st.dates(min_value=date(2026, 10, 1), max_value=date(2028, 1, 1))
blocks = st.builds(
    lambda start, length: Block(
        "a cause",
        "a source",
        None if length is None else (start or date(2026, 9, 1)) + timedelta(days=length),
        start,
    ),
    st.one_of(st.none(), days),
    st.one_of(st.none(), st.integers(min_value=1, max_value=400)),
)


@settings(max_examples=300, deadline=None)
@given(
    live=st.lists(blocks, max_size=4),
    dues=st.lists(days, min_size=1, max_size=6),
    kept=st.dictionaries(st.integers(0, 5), days, max_size=6),
    today=days,
)
def test_no_live_vaccine_left_unheld_on_a_forbidden_day(
    live: list[Block], dues: list[date], kept: dict[int, date], today: date
) -> None:
    """§4.8: whatever the proposal keeps, a live dose on a day its blocks forbid is held."""
    items = [
        OpenItem(
            key=f"vaccine_dose:MMR:{n}", kind="vaccine_dose", due=due, vaccine="MMR", live=True
        )
        for n, due in enumerate(dues)
    ]
    new = Proposal(
        2,
        today + timedelta(days=7),
        {f"vaccine_dose:MMR:{n}": d for n, d in kept.items()},
        CONTINUE,
        tuple(live),
    )
    held = {h.key for h in held_items(items, new, today=today, protocol=PROTOCOL)}
    for item in items:
        if any(b.holds_on(max(item.due, today)) for b in live):
            assert item.key in held
