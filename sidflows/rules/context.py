"""What every rule reads: one frozen context per plan (referral, facts, protocol, calendar, days).

The rules take it as their first argument, plus the earlier decisions they
depend on as keyword arguments. Nothing in it is read from a clock, a database
or the environment: ``today`` and the protocol are given by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sidflows.calendar import UnitCalendar, add_months
from sidflows.protocol import Protocol
from sidflows.referral import ReferralDocument
from sidflows.rules.facts import Facts, derive_facts

HORIZON_MONTHS = 12


@dataclass(frozen=True, slots=True)
class PlanContext:
    """One child's referral on one day, as every rule of the plan sees it.

    ``start`` is the first day an item may be due (``today`` plus the unit's
    lead time); ``horizon_end`` the last day the plan covers. ``last_review`` is
    the day of the last plan review held (the store's record of the unit's own
    follow-up), so that a result already reviewed does not ask for a review again.
    """

    referral: ReferralDocument
    facts: Facts
    protocol: Protocol
    calendar: UnitCalendar
    today: date
    start: date
    horizon_end: date
    last_review: date | None = None

    def __post_init__(self) -> None:
        if self.facts.today != self.today:
            raise ValueError(f"facts derived on {self.facts.today}, context is for {self.today}")

    def cite(self, *paths: str) -> str:
        """The protocol's citations of these parameters (``Protocol.cite``)."""
        return self.protocol.cite(*paths)

    @classmethod
    def build(
        cls,
        referral: ReferralDocument,
        *,
        today: date,
        protocol: Protocol,
        calendar: UnitCalendar,
        last_review: date | None = None,
    ) -> PlanContext:
        """The context of the plan proposed on ``today``, ``HORIZON_MONTHS`` ahead."""
        return cls(
            referral=referral,
            facts=derive_facts(referral, today=today, protocol=protocol),
            protocol=protocol,
            calendar=calendar,
            today=today,
            start=today + timedelta(days=calendar.config.first_item_lead_days),
            horizon_end=add_months(today, HORIZON_MONTHS),
            last_review=last_review,
        )
