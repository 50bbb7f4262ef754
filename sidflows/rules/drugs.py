"""What a treatment entry is: its drugs and its classes (docs/clinical-reference.md §2.7, §8.3).

A treatment entry names a drug or a regimen ("R-CHOP", "rituximab + CHOP") and gives
one class. What the rules need is every drug it contains and every class those drugs
belong to: R-CHOP referred as chemotherapy also contains rituximab, an anti-CD20
antibody, and the anti-CD20 rules apply to it as to any anti-CD20 (rituximab,
obinutuzumab, ofatumumab, ocrelizumab...), by class, whatever the referral's class.
The free text stays as written; the plan names what it read in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from sidflows.codes import (
    class_for_drug_name,
    drug_for_atc,
    fold,
    generic_for_brand,
    load_codes,
    treatment_class,
    words_match,
)
from sidflows.protocol import Protocol
from sidflows.referral import TreatmentEntry

ANTI_CD20: Final = "anti_cd20"
CHEMOTHERAPY: Final = "chemotherapy"
RITUXIMAB = "rituximab"
# The lymphoma convention names rituximab "R": R-CHOP, R-ICE, DA-EPOCH-R (capitals).
_R_AFFIX = re.compile(r"(?<![A-Za-z0-9])R-[A-Z]|[A-Za-z0-9]-R(?![A-Za-z0-9])")


@dataclass(frozen=True, slots=True)
class Regimen:
    """The regimens a treatment's name mentions and the drugs they contain (§8.3).

    ``affix_rituximab``: rituximab read from the "R-" / "-R" convention of an unlisted
    name (cautious), not from a listed regimen.
    """

    names: tuple[str, ...]
    drugs: tuple[str, ...]
    affix_rituximab: bool = False


@lru_cache(maxsize=4096)
def _regimen(
    drug: str, components: tuple[tuple[str, tuple[str, ...]], ...], affix: bool
) -> Regimen | None:
    lowered = fold(drug).lower()
    names: list[str] = []
    drugs: list[str] = []
    for name, parts in components:
        key = fold(name).lower()
        if re.search(rf"(?<![a-z0-9]){re.escape(key)}(?![a-z0-9])", lowered):
            names.append(name)
            drugs.extend(parts)
    by_affix = (
        affix
        and RITUXIMAB not in drugs
        and words_match(drug, (RITUXIMAB,)) is None
        and _R_AFFIX.search(fold(drug)) is not None
    )
    if by_affix:
        drugs.append(RITUXIMAB)
    if not names and not by_affix:
        return None
    # CHOP inside R-CHOP is the same regimen: keep the longest names.
    longest = [n for n in names if not any(n != m and n.lower() in m.lower() for m in names)]
    return Regimen(tuple(longest), tuple(dict.fromkeys(drugs)), by_affix)


def regimen_of(t: TreatmentEntry, protocol: Protocol) -> Regimen | None:
    """The regimens the treatment's name mentions (protocol ``[regimens]``), or None."""
    r = protocol.regimens
    return _regimen(t.drug, tuple(r.components.items()), r.r_affix_means_rituximab)


def drug_names(t: TreatmentEntry, protocol: Protocol) -> tuple[str, ...]:
    """The treatment's own text, the generic of the brand it names, the drug of its ATC
    row, and its regimen's drugs."""
    found = [t.drug]
    brand = generic_for_brand(t.drug)
    if brand is not None:
        found.append(brand.value)
    if t.code is not None:
        coded = drug_for_atc(t.code)
        if coded is not None and coded.drug is not None:
            found.append(coded.drug)
    regimen = regimen_of(t, protocol)
    if regimen is not None:
        found.extend(regimen.drugs)
    return tuple(dict.fromkeys(found))


def drug_is(t: TreatmentEntry, names: tuple[str, ...], protocol: Protocol) -> bool:
    """The treatment is, or contains, one of these drugs: by its name, its ATC code's drug
    (config/codes.toml) or a component of the regimen it names (§8.3)."""
    return any(words_match(name, names) is not None for name in drug_names(t, protocol))


def classes_of(t: TreatmentEntry, protocol: Protocol) -> frozenset[str]:
    """Every class the treatment belongs to: the referral's, its ATC code's, and that of
    each drug it names or contains (the curated names of config/codes.toml)."""
    codes = load_codes()
    return _classes(id(codes), t.drug_class, t.code, drug_names(t, protocol))


@lru_cache(maxsize=4096)
def _classes(
    codes_id: int, drug_class: str, code: str | None, names: tuple[str, ...]
) -> frozenset[str]:
    """Keyed by the code tables in use (``codes_id``: a unit's own tables are another key)."""
    codes = load_codes()
    found: set[str] = {drug_class}
    if code is not None:
        coded = treatment_class(code, codes)
        if coded is not None:
            found.add(coded.value)
    for name in names:
        for cls, words in codes.drug_names.items():
            if words_match(name, words) is not None:
                found.add(cls)
    return frozenset(found)


def is_anti_cd20(t: TreatmentEntry, protocol: Protocol) -> bool:
    """Any anti-CD20 antibody, alone or in a regimen, whatever class the referral gives (§2.7)."""
    return ANTI_CD20 in classes_of(t, protocol)


def anti_cd20_read(t: TreatmentEntry, protocol: Protocol) -> str:
    """How an anti-CD20 was read when the referral's class is another one ("" if it is not,
    or if the referral says anti_cd20): named in the rules' reasons (§2.7)."""
    if t.drug_class == ANTI_CD20 or not is_anti_cd20(t, protocol):
        return ""
    referred = t.drug_class.replace("_", " ")
    regimen = regimen_of(t, protocol)
    if regimen is not None and regimen.affix_rituximab:
        return (
            f"{t.drug} (referred as {referred}): read as containing rituximab, an anti-CD20 "
            "(the R- convention of an unlisted regimen: check it)"
        )
    named = words_match(t.drug, load_codes().drug_names.get(ANTI_CD20, ()))
    if named is not None:
        return f"{t.drug} (referred as {referred}): {named} is an anti-CD20 antibody"
    brand = generic_for_brand(t.drug)
    if brand is not None and words_match(brand.value, load_codes().drug_names.get(ANTI_CD20, ())):
        return (
            f"{t.drug} (referred as {referred}): {brand.drug} is a brand of {brand.value}, "
            "an anti-CD20 antibody"
        )
    if regimen is not None and RITUXIMAB in regimen.drugs:
        return (
            f"{t.drug} (referred as {referred}): regimen {', '.join(regimen.names)} contains "
            f"rituximab, an anti-CD20 ({', '.join(regimen.drugs)})"
        )
    return f"{t.drug} (referred as {referred}): an anti-CD20 antibody by its ATC code"


def chemotherapy_reading(t: TreatmentEntry, protocol: Protocol, *, oncology: bool) -> str | None:
    """Is the treatment chemotherapy, whatever class the referral gives it (§2.8)?

    None: not chemotherapy. "": referred as chemotherapy. Otherwise how it was read: its ATC
    code is an antineoplastic (L01, config/codes.toml; CAR-T and anti-CD20 rows keep their
    own classes), or, for an oncology diagnosis, it is an antimetabolite or one of the
    curated chemotherapy drugs (methotrexate and mercaptopurine in ALL maintenance), or an
    antimetabolite the protocol does not know by name.
    """
    if t.drug_class == CHEMOTHERAPY:
        return ""
    referred = t.drug_class.replace("_", " ")
    if t.code is not None:
        coded = treatment_class(t.code, load_codes())
        if coded is not None and coded.value == CHEMOTHERAPY:
            return (
                f"{t.drug} (referred as {referred}): ATC {t.code} is an antineoplastic agent "
                f"({coded.source}): read as chemotherapy"
            )
    if not oncology or t.drug_class in (ANTI_CD20, "car_t", "corticosteroid"):
        return None
    if not_immunosuppressive(t, protocol) is not None:
        return None
    classes = classes_of(t, protocol)
    # A cytotoxic drug by its curated name (methotrexate, mercaptopurine, thioguanine...),
    # or an antimetabolite whose name the protocol does not know (cautious); a known
    # non-cytotoxic one (mycophenolate, azathioprine) keeps its class.
    unknown_antimetabolite = (
        t.drug_class == "antimetabolite"
        and class_for_drug_name(t.drug, load_codes()) is None
        and regimen_of(t, protocol) is None
    )
    if CHEMOTHERAPY in classes or unknown_antimetabolite:
        return (
            f"{t.drug} (referred as {referred}) for an oncology diagnosis: read as chemotherapy "
            "(antimetabolite maintenance of a cancer)"
        )
    return None


def not_immunosuppressive(t: TreatmentEntry, protocol: Protocol) -> str | None:
    """How the treatment was recognised as a drug the protocol does not count as
    immunosuppressive (hydroxychloroquine, sulfasalazine, isotretinoin, §2.11), or None.

    By name (matched as words: its text, its ATC row's drug, its regimen's drugs) or by its
    ATC code (a prefix of the protocol's list). A treatment of a class graded high whatever
    the dose, or read as anti-CD20 or CAR-T, is never one.
    """
    g = protocol.grading
    if t.drug_class in g.high_classes or classes_of(t, protocol) & {ANTI_CD20, "car_t"}:
        return None
    if t.code is not None:
        code = t.code.replace(".", "").upper()
        for atc in g.not_immunosuppressive_atc:
            if code.startswith(atc.upper()):
                return f"ATC {t.code}"
    return _only_listed(t, protocol, g.not_immunosuppressive_drugs)


# What joins two drugs in one entry's text ("ciclosporin with eltrombopag", "hATG +
# ciclosporin", "MTX y prednisona"): English and Spanish.
_COMBINED = re.compile(r"\s*(?:[+/,;&]|\b(?:with|and|plus|y|con|mas|más)\b)\s*", re.IGNORECASE)


def _only_listed(t: TreatmentEntry, protocol: Protocol, listed: tuple[str, ...]) -> str | None:
    """The listed drug the entry names when every drug it names is listed (§2.11), or None.

    An entry that names another drug beside a listed one ("ciclosporin with
    eltrombopag", a regimen with other drugs) is not read so: the other drug may be the
    immunosuppressant, and is graded as the entry's class says (cautious)."""
    regimen = regimen_of(t, protocol)
    if regimen is not None:
        found = [words_match(d, listed) for d in regimen.drugs]
        return found[0] if all(found) else None
    brand = generic_for_brand(t.drug)
    if brand is not None and (named := words_match(brand.value, listed)) is not None:
        return named
    parts = [part for part in _COMBINED.split(t.drug) if part.strip()]
    found = [words_match(part, listed) for part in parts]
    if parts and all(found):
        return found[0]
    return None


def complement_inhibitor(t: TreatmentEntry, protocol: Protocol) -> str | None:
    """How the treatment was recognised as a complement inhibitor (eculizumab, ravulizumab,
    crovalimab, pegcetacoplan, iptacopan; §2.12, §5.7), or None: by its ATC code (a prefix of
    the protocol's list: L04AJ, eculizumab's older L04AA25) or by name (matched as words: its
    text, its ATC row's drug, its regimen's drugs)."""
    m = protocol.prophylaxis.meningococcal
    if t.code is not None:
        code = t.code.replace(".", "").upper()
        for atc in m.atc:
            if code.startswith(atc.upper()):
                return f"ATC {t.code}"
    return words_match(" ".join(drug_names(t, protocol)), m.drugs)


def counts_as_immunosuppressive(t: TreatmentEntry, protocol: Protocol) -> bool:
    """False for a drug the protocol grades "none" (§2.11, and a complement inhibitor,
    §2.12): it neither grades, blocks a vaccine, nor continues a cause of the deficiency.
    Graded "low" (the alternative), it counts as a low-level immunosuppressant everywhere."""
    if complement_inhibitor(t, protocol) is not None:
        return protocol.prophylaxis.meningococcal.grading_level != "none"
    return (
        protocol.grading.not_immunosuppressive_level != "none"
        or not_immunosuppressive(t, protocol) is None
    )
