"""Safety holds while a re-plan waits: which items of the active plan must not go ahead (§4.8).

When a change in the record (a treatment change, a result) gives a new proposal,
the active plan stays in force until a clinician answers it. Some of its items
may have become unsafe meanwhile: a live vaccine after a new immunosuppressant,
a vaccine inside a new anti-CD20 window, an IG session after a decision to stop.
:func:`held_items` says which, each with its reason (naming the block) and its
source; the store holds them until the answer (docs/clinical-reference.md §4.8).

Like the other rules it reads no clock, database or environment: the caller
gives ``today``, the protocol and the proposal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any

from sidflows.calendar import UnitCalendar
from sidflows.protocol import Protocol
from sidflows.referral import ReferralDocument
from sidflows.rules.context import PlanContext
from sidflows.rules.grading import grade
from sidflows.rules.immunoglobulin import decide_immunoglobulin
from sidflows.rules.model import Block, IgDecision
from sidflows.rules.vaccination.blocks import (
    inactivated_blocks,
    influenza_blocks,
    is_live,
    live_vaccine_blocks,
)

HOLDS = "docs/clinical-reference.md §4.8"
INFLUENZA = "IIV"


@dataclass(frozen=True, slots=True)
class OpenItem:
    """An open item of the active plan, as the hold rule sees it."""

    key: str
    kind: str
    due: date
    vaccine: str | None = None
    live: bool = False

    @classmethod
    def of(cls, *, key: str, kind: str, due: date, details: Mapping[str, Any]) -> OpenItem:
        """An item from its entry in the plan document."""
        vaccine = details.get("vaccine") if kind == "vaccine_dose" else None
        live = bool(details.get("live", is_live(vaccine))) if vaccine is not None else False
        return cls(key=key, kind=kind, due=due, vaccine=vaccine, live=live)


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the hold rule reads of the new proposal.

    ``items`` maps each item key of the proposal to its day; ``start`` is the first
    day it could schedule anything (``today`` plus the unit's lead time); ``ig`` its
    immunoglobulin decision; the blocks are the ones its vaccination rules applied
    (§4: live vaccines, inactivated boosters, influenza).
    """

    version: int
    start: date
    items: Mapping[str, date]
    ig: IgDecision
    live_blocks: tuple[Block, ...] = ()
    inactivated_blocks: tuple[Block, ...] = ()
    influenza_blocks: tuple[Block, ...] = ()

    @classmethod
    def build(
        cls,
        referral: ReferralDocument,
        *,
        version: int,
        items: Mapping[str, date],
        today: date,
        protocol: Protocol,
        calendar: UnitCalendar,
    ) -> Proposal:
        """The proposal made from ``referral`` on ``today``: its decisions and blocks."""
        ctx = PlanContext.build(referral, today=today, protocol=protocol, calendar=calendar)
        ig = decide_immunoglobulin(ctx)
        return cls(
            version=version,
            start=ctx.start,
            items=MappingProxyType(dict(items)),
            ig=ig,
            live_blocks=tuple(live_vaccine_blocks(ctx, ig=ig, grading=grade(ctx))),
            inactivated_blocks=tuple(inactivated_blocks(ctx)),
            influenza_blocks=tuple(influenza_blocks(ctx)),
        )


@dataclass(frozen=True, slots=True)
class Hold:
    """An item of the active plan held until the clinician answers ``version``."""

    key: str
    version: int
    reason: str
    source: str

    @property
    def text(self) -> str:
        """The reason with its source, as the store and the coordinators see it."""
        return f"{self.reason} ({self.source})"


def held_items(
    items: Iterable[OpenItem], proposal: Proposal, *, today: date, protocol: Protocol
) -> tuple[Hold, ...]:
    """The open items of the active plan that wait for the clinician's answer, in order.

    An item is checked on its day, or today when its day has passed (it would be
    given late). Vaccines: held when a block of the proposal holds on that day (a
    live vaccine: the live-vaccine blocks; influenza: the influenza blocks; any other
    vaccine: the inactivated blocks, the anti-CD20 window among them), or when the
    proposal, which could have kept the dose on that day, gives it later or not at
    all. IG sessions: held when the proposal stops replacement on or before that
    day. Nothing else is held (§4.8).
    """
    found: list[Hold] = []
    for item in items:
        day = max(item.due, today)
        hold: tuple[str, str] | None = None
        if item.kind == "vaccine_dose":
            hold = _vaccine_hold(item, day, proposal)
        elif item.kind == "ig_session":
            hold = _ig_hold(day, proposal, protocol)
        if hold is not None:
            found.append(Hold(item.key, proposal.version, *hold))
    return tuple(found)


def _vaccine_hold(item: OpenItem, day: date, proposal: Proposal) -> tuple[str, str] | None:
    if item.live:
        what, blocks = "live vaccine blocked", proposal.live_blocks
    elif item.vaccine == INFLUENZA:
        what, blocks = "influenza vaccine blocked", proposal.influenza_blocks
    else:
        what, blocks = "vaccine blocked", proposal.inactivated_blocks
    for block in blocks:
        if block.holds_on(day):
            until = f" until {block.until}" if block.until else ""
            return f"{what} on {day}{until}: {block.reason}", f"{block.source}; {HOLDS}"
    if day < proposal.start:
        return None  # the proposal could not keep any item this early (the unit's lead time)
    kept = proposal.items.get(item.key)
    if kept is not None and kept <= day:
        return None
    change = f"moves it to {kept}" if kept is not None else "no longer gives it in the horizon"
    return (
        f"{item.vaccine or 'vaccine'} on {day}: plan v{proposal.version} {change}",
        f"docs/clinical-reference.md §4; {HOLDS}",
    )


def _ig_hold(day: date, proposal: Proposal, protocol: Protocol) -> tuple[str, str] | None:
    ig = proposal.ig
    if ig.status == "not_indicated":
        stop = None
    elif ig.status == "trial_off":
        stop = ig.sessions_until
        if stop is not None and day < stop:
            return None
    else:
        return None  # replacement continues (or no decision could be made): not stopped
    decision = next((d for d in ig.decisions if d.topic == "immunoglobulin"), None)
    said = f"{decision.decision}: {decision.rationale}" if decision else ig.status
    source = decision.source if decision else protocol.cite("immunoglobulin.trial_off_season_start")
    when = f"replacement stops on {stop}" if stop else "replacement stops"
    return (
        f"IG session on {day} after the decision to stop in plan v{proposal.version} "
        f"({when}): {said}",
        f"{source}; {HOLDS}",
    )


def kept_by(key: str, due: date, approved: Mapping[str, date]) -> bool:
    """A held item the approved plan still has, same key on the same day: released (§4.8)."""
    return approved.get(key) == due
