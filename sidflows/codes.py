"""config/codes.toml: coded diagnoses and drugs -> the unit's groups and the format's classes.

One loader for every reader (the referral rules, a FHIR mapping):

- :func:`diagnosis_group` maps an ICD-10 (``http://hl7.org/fhir/sid/icd-10``) or
  SNOMED CT (``http://snomed.info/sct``) code to the unit's diagnosis group;
- :func:`treatment_class` maps a WHO ATC code to the referral format's treatment
  class, :func:`drug_for_atc` to the drug a rule names (methotrexate, ...);
- :func:`group_for_label` and :func:`class_for_drug_name` recognise curated
  free-text variants (English and Spanish, abbreviations) when there is no code.

Each answer carries the row's source. docs/clinical-reference.md §8 describes the tables.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Annotated, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sidflows.config import load_config
from sidflows.documents import field_path
from sidflows.errors import ConfigError
from sidflows.referral import TreatmentClass

ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"

_Text = Annotated[str, Field(min_length=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Group(_Frozen):
    oncology: bool
    labels: tuple[_Text, ...] = ()
    source: _Text


class DiagnosisRow(_Frozen):
    system: _Text
    code: _Text
    group: _Text
    source: _Text


class AtcRow(_Frozen):
    code: _Text
    treatment_class: TreatmentClass = Field(alias="class")
    drug: str | None = None
    source: _Text


class DrugNamesSources(_Frozen):
    source: _Text


class Codes(_Frozen):
    version: _Text
    systems: dict[str, _Text]
    groups: dict[str, Group]
    diagnosis: tuple[DiagnosisRow, ...] = ()
    atc: tuple[AtcRow, ...] = ()
    drug_names: dict[TreatmentClass, tuple[_Text, ...]] = Field(default_factory=dict)
    drug_names_sources: DrugNamesSources
    # Brand and biosimilar names of a generic the tables know (MabThera, Truxima ->
    # rituximab): read as the generic, and the plan says so (§8.2).
    brand_names: dict[_Text, tuple[_Text, ...]] = Field(default_factory=dict)
    brand_names_sources: DrugNamesSources | None = None

    @model_validator(mode="after")
    def _rows_name_groups_and_systems(self) -> Codes:
        for i, row in enumerate(self.diagnosis):
            if row.group not in self.groups:
                raise ValueError(f"diagnosis[{i}].group: {row.group!r} is not in [groups]")
            if row.system not in self.systems:
                raise ValueError(f"diagnosis[{i}].system: {row.system!r} is not in [systems]")
        known = {fold(w).lower() for words in self.drug_names.values() for w in words}
        known |= {fold(row.drug).lower() for row in self.atc if row.drug}
        for generic in self.brand_names:
            if fold(generic).lower() not in known:
                raise ValueError(
                    f"brand_names.{generic}: not a drug name of [drug_names] or [[atc]]"
                )
        if self.brand_names and self.brand_names_sources is None:
            raise ValueError("brand_names_sources: required field missing")
        return self

    def uri(self, system: str) -> str:
        return self.systems.get(system, system)


@dataclass(frozen=True, slots=True)
class Match:
    """What a code or a label was recognised as, and the row's source."""

    value: str
    source: str
    drug: str | None = None
    row: str = ""  # the table row's own code (the prefix an ATC or ICD-10 code matched)


def parse_codes(data: dict[str, object], *, origin: str = "codes") -> Codes:
    try:
        return Codes.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = field_path(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{origin}: {where + ': ' if where else ''}{message}") from None


def load_codes(path: Path | None = None) -> Codes:
    """The unit's code tables: SIDFLOWS_CODES, else config/codes.toml. Parsed once."""
    return load_config(parse_codes, "codes.toml", "SIDFLOWS_CODES", path)


# ------------------------------------------------------------------------------ matching


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Accents removed (``linfoblástica`` -> ``linfoblastica``), case kept."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words_match(text: str, words: tuple[str, ...]) -> str | None:
    """The first of ``words`` that ``text`` mentions as a whole word, or None.

    Accents are ignored. Acronyms written in capitals (``ALL``, ``LLA``) must appear
    in capitals; other words match case-insensitively.
    """
    plain = fold(text)
    lowered = plain.lower()
    for word in words:
        acronym, pattern = _word_pattern(word)
        if pattern.search(plain if acronym else lowered):
            return word
    return None


@lru_cache(maxsize=4096)
def _word_pattern(word: str) -> tuple[bool, re.Pattern[str]]:
    """Whether ``word`` is an acronym (matched in capitals), and its whole-word pattern."""
    w = fold(word)
    if w.isupper():
        return True, re.compile(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])")
    return False, re.compile(rf"(?<![a-z0-9]){re.escape(w.lower())}(?![a-z0-9])")


def _norm(code: str) -> str:
    return code.replace(".", "").replace(" ", "").upper()


def _system_key(codes: Codes, system: str | None) -> str | None:
    if system is None:
        return None
    for key, uri in codes.systems.items():
        if system in (key, uri):
            return key
    return None


def diagnosis_group(code: str, system: str | None, codes: Codes | None = None) -> Match | None:
    """The unit's diagnosis group of an ICD-10 (longest prefix) or SNOMED CT (exact) code."""
    codes = codes or load_codes()
    key = _system_key(codes, system)
    if key is None:
        return None
    wanted = _norm(code)
    best: DiagnosisRow | None = None
    for row in codes.diagnosis:
        if row.system != key:
            continue
        have = _norm(row.code)
        exact = wanted == have
        if (exact if key == "snomed" else wanted.startswith(have)) and (
            best is None or len(have) > len(_norm(best.code))
        ):
            best = row
    return None if best is None else Match(best.group, best.source)


def _atc_row(code: str, codes: Codes) -> AtcRow | None:
    wanted = _norm(code)
    rows = [r for r in codes.atc if wanted.startswith(_norm(r.code))]
    return max(rows, key=lambda r: len(_norm(r.code))) if rows else None


def treatment_class(atc_code: str, codes: Codes | None = None) -> Match | None:
    """The referral format's treatment class of a WHO ATC code (longest matching row)."""
    row = _atc_row(atc_code, codes or load_codes())
    return None if row is None else Match(row.treatment_class, row.source, row.drug, row.code)


def drug_for_atc(atc_code: str, codes: Codes | None = None) -> Match | None:
    """The drug a rule names (``methotrexate``) for an ATC code, when the table names one."""
    row = _atc_row(atc_code, codes or load_codes())
    if row is None or row.drug is None:
        return None
    return Match(row.drug, row.source, row.drug)


class _TextAnswers:
    """The answers of one pure text lookup over one code table, kept for the texts seen
    (bounded): a referral's labels and drug names repeat, the table does not change."""

    __slots__ = ("_answers", "_codes")
    _LIMIT = 4096

    def __init__(self) -> None:
        self._codes: Codes | None = None
        self._answers: dict[str, Match | None] = {}

    def get(self, codes: Codes, text: str) -> tuple[bool, Match | None]:
        if self._codes is not codes:
            return False, None
        answers = self._answers
        if text in answers:
            return True, answers[text]
        return False, None

    def put(self, codes: Codes, text: str, answer: Match | None) -> None:
        if self._codes is not codes or len(self._answers) >= self._LIMIT:
            self._codes = codes
            self._answers = {}
        self._answers[text] = answer


_GROUP_FOR_LABEL = _TextAnswers()
_CLASS_FOR_DRUG_NAME = _TextAnswers()


def group_for_label(label: str, codes: Codes | None = None) -> Match | None:
    """The first group whose curated label variants the label mentions."""
    codes = codes or load_codes()
    known, answer = _GROUP_FOR_LABEL.get(codes, label)
    if known:
        return answer
    answer = None
    for name, group in codes.groups.items():
        if words_match(label, group.labels):
            answer = Match(name, group.source)
            break
    _GROUP_FOR_LABEL.put(codes, label, answer)
    return answer


def class_for_drug_name(name: str, codes: Codes | None = None) -> Match | None:
    """The first class whose curated names the drug name (or the generic of the brand it
    names) mentions (None: unknown to the unit)."""
    codes = codes or load_codes()
    known, answer = _CLASS_FOR_DRUG_NAME.get(codes, name)
    if known:
        return answer
    answer = None
    brand = generic_for_brand(name, codes)
    for text in (name,) if brand is None else (name, brand.value):
        for cls, names in codes.drug_names.items():
            if words_match(text, names):
                answer = Match(cls, codes.drug_names_sources.source)
                break
        if answer is not None:
            break
    _CLASS_FOR_DRUG_NAME.put(codes, name, answer)
    return answer


_GENERIC_FOR_BRAND = _TextAnswers()


def generic_for_brand(name: str, codes: Codes | None = None) -> Match | None:
    """The generic a brand or biosimilar name stands for (``Truxima`` -> rituximab); the
    match's ``drug`` is the brand as the text gives it. None: no brand the tables know."""
    codes = codes or load_codes()
    known, answer = _GENERIC_FOR_BRAND.get(codes, name)
    if known:
        return answer
    answer = None
    sources = codes.brand_names_sources
    for generic, brands in codes.brand_names.items():
        found = words_match(name, brands)
        if found is not None and sources is not None:
            answer = Match(generic, sources.source, found)
            break
    _GENERIC_FOR_BRAND.put(codes, name, answer)
    return answer


@cache
def treatment_classes() -> frozenset[str]:
    return frozenset(get_args(TreatmentClass))
