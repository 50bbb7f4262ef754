"""Daylight saving: the instants the flows give Prefect, in the unit's timezone.

Item runs at 07:30 local on their day (``flows.runtime.scheduled_time``), the
reconciliation's look-ahead (``flows.projection.lookahead``, whose day's 07:30
is its horizon), "today in the unit" near midnight UTC (``calendar.today``), and
the daily sweep's cron with the unit's timezone as Prefect's own schedule
computes it (``prefect.server.schemas.schedules.CronSchedule``, no server):
around the 2026 changes in Europe/Madrid (the shipped calendar: 29 March and
25 October) and in America/New_York (a unit's own calendar file: 8 March and
1 November).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pendulum
import pytest
from prefect.client.schemas.schedules import CronSchedule
from prefect.server.schemas.schedules import CronSchedule as ServerCronSchedule

from flows import deployments, projection, runtime
from sidflows.calendar import load_calendar
from sidflows.settings import get_settings

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "calendar.toml"
UTC = dt.UTC
MADRID, NEW_YORK = "Europe/Madrid", "America/New_York"
# The Sunday of each change of 2026 and the UTC offsets (hours) before and after it.
CHANGES = {
    MADRID: ((dt.date(2026, 3, 29), 1, 2), (dt.date(2026, 10, 25), 2, 1)),
    NEW_YORK: ((dt.date(2026, 3, 8), -5, -4), (dt.date(2026, 11, 1), -4, -5)),
}
WEEK = 7
MADRID_DAYS = {
    dt.date(2026, 3, 28): "06:30Z",
    dt.date(2026, 3, 29): "05:30Z",
    dt.date(2026, 10, 24): "05:30Z",
    dt.date(2026, 10, 25): "06:30Z",
}


def _window(change: dt.date) -> list[dt.date]:
    return [change + dt.timedelta(days=n) for n in range(-WEEK, WEEK + 1)]


def _unit_calendar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zone: str, **settings: object
) -> None:
    """The flows' unit (flows.runtime.unit) with a calendar file in ``zone``."""
    text = SHIPPED.read_text(encoding="utf-8")
    text = text.replace('timezone = "Europe/Madrid"', f'timezone = "{zone}"')
    if zone == NEW_YORK:
        text = text.replace('holidays_country = "ES"', 'holidays_country = "US"')
        text = text.replace('holidays_subdivision = "CT"', 'holidays_subdivision = "NY"')
    for name, value in settings.items():
        text, found = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value}", text)
        assert found == 1, name
    # A new name for each file: the unit's files are read once per path.
    path = tmp_path / f"calendar-{zone.replace('/', '-')}-{len(list(tmp_path.iterdir()))}.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("SIDFLOWS_CALENDAR", str(path))
    get_settings.cache_clear()
    runtime.unit.cache_clear()
    assert runtime.calendar().config.timezone == zone
    for name, value in settings.items():
        assert getattr(runtime.calendar().config, name) == value


@pytest.fixture(autouse=True)
def _fresh_unit() -> Iterator[None]:
    """The flows' unit is built once per process: build it again around each test."""
    get_settings.cache_clear()
    runtime.unit.cache_clear()
    yield
    get_settings.cache_clear()
    runtime.unit.cache_clear()


@pytest.fixture(params=[MADRID, NEW_YORK])
def zone(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == MADRID:
        monkeypatch.delenv("SIDFLOWS_CALENDAR", raising=False)
        get_settings.cache_clear()
        runtime.unit.cache_clear()
        assert runtime.calendar().config.timezone == MADRID  # the shipped calendar
    else:
        _unit_calendar(tmp_path, monkeypatch, name)
    return name


def _at(day: dt.date, hour: int, minute: int, offset_hours: int) -> dt.datetime:
    """``hour:minute`` on ``day`` at a UTC offset, as a UTC instant."""
    at_offset = dt.timezone(dt.timedelta(hours=offset_hours))
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=at_offset).astimezone(UTC)


# ----------------------------------------------------------------------------- item runs


def test_item_runs_are_at_0730_local_across_the_changes(zone: str) -> None:
    """07:30 local on its day, every day of both weeks around each change: in Madrid
    06:30Z in winter and 05:30Z in summer. The day before and after are 23 h apart in
    spring and 25 h in autumn; in local time always 24 h and the same day."""
    tz = ZoneInfo(zone)
    for change, before, after in CHANGES[zone]:
        days = _window(change)
        runs = [runtime.scheduled_time(day) for day in days]
        for day, run in zip(days, runs, strict=True):
            offset = after if day >= change else before
            assert run.tzinfo is not None, "a naive run time"
            assert run.astimezone(UTC) == _at(day, 7, 30, offset), (day, run)
            local = run.astimezone(tz)
            assert (local.date(), local.time()) == (day, dt.time(7, 30)), (day, local)
        gaps = Counter(
            (b.astimezone(UTC) - a.astimezone(UTC)) // dt.timedelta(hours=1)
            for a, b in itertools.pairwise(runs)
        )
        spring = after > before
        assert gaps == {24: 2 * WEEK - 1, (23 if spring else 25): 1}, gaps
        assert len({r.astimezone(UTC) for r in runs}) == len(days), "two days share a run time"
    if zone == MADRID:  # the figures, written out
        utc = {d: runtime.scheduled_time(d).astimezone(UTC).strftime("%H:%MZ") for d in MADRID_DAYS}
        assert utc == MADRID_DAYS


@pytest.mark.parametrize("days", [42, 7], ids=["shipped-42-days", "a-unit-s-7-days"])
def test_the_look_ahead_horizon_is_0730_local_on_its_day_across_the_changes(
    zone: str, days: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconciliation keeps a run due on the look-ahead's last day (its 07:30 is the
    horizon, at the UTC offset of that day, not of the sweep's) and leaves alone one due
    the day after, whichever side of a change the sweep and the horizon fall on."""
    if days != 42:
        _unit_calendar(tmp_path, monkeypatch, zone, prefect_lookahead_days=days)
    assert runtime.calendar().config.prefect_lookahead_days == days
    tz = ZoneInfo(zone)
    for change, before, after in CHANGES[zone]:
        for last in _window(change):
            swept = last - dt.timedelta(days=days)  # the sweep whose horizon is ``last``
            until = projection.lookahead(swept)
            assert until == last
            horizon = runtime.scheduled_time(until)
            offset = after if last >= change else before
            assert horizon.astimezone(UTC) == _at(last, 7, 30, offset), (swept, horizon)
            assert horizon.astimezone(tz).date() == last
            # What projection.reconcile compares: a run's start against the horizon.
            assert not runtime.scheduled_time(last) > horizon
            assert runtime.scheduled_time(last + dt.timedelta(days=1)) > horizon
            assert runtime.scheduled_time(last - dt.timedelta(days=1)) < horizon


# ----------------------------------------------------------------------------- today


# (UTC instant, the unit's date then): around midnight local and the change itself.
TODAY_CASES = {
    MADRID: [
        ("2026-03-28T22:59:00", "2026-03-28"),  # 23:59 CET
        ("2026-03-28T23:30:00", "2026-03-29"),  # 00:30 CET: UTC is still on the 28th
        ("2026-03-29T00:59:00", "2026-03-29"),  # 01:59 CET, then the clocks jump
        ("2026-03-29T01:00:00", "2026-03-29"),  # 03:00 CEST
        ("2026-03-29T21:59:00", "2026-03-29"),  # 23:59 CEST
        ("2026-03-29T22:30:00", "2026-03-30"),  # 00:30 CEST: UTC is still on the 29th
        ("2026-10-24T21:59:00", "2026-10-24"),  # 23:59 CEST
        ("2026-10-24T22:30:00", "2026-10-25"),  # 00:30 CEST
        ("2026-10-25T00:30:00", "2026-10-25"),  # 02:30 CEST, the first time
        ("2026-10-25T01:30:00", "2026-10-25"),  # 02:30 CET, the second time
        ("2026-10-25T22:59:00", "2026-10-25"),  # 23:59 CET
        ("2026-10-25T23:30:00", "2026-10-26"),  # 00:30 CET
    ],
    NEW_YORK: [
        ("2026-03-08T04:30:00", "2026-03-07"),  # 23:30 EST: UTC is already on the 8th
        ("2026-03-08T05:30:00", "2026-03-08"),  # 00:30 EST
        ("2026-03-08T06:59:00", "2026-03-08"),  # 01:59 EST, then the clocks jump
        ("2026-03-08T07:00:00", "2026-03-08"),  # 03:00 EDT
        ("2026-03-09T03:30:00", "2026-03-08"),  # 23:30 EDT: UTC is already on the 9th
        ("2026-03-09T04:30:00", "2026-03-09"),  # 00:30 EDT
        ("2026-11-01T03:30:00", "2026-10-31"),  # 23:30 EDT
        ("2026-11-01T04:30:00", "2026-11-01"),  # 00:30 EDT
        ("2026-11-01T05:30:00", "2026-11-01"),  # 01:30 EDT, the first time
        ("2026-11-01T06:30:00", "2026-11-01"),  # 01:30 EST, the second time
        ("2026-11-02T04:30:00", "2026-11-01"),  # 23:30 EST
        ("2026-11-02T05:30:00", "2026-11-02"),  # 00:30 EST
    ],
}


def test_today_in_the_unit_is_the_local_date_near_midnight_utc(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """calendar.today (and the flows' runtime.today) is the unit's date, not UTC's, around
    midnight and through the skipped and the repeated hour."""
    clock = {"at": pendulum.datetime(2026, 1, 1, tz="UTC")}

    def now(tz: str | pendulum.Timezone | None = None) -> pendulum.DateTime:
        return clock["at"].in_timezone(tz or "UTC")

    monkeypatch.setattr(pendulum, "now", now)
    calendar = runtime.calendar()
    got, wanted = [], []
    for instant, day in TODAY_CASES[zone]:
        clock["at"] = pendulum.parse(instant + "Z")  # type: ignore[assignment]
        got.append((instant, calendar.today().isoformat(), runtime.today(None).isoformat()))
        wanted.append((instant, day, day))
    assert got == wanted
    assert load_calendar().config.timezone == zone


# ----------------------------------------------------------------------------- the sweep's cron


def _sweep_schedule() -> ServerCronSchedule:
    """The daily-sweep's schedule as `sidflows serve` deploys it, as Prefect's server reads it."""
    (sweep,) = [d for d in deployments.deployments(with_triggers=False) if d.name == "daily-sweep"]
    (schedule,) = [s.schedule for s in sweep.schedules or []]
    assert isinstance(schedule, CronSchedule)
    return ServerCronSchedule(**schedule.model_dump())


def test_the_sweep_cron_runs_once_a_day_at_0700_local_across_the_changes(zone: str) -> None:
    """Prefect's CronSchedule with the unit's timezone: over each fortnight around a change,
    exactly one sweep per local day, each at 07:00 local, from a start given in local time
    or in UTC, and the next run after each one is the next day's 07:00."""
    schedule = _sweep_schedule()
    assert (schedule.cron, schedule.timezone) == (deployments.SWEEP_CRON, zone)
    tz = ZoneInfo(zone)
    for change, before, after in CHANGES[zone]:
        days = _window(change)
        start = dt.datetime.combine(days[0], dt.time(0), tzinfo=tz)
        end = dt.datetime.combine(days[-1], dt.time(23, 59), tzinfo=tz)
        for first in (start, start.astimezone(UTC)):
            runs = asyncio.run(schedule.get_dates(start=first, end=end))
            local = [r.astimezone(tz) for r in runs]
            assert [r.date() for r in local] == days, "a day swept twice, or not at all"
            assert {r.time() for r in local} == {dt.time(7, 0)}
            assert [r.astimezone(UTC) for r in runs] == [
                _at(day, 7, 0, after if day >= change else before) for day in days
            ]
        # The scheduler asks for the runs after the latest one: one a day, never two.
        at = start
        for day in days:
            (run,) = asyncio.run(schedule.get_dates(n=1, start=at))
            assert run.astimezone(tz) == dt.datetime.combine(day, dt.time(7), tzinfo=tz)
            at = run + dt.timedelta(seconds=1)
