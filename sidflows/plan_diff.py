"""What a plan version changes against another, item by item: a pure comparison.

It knows nothing clinical: items are plan-document items (docs/formats.md §7),
compared by their ``key`` (stable across plan versions), then by their stream
(``stream``, given by the caller: items of one stream follow each other) for the
ones whose key changed with their day. The decisions' side of a comparison is
``sidflows.planning.plan_changes``.

- **moved**: the same key on another day; or, within one stream, an item gone
  and an item new paired in date order when no item of that stream kept its key
  between them (an IG session a week later has another key: ``ig_session:<day>``).
  A moved item's changes leave out the dates that moved with it by as many days;
- **changed**: the same key and day, another value (a dose, a target);
- **added**, **removed**: the rest.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Item = Mapping[str, Any]

# What an item's comparison leaves out: where it stands in the store, not what it plans.
NOT_COMPARED = frozenset({"key", "due", "status", "outcome", "booking", "booked_day"})


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Moved:
    before: Item
    after: Item
    changes: tuple[FieldChange, ...] = ()


@dataclass(frozen=True)
class Changed:
    before: Item
    after: Item
    changes: tuple[FieldChange, ...]


@dataclass(frozen=True)
class ItemDiff:
    added: tuple[Item, ...] = ()
    removed: tuple[Item, ...] = ()
    moved: tuple[Moved, ...] = ()
    changed: tuple[Changed, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.moved or self.changed)


def field_changes(before: Item, after: Item) -> tuple[FieldChange, ...]:
    """The planned values that differ (the key, the day and the store's state aside)."""
    names = sorted((set(before) | set(after)) - NOT_COMPARED)
    return tuple(
        FieldChange(name, before.get(name), after.get(name))
        for name in names
        if before.get(name) != after.get(name)
    )


def _day(value: Any) -> dt.date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def moved_changes(before: Item, after: Item) -> tuple[FieldChange, ...]:
    """A moved item's changes, without the dates that moved with it (by as many days)."""
    shift = dt.date.fromisoformat(str(after["due"])) - dt.date.fromisoformat(str(before["due"]))
    kept = []
    for change in field_changes(before, after):
        was, now = _day(change.before), _day(change.after)
        if was is not None and now is not None and now - was == shift:
            continue
        kept.append(change)
    return tuple(kept)


def _order(item: Item) -> tuple[str, str]:
    return (str(item["due"]), str(item["key"]))


def diff_items(
    before: Sequence[Item], after: Sequence[Item], *, stream: Callable[[Item], str]
) -> ItemDiff:
    """What ``after`` changes against ``before`` (each a list of plan-document items)."""
    old = {str(i["key"]): i for i in before}
    new = {str(i["key"]): i for i in after}
    moved: list[Moved] = []
    changed: list[Changed] = []
    kept_days: dict[str, tuple[list[str], list[str]]] = {}  # stream: kept days before, after
    for key in old.keys() & new.keys():
        b, a = old[key], new[key]
        days = kept_days.setdefault(stream(b), ([], []))
        days[0].append(str(b["due"]))
        days[1].append(str(a["due"]))
        if str(b["due"]) != str(a["due"]):
            moved.append(Moved(b, a, moved_changes(b, a)))
        elif changes := field_changes(b, a):
            changed.append(Changed(b, a, changes))
    for days in kept_days.values():
        days[0].sort()
        days[1].sort()

    def slot(item: Item, side: int) -> tuple[str, int]:
        """The item's stream, and how many items of it kept their key before its day."""
        name = stream(item)
        kept = kept_days.get(name, ([], []))[side]
        return name, bisect_left(kept, str(item["due"]))

    gone: dict[tuple[str, int], list[Item]] = {}
    for key in sorted(old.keys() - new.keys(), key=lambda k: _order(old[k])):
        gone.setdefault(slot(old[key], 0), []).append(old[key])
    arrived: dict[tuple[str, int], list[Item]] = {}
    for key in sorted(new.keys() - old.keys(), key=lambda k: _order(new[k])):
        arrived.setdefault(slot(new[key], 1), []).append(new[key])
    added: list[Item] = []
    removed: list[Item] = []
    for place in gone.keys() | arrived.keys():
        b_items, a_items = gone.get(place, []), arrived.get(place, [])
        pairs = min(len(b_items), len(a_items))
        moved.extend(
            Moved(b, a, moved_changes(b, a)) for b, a in zip(b_items, a_items, strict=False)
        )
        removed.extend(b_items[pairs:])
        added.extend(a_items[pairs:])
    return ItemDiff(
        added=tuple(sorted(added, key=_order)),
        removed=tuple(sorted(removed, key=_order)),
        moved=tuple(sorted(moved, key=lambda m: _order(m.before))),
        changed=tuple(sorted(changed, key=lambda c: _order(c.before))),
    )


def diff_document(diff: ItemDiff) -> dict[str, list[dict[str, Any]]]:
    """The comparison as plain JSON (docs/formats.md §11)."""

    def changes(found: tuple[FieldChange, ...]) -> list[dict[str, Any]]:
        return [{"field": c.field, "before": c.before, "after": c.after} for c in found]

    def brief(item: Item) -> dict[str, Any]:
        return {"key": item["key"], "kind": item["kind"], "due": item["due"]}

    return {
        "added": [brief(i) for i in diff.added],
        "removed": [brief(i) for i in diff.removed],
        "moved": [
            {
                "key": m.after["key"],
                "kind": m.after["kind"],
                "from_key": m.before["key"],
                "from": m.before["due"],
                "to": m.after["due"],
                "changes": changes(m.changes),
            }
            for m in diff.moved
        ],
        "changed": [
            {
                "key": c.after["key"],
                "kind": c.after["kind"],
                "due": c.after["due"],
                "changes": changes(c.changes),
            }
            for c in diff.changed
        ],
    }
