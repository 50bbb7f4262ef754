"""B-cell depletion after anti-CD20, CD19 CAR-T and other depleting treatments (§2.6).

Judged by its effect while it lasts, not by the treatment's dates alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sidflows.calendar import add_months
from sidflows.protocol import Protocol
from sidflows.referral import ReferralDocument, TreatmentEntry
from sidflows.rules.drugs import classes_of, drug_is


@dataclass(frozen=True, slots=True)
class BCellDepletion:
    """B-cell depletion after a B-cell-depleting treatment, while it lasts (§2.6).

    ``until`` None: until a CD19 count shows recovery (or while the treatment goes on).
    """

    reason: str
    until: date | None
    source_paths: tuple[str, ...]


def depleting_class(t: TreatmentEntry, protocol: Protocol) -> str | None:
    """The B-cell-depleting class a treatment is recognised as, whatever class the referral
    gives it (§2.6): its own class; else the class of its ATC row or of the class's curated
    names (config/codes.toml: rituximab referred as chemotherapy is anti_cd20), or of a drug
    of the regimen it names (R-CHOP contains rituximab, §8.3); else "other" for another
    B-cell-depleting drug (blinatumomab), by name, by its ATC row's drug or in a regimen.
    None: not B-cell depleting."""
    g = protocol.grading
    if t.drug_class in g.b_cell_depleting_classes:
        return t.drug_class
    classes = classes_of(t, protocol)
    for cls in g.b_cell_depleting_classes:
        if cls in classes:
            return cls
    if drug_is(t, g.other_b_cell_depleting_drugs, protocol):
        return "other"
    return None


def b_cell_depletion(
    referral: ReferralDocument, today: date, protocol: Protocol, valid_from: date
) -> BCellDepletion | None:
    """B-cell depletion after anti-CD20, CD19 CAR-T and other depleting treatments (§2.6).

    Judged by the counts: a CD19 count after the last dose below the laboratory's lower
    limit (or, without one, below the protocol's aplasia threshold) keeps it, whatever
    its age; only a fresh count at or above the lab's limit shows recovery. Counts never
    shorten the anti-CD20 window of the rituximab label. After CAR-T there is no window:
    depletion lasts until a count shows recovery.
    """
    g = protocol.grading
    recognised = [
        (t, kind)
        for t in referral.treatments
        if t.start <= today and (kind := depleting_class(t, protocol)) is not None
    ]
    if not recognised:
        return None
    depleting = [t for t, _ in recognised]
    ongoing = [t for t in depleting if t.end is None or t.end >= today]
    paths: tuple[str, ...] = ("grading.b_cell_depleting_classes",)
    if any(kind == "other" for _, kind in recognised):
        paths += ("grading.other_b_cell_depleting_drugs",)
    if ongoing:
        names = ", ".join(t.drug for t in ongoing)
        return BCellDepletion(
            f"B-cell depletion while {names} continue(s), and until B cells recover",
            None,
            paths,
        )
    last_dose = max(t.end or t.start for t in depleting)
    last_drug = max(depleting, key=lambda t: t.end or t.start).drug
    counts = [lab for lab in referral.labs if lab.cd19_per_ul is not None and lab.date > last_dose]
    count = max(counts, key=lambda lab: lab.date) if counts else None
    if count is not None and count.cd19_per_ul is not None:
        limit = count.cd19_lower_limit_per_ul
        threshold = limit if limit is not None else g.b_cell_aplasia_below_cd19_per_ul
        which = "the lab's lower limit" if limit is not None else "B-cell aplasia (Hill 2019)"
        if count.cd19_per_ul < threshold:
            return BCellDepletion(
                f"B-cell depletion after {last_drug} (last dose {last_dose}): CD19 "
                f"{count.cd19_per_ul:g}/uL on {count.date} below {which} {threshold:g}/uL; "
                "until B cells recover",
                None,
                (*paths, "grading.b_cell_aplasia_below_cd19_per_ul"),
            )
    recovered = (
        count is not None
        and count.cd19_per_ul is not None
        and count.cd19_lower_limit_per_ul is not None
        and count.cd19_per_ul >= count.cd19_lower_limit_per_ul
        and count.date >= valid_from
    )
    car_t = [t for t, kind in recognised if kind == "car_t"]
    if car_t and not recovered:
        drug = car_t[-1].drug
        return BCellDepletion(
            f"B-cell aplasia expected after {drug} (CAR-T, {span_of(car_t[-1])}): no fresh CD19 "
            "count at or above the lab's lower limit since; until B cells recover",
            None,
            paths,
        )
    cd20 = [t for t, kind in recognised if kind == "anti_cd20"]
    if cd20:
        cd20_last = max(t.end or t.start for t in cd20)
        until = add_months(cd20_last, g.anti_cd20_depletion_months)
        if today < until:
            return BCellDepletion(
                f"B-cell depletion after anti-CD20 (last dose {cd20_last}) until about {until} "
                "(rituximab label)",
                until,
                ("grading.anti_cd20_depletion_months",),
            )
    return None


def span_of(t: TreatmentEntry) -> str:
    return f"{t.start} to {t.end}" if t.end else f"since {t.start}"
