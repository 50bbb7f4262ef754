"""Durations of the supporting data and the date arithmetic of the logic specification.

CDSi Logic Specification v4.6, section 3.4 (Table 3-6, general date rules CALCDT-1 to
CALCDT-6): years and months move the calendar fields holding the day constant, weeks and
days add days, an impossible date moves forward to the first of the next month, and
years and months are applied before weeks and days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

__all__ = ["MAX_DATE", "MIN_DATE", "Duration", "add_duration", "parse_duration", "parse_ymd"]

MIN_DATE = date(1900, 1, 1)
"""The spec's 'assumed value if empty' for a lower bound (e.g. Table 6-14)."""
MAX_DATE = date(2999, 12, 31)
"""The spec's 'assumed value if empty' for an upper bound (e.g. Table 6-14)."""

_TERM = re.compile(r"([+-]?)\s*(\d+)\s*(year|month|week|day)s?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Duration:
    """An amount of time such as ``6 months - 4 days``: months (years folded in) and days."""

    months: int = 0
    days: int = 0
    text: str = ""
    delta: timedelta = field(init=False, repr=False, compare=False)
    """``days`` as a timedelta (made once, not per date calculation)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", timedelta(days=self.days))

    def __str__(self) -> str:
        return self.text


@lru_cache(maxsize=4096)
def parse_duration(text: str | None) -> Duration | None:
    """Parse ``'4 weeks - 4 days'``, ``'18 years'``, ``'6 months + 4 weeks'``; empty -> None."""
    if text is None:
        return None
    cleaned = text.strip()
    if not cleaned:
        return None
    months = 0
    days = 0
    found = False
    for sign, amount_text, unit in _TERM.findall(cleaned):
        found = True
        amount = int(amount_text) * (-1 if sign == "-" else 1)
        unit_l = unit.lower()
        if unit_l == "year":
            months += 12 * amount
        elif unit_l == "month":
            months += amount
        elif unit_l == "week":
            days += 7 * amount
        else:
            days += amount
    if not found:
        raise ValueError(f"not a CDSi duration: {text!r}")
    return Duration(months=months, days=days, text=cleaned)


def add_months(start: date, months: int) -> date:
    """CALCDT-1/2/5: move year and month holding the day; an impossible day rolls to the 1st."""
    if months == 0:
        return start
    total = start.year * 12 + (start.month - 1) + months
    year, month0 = divmod(total, 12)
    month = month0 + 1
    try:
        return date(year, month, start.day)
    except ValueError:
        # CALCDT-5: not a real date -> first day of the next month.
        if month == 12:
            return date(year + 1, 1, 1)
        return date(year, month + 1, 1)


def add_duration(start: date, duration: Duration) -> date:
    """CALCDT-6: years and months first, then weeks and days."""
    shifted = add_months(start, duration.months) if duration.months else start
    if duration.days:
        shifted = shifted + duration.delta
    return shifted


def parse_ymd(text: str | None) -> date | None:
    """Supporting-data dates are ``YYYYMMDD`` (e.g. effective and cessation dates)."""
    if text is None:
        return None
    cleaned = text.strip()
    if not cleaned:
        return None
    if len(cleaned) == 8 and cleaned.isdigit():
        return date(int(cleaned[:4]), int(cleaned[4:6]), int(cleaned[6:]))
    month, day, year = cleaned.split("/")
    return date(int(year), int(month), int(day))
