"""When vaccine titres are drawn (§6.3, §6.8): not while IG's IgG is measured instead, nor in
the weeks after the plan's own vaccine doses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from sidflows.protocol import Protocol
from sidflows.rules.context import PlanContext
from sidflows.rules.immunoglobulin import IgDecision
from sidflows.rules.model import Decision, Item
from sidflows.rules.vaccination.blocks import first_free_day, holding, ig_blocks

# The after-chemotherapy panel's word for the child's vaccine titres (§6.2).
SERIES_TITRES = "vaccine titres"

Wanted = tuple[date, tuple[str, ...], str, str]


def is_titre(entry: str, protocol: Protocol) -> bool:
    """A panel entry that measures antibodies to a vaccine (§6.8)."""
    words = protocol.reassessment.titre_panel_words.values()
    return entry in words or "titre" in entry.lower()


AFTER_IG = ": titres after the IG interval"
# How a titre moved to the weeks after the plan's own doses says so in its reason.
AFTER_DOSES = "weeks after the vaccine doses of"


def titres_after_ig(
    ctx: PlanContext, ig: IgDecision, wanted: list[Wanted]
) -> tuple[list[Wanted], list[Decision]]:
    """Vaccine titres measure IG's IgG while it is given and for the antibody interval after
    the last dose (§6.8): moved to the first day the interval has passed, or, while IG
    continues (or beyond the horizon), not booked and said uninterpretable."""
    protocol = ctx.protocol
    if not protocol.vaccination.defer_titres_on_ig:
        return wanted, []
    blocks = ig_blocks(ctx, ig=ig, what="vaccine titres")
    if not blocks:
        return wanted, []
    kept: list[Wanted] = []
    moved: dict[date | None, list[str]] = {}
    for when, panel, reason, source in wanted:
        titres = tuple(p for p in panel if is_titre(p, protocol))
        day = max(when, ctx.start)
        if not titres or first_free_day(blocks, day) == day:
            kept.append((when, panel, reason, source))
            continue
        rest = tuple(p for p in panel if p not in titres)
        if rest:
            kept.append((when, rest, reason, source))
        free = first_free_day(blocks, day)
        if free is not None:
            free = ctx.calendar.next_working_day(free)
        if free is not None and free <= ctx.horizon_end:
            kept.append((free, titres, f"{reason}{AFTER_IG}", source))
            moved.setdefault(free, []).extend(titres)
        else:
            moved.setdefault(None, []).extend(titres)
    notes: list[Decision] = []
    held = holding(blocks, ctx.start, None)
    why = "; ".join(b.reason for b in held) or "immunoglobulin"
    cite = ctx.cite("vaccination.defer_titres_on_ig", "vaccination.antibody_interval.ivig_rows")
    for booked, entries in moved.items():
        names = ", ".join(dict.fromkeys(entries))
        if booked is None:
            notes.append(
                Decision(
                    "reassessment",
                    f"vaccine titres not booked: uninterpretable on IG ({names})",
                    f"{why}: the IgG of immunoglobulin carries the antibodies a titre measures; "
                    "book them once IG has stopped and its antibody interval has passed",
                    cite,
                )
            )
        else:
            notes.append(
                Decision(
                    "reassessment",
                    f"vaccine titres from {booked}, after the IG interval ({names})",
                    f"{why}: a titre drawn before it measures the infused IgG",
                    cite,
                )
            )
    return kept, notes


def titres_after_doses(
    ctx: PlanContext, wanted: list[Wanted], dose_days: tuple[date, ...]
) -> list[Wanted]:
    """Vaccine titres of a lab series (after chemotherapy, §6.2) that would be drawn on or
    within the weeks after this plan's vaccine doses measure neither the baseline nor the
    response: they move to the weeks after the doses (§6.3: 6-8 weeks, the earliest)."""
    weeks = timedelta(weeks=ctx.protocol.vaccination.hsct.titres_after_series_weeks)
    kept: list[Wanted] = []
    for when, panel, reason, source in wanted:
        # The lab series' own word (§6.2), not the titres of a series or a baseline asked
        # for before a vaccine (§3.1), which are timed by their own rules.
        titres = tuple(p for p in panel if p == SERIES_TITRES)
        day = ctx.calendar.next_working_day(max(when, ctx.start))
        recent = [d for d in dose_days if day - weeks < d < day]
        if titres and day in dose_days and not recent:
            kept.append((when, panel, f"{reason}: titres drawn before the day's vaccines", source))
            continue
        if not titres or not recent:
            kept.append((when, panel, reason, source))
            continue
        rest = tuple(p for p in panel if p not in titres)
        if rest:
            kept.append((when, rest, reason, source))
        last = max(recent)
        day = last + weeks
        # Not into the weeks after a later dose either: after the last dose that would be.
        while later := [d for d in dose_days if day - weeks < d < day]:
            last = max(later)
            day = last + weeks
        kept.append(
            (
                day,
                titres,
                f"{reason}: titres {weeks.days // 7} {AFTER_DOSES} {last}",
                f"{source}; {ctx.cite('vaccination.hsct.titres_after_series_weeks')}",
            )
        )
    return kept


def response_titres(ig: IgDecision, items: Sequence[Item]) -> list[tuple[date, str]]:
    """The pneumococcal titres after the plan's first PPSV23 dose, where the IG decision asks
    for a specific antibody response (§3.1): (the dose's day, the panel word), timed like
    the titres after a series (§6.3)."""
    if ig.asks is None:
        return []
    wanted = [p for p in ig.asks[0] if "pneumococcal" in p]
    ppsv = sorted(i.due for i in items if getattr(i, "vaccine", "") == "PPSV23")
    return [(ppsv[0], wanted[0])] if wanted and ppsv else []
