"""What the record names and codes: drugs and codes the tables do not know, and entries of
one drug that contradict each other (docs/clinical-reference.md §6.7, §8.2, §8.4)."""

from __future__ import annotations

from datetime import date

from sidflows.calendar import add_months
from sidflows.codes import (
    class_for_drug_name,
    diagnosis_group,
    drug_for_atc,
    fold,
    load_codes,
    treatment_class,
    words_match,
)
from sidflows.protocol import Protocol
from sidflows.referral import ICD10_SYSTEM, ReferralDocument, TreatmentEntry
from sidflows.rules.drugs import not_immunosuppressive, regimen_of


def drug_recognition(
    referral: ReferralDocument, protocol: Protocol
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(drugs the protocol does not know, class mismatches between ATC and the referral)."""
    unknown: list[str] = []
    mismatch: list[str] = []
    codes = load_codes()
    for t in referral.treatments:
        coded = treatment_class(t.code, codes) if t.code is not None else None
        if coded is not None:
            if coded.value != t.drug_class:
                mismatch.append(
                    f"{t.drug}: ATC {t.code} is {coded.value.replace('_', ' ')} ({coded.source}) "
                    f"but the referral says {t.drug_class.replace('_', ' ')}"
                )
            continue
        if is_unrecognised(t, protocol):
            unknown.append(t.drug + (f" (code {t.code})" if t.code else ""))
    return tuple(dict.fromkeys(unknown)), tuple(dict.fromkeys(mismatch))


def is_unrecognised(t: TreatmentEntry, protocol: Protocol) -> bool:
    """Neither an ATC code, a curated name or brand (config/codes.toml), a known regimen
    nor a drug the protocol counts as not immunosuppressive (§8.2)."""
    codes = load_codes()
    if t.code is not None and treatment_class(t.code, codes) is not None:
        return False
    return (
        class_for_drug_name(t.drug, codes) is None
        and regimen_of(t, protocol) is None
        and not_immunosuppressive(t, protocol) is None
    )


def unrecognised_biologic_until(t: TreatmentEntry, protocol: Protocol) -> date | None:
    """How long an unrecognised drug referred as another biologic holds live vaccines and
    grades high (§8.2): its class tells nothing of the wait after it (a rituximab under a
    name the tables lack waits 6 months), so the protocol's longest wait applies, from its
    end, until the clinician names the drug. None: not such a drug, or still given."""
    if t.drug_class != "other_biologic" or t.end is None or not is_unrecognised(t, protocol):
        return None
    return add_months(t.end, protocol.grading.unrecognised_drug_hold_months)


def _drug_identity(t: TreatmentEntry, protocol: Protocol) -> str:
    """One name per drug: its ATC row's drug, the protocol's name for it, or its own text."""
    if t.code is not None:
        coded = drug_for_atc(t.code)
        if coded is not None and coded.drug is not None:
            return coded.drug
    g = protocol.grading
    for names in (g.methotrexate_names, g.azathioprine_names, g.mercaptopurine_names):
        if words_match(t.drug, names) is not None:
            return names[0]
    return fold(t.drug).lower().strip()


def _dose_kinds(t: TreatmentEntry) -> tuple[str, ...]:
    kinds = []
    if t.dose_mg_per_kg_week is not None:
        kinds.append("weekly")
    if t.dose_mg_per_kg_day is not None or t.dose_mg_day is not None:
        kinds.append("daily")
    return tuple(kinds)


def _dose_text(t: TreatmentEntry) -> str:
    parts = []
    if t.dose_mg_per_kg_week is not None:
        parts.append(f"{t.dose_mg_per_kg_week:g} mg/kg/week")
    if t.dose_mg_per_kg_day is not None:
        parts.append(f"{t.dose_mg_per_kg_day:g} mg/kg/day")
    if t.dose_mg_day is not None:
        parts.append(f"{t.dose_mg_day:g} mg/day")
    span = f"{t.start} to {t.end}" if t.end else f"since {t.start}"
    return f"{t.drug!r} {' and '.join(parts)} ({span})"


# Two daily doses of one entry (mg/day and mg/kg/day at the recorded weight) within 10 %
# of each other are one dose written twice (rounding); beyond it they contradict (§6.7).
DAILY_DOSES_AGREE = 0.10


def dose_conflicts(referral: ReferralDocument, protocol: Protocol) -> tuple[str, ...]:
    """Entries of one drug whose periods overlap, one with a weekly dose and one with a
    daily dose (or one entry giving both, or two daily doses that disagree at the child's
    weight): the record contradicts itself (§6.7)."""
    found: list[str] = []
    weight_kg = referral.patient.weight_kg
    treatments = list(referral.treatments)
    for t in treatments:
        if len(_dose_kinds(t)) == 2:
            found.append(
                f"{_drug_identity(t, protocol)}: one entry gives a weekly and a daily dose: "
                f"{_dose_text(t)}"
            )
        elif (
            t.dose_mg_day is not None
            and t.dose_mg_per_kg_day is not None
            and abs(t.dose_mg_per_kg_day * weight_kg - t.dose_mg_day)
            > DAILY_DOSES_AGREE * max(t.dose_mg_day, t.dose_mg_per_kg_day * weight_kg)
        ):
            found.append(
                f"{_drug_identity(t, protocol)}: one entry gives two daily doses that disagree "
                f"at {weight_kg:g} kg: {_dose_text(t)} ({t.dose_mg_per_kg_day:g} mg/kg/day = "
                f"{t.dose_mg_per_kg_day * weight_kg:g} mg/day); the higher is graded (cautious)"
            )
    for i, a in enumerate(treatments):
        for b in treatments[i + 1 :]:
            if _drug_identity(a, protocol) != _drug_identity(b, protocol):
                continue
            overlap = a.start <= (b.end or date.max) and b.start <= (a.end or date.max)
            kinds = {*_dose_kinds(a), *_dose_kinds(b)}
            if overlap and kinds == {"weekly", "daily"} and _dose_kinds(a) != _dose_kinds(b):
                found.append(
                    f"{_drug_identity(a, protocol)}: {_dose_text(a)} and {_dose_text(b)} "
                    "overlap, one weekly and one daily"
                )
    return tuple(dict.fromkeys(found))


def unrecognised_codes(referral: ReferralDocument) -> tuple[tuple[str, str], ...]:
    """Codes the referral gives (validated well-formed, §8.4) that config/codes.toml does not
    map: ("diagnosis" or "drug", what): never read as "none applies" in silence."""
    found: list[tuple[str, str]] = []
    d = referral.diagnosis
    if d.code is not None and diagnosis_group(d.code, d.system) is None:
        name = "ICD-10" if d.system == ICD10_SYSTEM else "SNOMED CT"
        found.append(("diagnosis", f"{name} {d.code} ({d.label!r})"))
    codes = load_codes()
    for t in referral.treatments:
        if t.code is not None and treatment_class(t.code, codes) is None:
            found.append(("drug", f"ATC {t.code} ({t.drug})"))
    return tuple(dict.fromkeys(found))
