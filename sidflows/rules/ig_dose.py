"""An immunoglobulin dose in grams: whole vials, never below the proposal (§3.12).

docs/clinical-reference.md §3.2, §3.3 and §3.12: doses are rounded to the unit's vial or
pack sizes and never exceed the configured maximum per kg; the proposed dose is the
clinical intent, so rounding goes up to the next whole-vial total unless that would
exceed the maximum, and the rationale says which way it went.
"""

from __future__ import annotations

from functools import cache
from math import ceil

from sidflows.protocol import RouteDosing

_UNIT = 0.1  # grams: resolution of the vial arithmetic


@cache
def _achievable(vials: tuple[float, ...], max_units: int) -> frozenset[int]:
    """Every total (in 0.1 g units) that whole vials can make, up to ``max_units``."""
    sizes = sorted({round(v / _UNIT) for v in vials})
    reach = [False] * (max_units + 1)
    reach[0] = True
    for total in range(1, max_units + 1):
        reach[total] = any(total >= s and reach[total - s] for s in sizes)
    return frozenset(i for i in range(1, max_units + 1) if reach[i])


def round_to_vials(
    target_g: float, low_g: float, high_g: float, vials: tuple[float, ...]
) -> tuple[float, bool]:
    """The smallest whole-vial total at or above ``target_g`` within [low_g, high_g] (§3.12).

    The proposed dose is the clinical intent: rounding never goes below it, unless every
    total at or above it exceeds ``high_g`` (the maximum per kg); then the largest total
    within the range. Returns (grams, exact) where exact is False when no whole-vial
    total fits the range and the dose (a partial vial, to 0.1 g, not below the target
    unless the range forbids it) is kept instead.
    """
    high_units = int(high_g / _UNIT + 1e-9)
    low_units = ceil(low_g / _UNIT - 1e-9)
    target_units = max(ceil(target_g / _UNIT - 1e-6), low_units)
    made = _achievable(tuple(vials), max(high_units, 1))
    candidates = sorted(u for u in made if low_units <= u <= high_units)
    if not candidates:
        # A partial vial, measured to 0.1 g, still inside [low_g, high_g].
        if high_units < max(low_units, 1):
            return round(target_g, 1), False
        return round(min(target_units, high_units) * _UNIT, 1), False
    above = [u for u in candidates if u >= target_units]
    best = above[0] if above else candidates[-1]
    return round(best * _UNIT, 1), True


def _vials_note(grams: float, target: float, high: float, exact: bool) -> str:
    """How the rounding went, in words for the rationale (§3.12)."""
    if not exact:
        return ""
    if grams + 1e-9 >= round(target, 1):
        return "rounded up to whole vials, never below the proposed dose"
    return (
        f"rounded down: a whole-vial total at or above {target:.2f} g would exceed the "
        f"maximum ({high:.2f} g): below the proposed dose, clinician to check"
    )


def dose_for(
    dosing: RouteDosing, weight_kg: float, g_per_kg: float, *, ceiling_g_per_kg: float | None = None
) -> tuple[float, str]:
    """Grams for a g/kg dose, rounded to whole vials within [min, ceiling] g/kg.

    The ceiling is the route's maximum, except for a loading dose, whose own
    g/kg is its ceiling (it is larger than the maintenance maximum on purpose).
    """
    target = g_per_kg * weight_kg
    ceiling = dosing.max_g_per_kg if ceiling_g_per_kg is None else ceiling_g_per_kg
    grams, exact = round_to_vials(
        target,
        dosing.min_g_per_kg * weight_kg,
        ceiling * weight_kg,
        dosing.vial_sizes_g,
    )
    note = (
        f"{g_per_kg:.3g} g/kg x {weight_kg:g} kg = {target:.2f} g, "
        f"{_vials_note(grams, target, ceiling * weight_kg, exact)} "
        f"({', '.join(f'{v:g}' for v in dosing.vial_sizes_g)} g): {grams:g} g"
        if exact
        else f"{g_per_kg:.3g} g/kg x {weight_kg:g} kg = {grams:g} g: no whole-vial total fits "
        f"{dosing.min_g_per_kg:g}-{dosing.max_g_per_kg:g} g/kg, pharmacy to draw a partial vial"
    )
    return grams, note
