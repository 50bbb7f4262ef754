"""B-cell depletion after anti-CD20, CD19 CAR-T and other depleting treatments (§2.6).

Judged by its effect while it lasts, not by the treatment's dates alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sidflows.calendar import add_months, age_in_months
from sidflows.codes import class_for_drug_name, load_codes, treatment_class
from sidflows.protocol import Protocol
from sidflows.referral import LabEntry, ReferralDocument, TreatmentEntry
from sidflows.rules.drugs import classes_of, counts_as_immunosuppressive, drug_is, regimen_of


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


@dataclass(frozen=True, slots=True)
class Cd19Limit:
    """The lower limit a CD19 count is judged against, and which one it is (§2.13)."""

    per_ul: float
    which: str
    source_paths: tuple[str, ...]

    @property
    def shown(self) -> str:
        """The limit in words: which one, its value, and that the lab gave none."""
        given = "" if not self.source_paths else " (no lab limit given)"
        return f"{self.which} {self.per_ul:g}/uL{given}"


def cd19_limit(lab: LabEntry, age_months: int, protocol: Protocol) -> Cd19Limit:
    """The laboratory's lower limit; without one, the protocol's age row (the unit's lab
    ranges, when configured), else the published aplasia threshold (Hill 2019, §2.13)."""
    if lab.cd19_lower_limit_per_ul is not None:
        return Cd19Limit(lab.cd19_lower_limit_per_ul, "the lab's lower limit", ())
    g = protocol.grading
    for row in g.cd19_lower_limit:
        if age_months < row.below_age_months:
            return Cd19Limit(
                row.per_ul,
                "the protocol's age table",
                ("grading.cd19_lower_limit",),
            )
    return Cd19Limit(
        g.b_cell_aplasia_below_cd19_per_ul,
        "B-cell aplasia (Hill 2019)",
        ("grading.b_cell_aplasia_below_cd19_per_ul",),
    )


def cd19_recovered(
    lab: LabEntry | None, age_months: int, protocol: Protocol
) -> tuple[bool, Cd19Limit] | None:
    """Whether a CD19 count is at or above its limit (§2.13); None without a count."""
    if lab is None or lab.cd19_per_ul is None:
        return None
    limit = cd19_limit(lab, age_months, protocol)
    return lab.cd19_per_ul >= limit.per_ul, limit


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


def cd19_predates(referral: ReferralDocument, today: date, protocol: Protocol) -> str | None:
    """The B-cell-depleting (or other or unrecognised biologic) treatment started since the
    newest CD19 count was drawn: that count says nothing of the B cells now (§2.13). None:
    no count, or none started since."""
    counts = [lab for lab in referral.labs if lab.cd19_per_ul is not None and lab.date <= today]
    if not counts:
        return None
    newest = max(lab.date for lab in counts)
    since = [
        t
        for t in referral.treatments
        if newest < t.start <= today
        and (
            depleting_class(t, protocol) is not None
            or t.drug_class == "other_biologic"
            or _unrecognised(t, protocol)
        )
    ]
    return max(since, key=lambda t: t.start).drug if since else None


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
        if t.start <= today
        and (t.drug_class == "other_biologic" or _unrecognised(t, protocol))
        and counts_as_immunosuppressive(t, protocol)
        and not drug_is(t, g.low_cd19_not_depletion_drugs, protocol)
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
    limit = cd19_limit(count, age_in_months(referral.patient.birth_date, count.date), protocol)
    if count.cd19_per_ul >= limit.per_ul:
        return None
    drugs = ", ".join(t.drug for t in suspects if t.start <= count.date)
    return BCellDepletion(
        f"B-cell depletion: CD19 {count.cd19_per_ul:g}/uL on {count.date} below "
        f"{limit.shown} after {drugs} (another or unrecognised biologic, whatever its "
        "class): until B cells recover",
        None,
        (
            "grading.low_cd19_after_other_biologic_depletes",
            "grading.b_cell_aplasia_below_cd19_per_ul",
            *limit.source_paths,
        ),
        by_count_after_biologic=True,
    )


def _depletion(
    referral: ReferralDocument, today: date, protocol: Protocol, valid_from: date
) -> BCellDepletion | None:
    """B-cell depletion after anti-CD20, CD19 CAR-T and other depleting treatments (§2.6).

    Judged by the counts: a CD19 count after the last dose below the laboratory's lower
    limit (or, without one, below the protocol's aplasia threshold) keeps it, whatever
    its age; only a fresh count at or above its limit (the lab's, else §2.13) shows
    recovery. Counts never shorten the anti-CD20 window of the rituximab label. After
    CAR-T there is no window: depletion lasts until a count shows recovery.
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
    judged = (
        cd19_recovered(count, age_in_months(referral.patient.birth_date, count.date), protocol)
        if count is not None
        else None
    )
    if count is not None and count.cd19_per_ul is not None and judged is not None:
        above, limit = judged
        if not above:
            return BCellDepletion(
                f"B-cell depletion after {last_drug} (last dose {last_dose}): CD19 "
                f"{count.cd19_per_ul:g}/uL on {count.date} below {limit.shown}; "
                "until B cells recover",
                None,
                (*paths, "grading.b_cell_aplasia_below_cd19_per_ul", *limit.source_paths),
            )
    recovered = count is not None and judged is not None and judged[0] and count.date >= valid_from
    car_t = [t for t, kind in recognised if kind == "car_t"]
    if car_t and not recovered:
        drug = car_t[-1].drug
        if drug_is(car_t[-1], g.bcma_car_t_drugs, protocol):
            return BCellDepletion(
                f"after {drug} (BCMA-directed CAR-T, {span_of(car_t[-1])}): not B-cell aplasia "
                "as such, but plasma-cell depletion with profound hypogammaglobulinaemia and "
                "profound immunosuppression; no fresh CD19 count at or above its lower "
                "limit since; until immune recovery is shown",
                None,
                (*paths, "grading.bcma_car_t_drugs"),
            )
        return BCellDepletion(
            f"B-cell aplasia expected after {drug} (CAR-T, {span_of(car_t[-1])}): no fresh CD19 "
            "count at or above its lower limit since; until B cells recover",
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
