"""The unit's calendar: timezone, working days, public holidays, day-unit hours.

Hospital items (IV sessions, vaccines, labs, reviews) fall on working days;
home subcutaneous sessions may fall on any day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated

import holidays
import pendulum
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sidflows.config import load_config
from sidflows.documents import field_path
from sidflows.errors import ConfigError


def add_months(day: date, months: int) -> date:
    """Calendar months, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    moved = pendulum.Date(day.year, day.month, day.day).add(months=months)
    return date(moved.year, moved.month, moved.day)


def add_years(day: date, years: int) -> date:
    return add_months(day, 12 * years)


def age_in_months(birth: date, on: date) -> int:
    months = (on.year - birth.year) * 12 + (on.month - birth.month)
    return months - (on.day < birth.day)


def age_in_years(birth: date, on: date) -> int:
    return age_in_months(birth, on) // 12


class DayUnit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chairs_per_day: Annotated[int, Field(ge=1, le=200)]
    opens: time
    closes: time

    @property
    def open_minutes(self) -> int:
        return (self.closes.hour * 60 + self.closes.minute) - (
            self.opens.hour * 60 + self.opens.minute
        )


class CalendarConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str
    holidays_country: Annotated[str, Field(min_length=2, max_length=3)]
    holidays_subdivision: str = ""
    closures: tuple[date, ...] = ()
    working_weekdays: tuple[Annotated[int, Field(ge=1, le=7)], ...] = Field(min_length=1)
    first_item_lead_days: Annotated[int, Field(ge=0, le=90)]
    prefect_lookahead_days: Annotated[int, Field(ge=1, le=366)] = 42
    day_unit: DayUnit

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            pendulum.timezone(value)
        except Exception as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value


class UnitCalendar:
    """Working days of the unit, with public holidays per year cached."""

    def __init__(self, config: CalendarConfig) -> None:
        self.config = config
        self.tz = pendulum.timezone(config.timezone)
        self._weekdays = frozenset(config.working_weekdays)
        self._closures = frozenset(config.closures)
        self._holidays: dict[int, frozenset[date]] = {}
        try:
            self._holidays_for(2026)
        except NotImplementedError as exc:
            raise ConfigError(f"calendar: holidays: {exc}") from None

    def _holidays_for(self, year: int) -> frozenset[date]:
        found = self._holidays.get(year)
        if found is None:
            found = frozenset(
                holidays.country_holidays(
                    self.config.holidays_country,
                    subdiv=self.config.holidays_subdivision or None,
                    years=year,
                ).keys()
            )
            self._holidays[year] = found
        return found

    def holiday_name(self, day: date) -> str | None:
        names = holidays.country_holidays(
            self.config.holidays_country,
            subdiv=self.config.holidays_subdivision or None,
            years=day.year,
        )
        name = names.get(day)
        return None if name is None else str(name)

    def is_working_day(self, day: date) -> bool:
        return (
            day.isoweekday() in self._weekdays
            and day not in self._closures
            and day not in self._holidays_for(day.year)
        )

    def next_working_day(self, day: date) -> date:
        """``day`` itself when the hospital works, else the next day it does."""
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def working_days(self, start: date, end: date) -> Iterator[date]:
        day = start
        while day <= end:
            if self.is_working_day(day):
                yield day
            day += timedelta(days=1)

    def add_working_days(self, day: date, count: int) -> date:
        step = 1 if count >= 0 else -1
        remaining = abs(count)
        while remaining:
            day += timedelta(days=step)
            if self.is_working_day(day):
                remaining -= 1
        return day

    def today(self) -> date:
        """Today in the unit's timezone (the one place that reads the clock)."""
        now = pendulum.now(self.tz)
        return date(now.year, now.month, now.day)


def parse_calendar(data: dict[str, object], *, origin: str = "calendar") -> UnitCalendar:
    try:
        return UnitCalendar(CalendarConfig.model_validate(data))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise ConfigError(
            f"{origin}: {field_path(error['loc'])}: {error['msg'].removeprefix('Value error, ')}"
        ) from None


def load_calendar(path: Path | None = None) -> UnitCalendar:
    """The unit's calendar: SIDFLOWS_CALENDAR, else config/calendar.toml."""
    return load_config(parse_calendar, "calendar.toml", "SIDFLOWS_CALENDAR", path)
