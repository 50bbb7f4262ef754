"""B-cell depletion after anti-CD20, CD19 CAR-T and other depleting treatments (§2.6).

Judged by its effect while it lasts, not by the treatment's dates alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sidflows.calendar import add_months
from sidflows.codes import class_for_drug_name, load_codes, treatment_class
from sidflows.protocol import Protocol
from sidflows.referral import ReferralDocument, TreatmentEntry
from sidflows.rules.drugs import classes_of, drug_is, regimen_of


@dataclass(frozen=True, slots=True)
class BCellDepletion:
    """B-cell depletion after a B-cell-depleting treatment, while it lasts (§2.6).

    ``until`` None: until a CD19 count shows recovery (or while the treatment goes on).
    """

    reason: str
    until: date | None
    source_paths: tuple[str, ...]
    # A low CD19 after another or unrecognised biologic (§2.10): lifted by a count only.
    by_count_after_biologic: bool = False


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
    """B-cell depletion after a depleting treatment (§2.6), or, after any other or
    unrecognised biologic, a CD19 count below the laboratory's limit (§2.10)."""
    found = _depletion(referral, today, protocol, valid_from)
    return found if found is not None else _low_cd19_after_biologic(referral, today, protocol)


def _unrecognised(t: TreatmentEntry, protocol: Protocol) -> bool:
    """A drug neither coded, named in config/codes.toml nor part of a known regimen."""
    if t.code is not None and treatment_class(t.code, load_codes()) is not None:
        return False
    return classes_of(t, protocol) == {t.drug_class} and (
        class_for_drug_name(t.drug, load_codes()) is None and regimen_of(t, protocol) is None
    )


def _low_cd19_after_biologic(
    referral: ReferralDocument, today: date, protocol: Protocol
) -> BCellDepletion | None:
    """§2.10: the newest CD19 count drawn after the start of another biologic or an
    unrecognised drug is below the lab's lower limit (or Hill 2019's 20/uL): B-cell
    depletion, whatever the drug, until a newer count shows recovery."""
    g = protocol.grading
    if not g.low_cd19_after_other_biologic_depletes:
        return None
    suspects = [
        t
        for t in referral.treatments
        if t.start <= today and (t.drug_class == "other_biologic" or _unrecognised(t, protocol))
    ]
    if not suspects:
        return None
    first = min(t.start for t in suspects)
    counts = [
        lab for lab in referral.labs if lab.cd19_per_ul is not None and first <= lab.date <= today
    ]
    if not counts:
        return None
    count = max(counts, key=lambda lab: lab.date)
    assert count.cd19_per_ul is not None
    limit = count.cd19_lower_limit_per_ul
    threshold = limit if limit is not None else g.b_cell_aplasia_below_cd19_per_ul
    if count.cd19_per_ul >= threshold:
        return None
    which = "the lab's lower limit" if limit is not None else "B-cell aplasia (Hill 2019)"
    drugs = ", ".join(t.drug for t in suspects if t.start <= count.date)
    return BCellDepletion(
        f"B-cell depletion: CD19 {count.cd19_per_ul:g}/uL on {count.date} below {which} "
        f"{threshold:g}/uL after {drugs} (another or unrecognised biologic, whatever its "
        "class): until B cells recover",
        None,
        (
            "grading.low_cd19_after_other_biologic_depletes",
            "grading.b_cell_aplasia_below_cd19_per_ul",
        ),
        by_count_after_biologic=True,
    )


def _depletion(
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
        if drug_is(car_t[-1], g.bcma_car_t_drugs, protocol):
            return BCellDepletion(
                f"after {drug} (BCMA-directed CAR-T, {span_of(car_t[-1])}): not B-cell aplasia "
                "as such, but plasma-cell depletion with profound hypogammaglobulinaemia and "
                "profound immunosuppression; no fresh CD19 count at or above the lab's lower "
                "limit since; until immune recovery is shown",
                None,
                (*paths, "grading.bcma_car_t_drugs"),
            )
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
