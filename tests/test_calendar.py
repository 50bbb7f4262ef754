"""The unit's calendar: working days, Spanish and Catalan holidays, closures, month arithmetic."""

from __future__ import annotations

import tomllib
from datetime import date, time
from pathlib import Path
from typing import Any

import pytest

from sidflows.calendar import (
    UnitCalendar,
    add_months,
    add_years,
    age_in_months,
    age_in_years,
    load_calendar,
    parse_calendar,
)
from sidflows.errors import ConfigError

CALENDAR = load_calendar()
SHIPPED = Path(__file__).parents[1] / "config" / "calendar.toml"


def _config(**changes: Any) -> dict[str, Any]:
    with SHIPPED.open("rb") as fh:
        data = tomllib.load(fh)
    data.update(changes)
    return data


def test_shipped_calendar() -> None:
    """The shipped calendar: Europe/Madrid, Spain with Catalonia, Monday to Friday, 8-15 h."""
    config = CALENDAR.config
    assert config.timezone == "Europe/Madrid"
    assert (config.holidays_country, config.holidays_subdivision) == ("ES", "CT")
    assert config.working_weekdays == (1, 2, 3, 4, 5)
    assert config.first_item_lead_days == 7
    assert (config.day_unit.opens, config.day_unit.closes) == (time(8), time(15))
    assert config.day_unit.open_minutes == 7 * 60


@pytest.mark.parametrize(
    ("day", "working"),
    [
        pytest.param(date(2026, 11, 24), True, id="Tuesday 2026-11-24"),
        pytest.param(date(2026, 11, 27), True, id="Friday 2026-11-27"),
        pytest.param(date(2026, 11, 28), False, id="Saturday"),
        pytest.param(date(2026, 11, 29), False, id="Sunday"),
        pytest.param(date(2026, 12, 25), False, id="Christmas 2026-12-25 (national)"),
        pytest.param(date(2026, 12, 26), False, id="Sant Esteve 2026-12-26 (CT, a Saturday)"),
        pytest.param(date(2025, 12, 26), False, id="Sant Esteve 2025-12-26 (CT, a Friday)"),
        pytest.param(date(2027, 1, 1), False, id="New Year 2027-01-01"),
        pytest.param(date(2027, 1, 6), False, id="Epiphany 2027-01-06"),
        pytest.param(date(2027, 1, 7), True, id="the day after Epiphany"),
        pytest.param(date(2026, 9, 11), False, id="Diada 2026-09-11 (CT)"),
        pytest.param(date(2026, 6, 24), False, id="Sant Joan 2026-06-24 (CT)"),
        pytest.param(date(2026, 10, 12), False, id="Fiesta Nacional 2026-10-12"),
        pytest.param(date(2026, 12, 8), False, id="Inmaculada 2026-12-08"),
        pytest.param(date(2027, 3, 26), False, id="Good Friday 2027"),
        pytest.param(date(2027, 3, 29), False, id="Easter Monday 2027 (CT)"),
        pytest.param(date(2027, 11, 1), False, id="All Saints 2027-11-01"),
        pytest.param(date(2027, 12, 6), False, id="Constitution Day 2027-12-06"),
        pytest.param(date(2026, 12, 24), True, id="Christmas Eve is a working day"),
        pytest.param(date(2026, 12, 31), True, id="New Year's Eve is a working day"),
    ],
)
def test_is_working_day(day: date, working: bool) -> None:
    """Weekends and Spanish national and Catalan holidays are not working days."""
    assert CALENDAR.is_working_day(day) is working


@pytest.mark.parametrize(
    "day",
    [date(2026, 12, 25), date(2026, 12, 26), date(2027, 1, 6), date(2026, 9, 11)],
    ids=str,
)
def test_holidays_have_names(day: date) -> None:
    """Each public holiday is named (for the decision that moves an item)."""
    assert CALENDAR.holiday_name(day)


def test_weekday_is_not_a_holiday() -> None:
    """An ordinary day has no holiday name."""
    assert CALENDAR.holiday_name(date(2026, 11, 24)) is None


def test_national_only_calendar_keeps_catalan_holidays_open() -> None:
    """Without the Catalan subdivision, the Diada and Sant Esteve are ordinary days."""
    national = parse_calendar(_config(holidays_subdivision=""))
    assert national.is_working_day(date(2026, 9, 11))
    assert national.is_working_day(date(2025, 12, 26))
    assert not national.is_working_day(date(2026, 12, 25))


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        pytest.param(date(2026, 12, 24), date(2026, 12, 24), id="a working day is itself"),
        pytest.param(date(2026, 12, 25), date(2026, 12, 28), id="Christmas Friday -> Monday"),
        pytest.param(date(2026, 11, 28), date(2026, 11, 30), id="Saturday -> Monday"),
        pytest.param(date(2027, 1, 1), date(2027, 1, 4), id="New Year Friday -> Monday"),
        pytest.param(date(2027, 1, 6), date(2027, 1, 7), id="Epiphany Wednesday -> Thursday"),
        pytest.param(
            date(2027, 3, 26), date(2027, 3, 30), id="Good Friday -> Tuesday after Easter Monday"
        ),
        pytest.param(date(2026, 9, 11), date(2026, 9, 14), id="Diada Friday -> Monday"),
    ],
)
def test_next_working_day(day: date, expected: date) -> None:
    """next_working_day is the day itself when open, else the next day the unit works."""
    assert CALENDAR.next_working_day(day) == expected


def test_working_days_and_add_working_days() -> None:
    """Christmas week 2026 has three working days; counting skips the holidays."""
    week = list(CALENDAR.working_days(date(2026, 12, 21), date(2026, 12, 27)))
    assert week == [date(2026, 12, 21), date(2026, 12, 22), date(2026, 12, 23), date(2026, 12, 24)]
    assert CALENDAR.add_working_days(date(2026, 12, 24), 1) == date(2026, 12, 28)
    assert CALENDAR.add_working_days(date(2026, 12, 28), -1) == date(2026, 12, 24)
    assert CALENDAR.add_working_days(date(2026, 12, 24), 0) == date(2026, 12, 24)


def test_closures_from_config() -> None:
    """The unit's own closures are not working days, and next_working_day skips them."""
    closed = parse_calendar(_config(closures=[date(2026, 8, 3), date(2026, 8, 4)]))
    assert not closed.is_working_day(date(2026, 8, 3))
    assert closed.next_working_day(date(2026, 8, 1)) == date(2026, 8, 5)
    assert CALENDAR.is_working_day(date(2026, 8, 3))


def test_closures_from_a_unit_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIDFLOWS_CALENDAR points at a unit's own calendar file with its closures."""
    text = SHIPPED.read_text(encoding="utf-8").replace(
        "closures = []", "closures = [2026-12-31, 2027-01-05]"
    )
    assert "2026-12-31" in text
    path = tmp_path / "calendar.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("SIDFLOWS_CALENDAR", str(path))
    unit = load_calendar()
    assert isinstance(unit, UnitCalendar)
    assert not unit.is_working_day(date(2026, 12, 31))
    assert unit.next_working_day(date(2027, 1, 5)) == date(2027, 1, 7)


def test_weekday_set_from_config() -> None:
    """A unit that also works on Saturdays has Saturdays as working days."""
    six = parse_calendar(_config(working_weekdays=[1, 2, 3, 4, 5, 6]))
    assert six.is_working_day(date(2026, 11, 28))
    assert not six.is_working_day(date(2026, 12, 26))  # Sant Esteve still closed


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        pytest.param({"timezone": "Mars/Olympus"}, "timezone", id="unknown timezone"),
        pytest.param({"working_weekdays": [0, 1]}, "working_weekdays", id="weekday 0"),
        pytest.param({"working_weekdays": []}, "working_weekdays", id="no working day"),
        pytest.param({"holidays_country": "XX"}, "holidays", id="unknown country"),
        pytest.param(
            {"day_unit": {"chairs_per_day": 0, "opens": "08:00", "closes": "15:00"}},
            "day_unit.chairs_per_day",
            id="no chair",
        ),
        pytest.param({"first_item_lead_days": -1}, "first_item_lead_days", id="negative lead"),
        pytest.param({"colour": "blue"}, "colour", id="unknown key"),
    ],
)
def test_invalid_calendar_config(changes: dict[str, Any], fragment: str) -> None:
    """An invalid calendar is refused as ConfigError naming the field."""
    with pytest.raises(ConfigError, match=fragment):
        parse_calendar(_config(**changes))


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        pytest.param(date(2027, 1, 31), 1, date(2027, 2, 28), id="31 Jan + 1 month = 28 Feb"),
        pytest.param(
            date(2028, 1, 31), 1, date(2028, 2, 29), id="31 Jan + 1 month = 29 Feb (leap)"
        ),
        pytest.param(date(2026, 3, 31), 1, date(2026, 4, 30), id="31 Mar + 1 month = 30 Apr"),
        pytest.param(date(2026, 3, 31), -1, date(2026, 2, 28), id="31 Mar - 1 month = 28 Feb"),
        pytest.param(date(2026, 8, 31), 6, date(2027, 2, 28), id="31 Aug + 6 months = 28 Feb"),
        pytest.param(date(2026, 11, 24), 12, date(2027, 11, 24), id="12 months = the horizon"),
        pytest.param(date(2026, 10, 15), 3, date(2027, 1, 15), id="across the year end"),
        pytest.param(date(2026, 5, 10), 24, date(2028, 5, 10), id="24 months after HSCT"),
        pytest.param(date(2026, 5, 10), 0, date(2026, 5, 10), id="zero months"),
        pytest.param(date(2028, 2, 29), 12, date(2029, 2, 28), id="29 Feb + 12 months = 28 Feb"),
    ],
)
def test_add_months_clamps_to_the_month_end(day: date, months: int, expected: date) -> None:
    """Calendar months, clamped to the end of a shorter month."""
    assert add_months(day, months) == expected
    assert type(add_months(day, months)) is date  # a plain date, not a pendulum one


def test_add_years() -> None:
    """add_years is twelve months at a time, clamped on 29 February."""
    assert add_years(date(2028, 2, 29), 1) == date(2029, 2, 28)
    assert add_years(date(2022, 1, 10), 5) == date(2027, 1, 10)


@pytest.mark.parametrize(
    ("birth", "on", "months"),
    [
        pytest.param(date(2026, 5, 24), date(2026, 11, 24), 6, id="6 months to the day"),
        pytest.param(date(2026, 5, 25), date(2026, 11, 24), 5, id="one day short of 6 months"),
        pytest.param(date(2025, 11, 24), date(2026, 11, 24), 12, id="first birthday"),
        pytest.param(
            date(2016, 11, 25), date(2026, 11, 24), 119, id="the day before the 10th birthday"
        ),
    ],
)
def test_age_in_months(birth: date, on: date, months: int) -> None:
    """Completed months of age; completed years are months // 12."""
    assert age_in_months(birth, on) == months
    assert age_in_years(birth, on) == months // 12


def test_today_is_read_in_the_unit_timezone() -> None:
    """The one place that reads the clock gives a plain date."""
    today = CALENDAR.today()
    assert type(today) is date
