"""The referral document (docs/formats.md), validated into immutable domain objects.

Parsing happens once, at the edge: after :func:`parse_referral` nothing
downstream sees raw JSON. Every refusal is an :class:`InvalidInput` naming the
field path, e.g. ``treatments[1].end: before start``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from sidflows.documents import (
    MAX_LIST,
    IsoDate,
    Ref,
    Text,
    invalid_from_pydantic,
    load_json_document,
)
from sidflows.errors import InvalidInput

MAX_AGE_YEARS = 18

LIVE_VACCINES = frozenset({"MMR", "VAR", "MMRV", "LAIV", "ROTA", "BCG", "YF"})
INACTIVATED_VACCINES = frozenset(
    {
        "DTaP",
        "Tdap",
        "Td",
        "IPV",
        "Hib",
        "HepB",
        "HepA",
        "PCV",
        "PPSV23",
        "MenACWY",
        "MenB",
        "HPV",
        "IIV",
    }
)
VaccineCode = Literal[
    "MMR", "VAR", "MMRV", "LAIV", "ROTA", "BCG", "YF",
    "DTaP", "Tdap", "Td", "IPV", "Hib", "HepB", "HepA", "PCV", "PPSV23", "MenACWY", "MenB",
    "HPV", "IIV",
]  # fmt: skip
TreatmentClass = Literal[
    "chemotherapy", "anti_cd20", "corticosteroid", "antimetabolite", "anti_tnf",
    "jak_inhibitor", "calcineurin_inhibitor", "car_t", "other_biologic",
]  # fmt: skip
# Blood products and specific immunoglobulins of the ACIP antibody-live vaccine
# interval table (docs/clinical-reference.md §4). An extension of the referral contract.
BloodProductKind = Literal[
    "plasma", "platelets", "packed_red_cells", "whole_blood", "red_cells_adenine_saline",
    "washed_red_cells", "cmv_igiv", "botulism_ig", "varicella_ig", "rabies_ig",
    "hepatitis_b_ig", "tetanus_ig", "measles_ig", "palivizumab",
]  # fmt: skip
Route = Literal["iv", "sc"]


DocT = TypeVar("DocT", bound="_Doc")


class _Doc(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False, populate_by_name=False
    )


class PatientDetails(_Doc):
    ref: Ref
    birth_date: IsoDate
    sex: Literal["female", "male", "other", "unknown"]
    weight_kg: Annotated[float, Field(ge=0.5, le=150)]


class IdentityDetails(_Doc):
    """Who the child is. Stays in the store; never reaches Prefect or an ordinary route."""

    name: Text | None = None
    mrn: Text | None = None


class Referrer(_Doc):
    service: Text
    clinician: Text | None = None


Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,31}$")]
CodeSystem = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]{1,200}$")]
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
SNOMED_SYSTEM = "http://snomed.info/sct"
ATC_SYSTEM = "http://www.whocc.no/atc"
# The shape of a code of each system (docs/formats.md §4): refused at the edge when it
# does not fit. ICD-10: a letter, two digits, then up to 4 characters of the subcategory
# (the dot optional: C91.0, C910, C91.00). SNOMED CT: an SCTID, 6-18 digits, not starting
# with 0. WHO ATC: one of its five levels (L, L01, L01F, L01FA, L01FA01).
CODE_SHAPES: dict[str, tuple[str, re.Pattern[str]]] = {
    ICD10_SYSTEM: ("ICD-10", re.compile(r"^[A-Z][0-9]{2}(\.?[0-9A-Z]{1,4})?$")),
    SNOMED_SYSTEM: ("SNOMED CT", re.compile(r"^[1-9][0-9]{5,17}$")),
    ATC_SYSTEM: ("WHO ATC", re.compile(r"^[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$")),
}


class Diagnosis(_Doc):
    category: Literal["oncology", "hsct", "immune_mediated", "other"]
    label: Text
    # Extension: the diagnosis coded (docs/formats.md §4); the label stays.
    code: Code | None = Field(
        default=None,
        description=f"ICD-10 ({ICD10_SYSTEM}) or SNOMED CT ({SNOMED_SYSTEM}) code; needs system",
    )
    system: CodeSystem | None = Field(
        default=None, description=f"the code's system URI: {ICD10_SYSTEM} or {SNOMED_SYSTEM}"
    )


class Hsct(_Doc):
    date: IsoDate
    type: Literal["autologous", "allogeneic"]
    active_gvhd: bool = False


class TreatmentEntry(_Doc):
    drug: Text
    drug_class: TreatmentClass = Field(alias="class")
    start: IsoDate
    end: IsoDate | None = None
    dose_mg_per_kg_day: Annotated[float, Field(gt=0, le=100)] | None = Field(
        default=None, description="unit: mg per kg of body weight per day (daily drugs)"
    )
    dose_mg_day: Annotated[float, Field(gt=0, le=5000)] | None = Field(
        default=None,
        description=(
            "unit: mg per day of the drug named "
            "(a steroid is converted to its prednisone equivalent by the protocol)"
        ),
    )
    # Extension: weekly drugs (methotrexate) are graded on mg/kg/week.
    dose_mg_per_kg_week: Annotated[float, Field(gt=0, le=100)] | None = Field(
        default=None, description="unit: mg per kg of body weight per week (weekly drugs)"
    )
    # Extension: the drug coded (WHO ATC); the drug's text stays.
    code: Code | None = Field(default=None, description=f"WHO ATC code ({ATC_SYSTEM})")
    system: CodeSystem | None = Field(
        default=None, description=f"the code's system URI: {ATC_SYSTEM}"
    )

    def active_on(self, day: date) -> bool:
        return self.start <= day and (self.end is None or self.end >= day)


class LabEntry(_Doc):
    date: IsoDate
    igg_g_l: Annotated[float, Field(ge=0, le=40)] | None = None
    iga_g_l: Annotated[float, Field(ge=0, le=20)] | None = None
    igm_g_l: Annotated[float, Field(ge=0, le=20)] | None = None
    igg_lower_limit_g_l: Annotated[float, Field(gt=0, le=20)] | None = None
    cd4_per_ul: Annotated[float, Field(ge=0, le=10000)] | None = None
    cd4_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    cd19_per_ul: Annotated[float, Field(ge=0, le=10000)] | None = None
    # Extension: the lab's own lower limit for CD19, used to judge B-cell recovery.
    cd19_lower_limit_per_ul: Annotated[float, Field(gt=0, le=10000)] | None = None
    anc_per_ul: Annotated[float, Field(ge=0, le=100000)] | None = None
    # Extension: fold rise of pneumococcal antibodies after a polysaccharide
    # challenge (< 2 = specific antibody failure, docs/clinical-reference.md §3).
    pneumococcal_fold_rise: Annotated[float, Field(ge=0, le=1000)] | None = None


class InfectionEntry(_Doc):
    date: IsoDate
    kind: Text
    serious: bool


class ImmunoglobulinDose(_Doc):
    date: IsoDate
    g_per_kg: Annotated[float, Field(gt=0, le=2.5)] = Field(
        description="unit: g of immunoglobulin per kg of body weight, this day's dose"
    )
    route: Route


class BloodProductGiven(_Doc):
    date: IsoDate
    product: BloodProductKind


class VaccinationEntry(_Doc):
    vaccine: VaccineCode
    date: IsoDate


class Preferences(_Doc):
    ig_route: Route | None = None


class Consent(_Doc):
    cost_accepted: bool


# The closed vocabulary of ``risk_conditions`` (docs/formats.md; clinical-reference §5.12):
# ``asplenia`` is anatomical or functional asplenia or hyposplenism (splenectomy, splenic
# irradiation, a dysfunctional spleen).
RiskCondition = Literal["asplenia"]


def _items(max_length: int = MAX_LIST) -> Any:
    return Field(default=(), max_length=max_length)


class ReferralDocument(_Doc):
    """A child's referral, as received from the referring service."""

    patient: PatientDetails
    identity: IdentityDetails | None = None
    received: IsoDate
    referrer: Referrer
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None
    diagnosis: Diagnosis
    hsct: Hsct | None = None
    treatments: tuple[TreatmentEntry, ...] = Field(max_length=MAX_LIST)
    labs: tuple[LabEntry, ...] = Field(max_length=MAX_LIST)
    infections: tuple[InfectionEntry, ...] = Field(max_length=MAX_LIST)
    immunoglobulin_doses: tuple[ImmunoglobulinDose, ...] = Field(max_length=MAX_LIST)
    blood_products: tuple[BloodProductGiven, ...] = _items()
    vaccinations: tuple[VaccinationEntry, ...] = Field(max_length=MAX_LIST)
    preferences: Preferences | None = None
    consent: Consent | None = None
    risk_conditions: tuple[RiskCondition, ...] = Field(default=(), max_length=8)

    @property
    def ref(self) -> str:
        return self.patient.ref


# --------------------------------------------------------------------------- parsing


def _dated(name: str, rows: tuple[Any, ...]) -> Iterator[tuple[str, date]]:
    for i, row in enumerate(rows):
        yield f"{name}[{i}].date", row.date


def check_consistency(referral: ReferralDocument) -> None:
    """Cross-field checks that a schema cannot express, each naming its field."""
    birth = referral.patient.birth_date
    received = referral.received
    if birth > received:
        raise InvalidInput("patient.birth_date", "in the future (after received)")
    if (
        received.year - birth.year - ((received.month, received.day) < (birth.month, birth.day))
    ) >= MAX_AGE_YEARS:
        raise InvalidInput(
            "patient.birth_date", f"{MAX_AGE_YEARS} years or more before received: not a child"
        )
    if referral.diagnosis.category == "hsct" and referral.hsct is None:
        raise InvalidInput("hsct", "required when diagnosis.category is hsct")
    if referral.hsct is not None:
        if referral.hsct.date < birth:
            raise InvalidInput("hsct.date", "before birth_date")
        if referral.hsct.date > received:
            raise InvalidInput("hsct.date", "after received")
    _check_code(
        "diagnosis",
        referral.diagnosis.code,
        referral.diagnosis.system,
        (ICD10_SYSTEM, SNOMED_SYSTEM),
    )
    for i, t in enumerate(referral.treatments):
        _check_code(f"treatments[{i}]", t.code, t.system, (ATC_SYSTEM,))
        if t.start < birth:
            raise InvalidInput(f"treatments[{i}].start", "before birth_date")
        if t.end is not None and t.end < t.start:
            raise InvalidInput(f"treatments[{i}].end", "before start")
    events = (
        *_dated("labs", referral.labs),
        *_dated("infections", referral.infections),
        *_dated("immunoglobulin_doses", referral.immunoglobulin_doses),
        *_dated("blood_products", referral.blood_products),
        *_dated("vaccinations", referral.vaccinations),
    )
    for path, when in events:
        if when < birth:
            raise InvalidInput(path, "before birth_date")
        if when > received:
            raise InvalidInput(path, "after received (results and doses cannot be in the future)")
    for i, lab in enumerate(referral.labs):
        measured = lab.model_dump(exclude={"date"}, exclude_none=True)
        if not measured:
            raise InvalidInput(f"labs[{i}]", "no result given")


def _check_code(
    where: str, code: str | None, system: str | None, expected: tuple[str, ...]
) -> None:
    """A code comes with its system, and a system with a code; the system is one the field
    expects and the code has that system's shape (``CODE_SHAPES``), else refused naming the
    field. A well-formed code the tables do not know is the plan's to flag, not refused."""
    if code is not None and system is None:
        raise InvalidInput(f"{where}.system", "required when code is given")
    if system is not None and code is None:
        raise InvalidInput(f"{where}.code", "required when system is given")
    if code is None or system is None:
        return
    if system not in expected:
        wanted = " or ".join(f"{CODE_SHAPES[s][0]} ({s})" for s in expected)
        raise InvalidInput(f"{where}.system", f"not {wanted}: {system!r}")
    name, shape = CODE_SHAPES[system]
    if not shape.match(code):
        raise InvalidInput(f"{where}.code", f"not a well-formed {name} code: {code!r}")


def _validated(model: type[DocT], data: Any) -> DocT:
    """Parsed JSON into a frozen document, or one InvalidInput naming the field."""
    if not isinstance(data, dict):
        raise InvalidInput("document", "must be a JSON object")
    try:
        return model.model_validate(_tuples(data))
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


def validate_referral(data: Any) -> ReferralDocument:
    """Validate parsed JSON into a :class:`ReferralDocument`, or raise :class:`InvalidInput`."""
    referral = _validated(ReferralDocument, data)
    check_consistency(referral)
    return referral


def parse_referral(text: str | bytes) -> ReferralDocument:
    """Parse and validate a referral document (JSON text)."""
    return validate_referral(load_json_document(text))


def _tuples(value: Any) -> Any:
    """JSON arrays become tuples so that strict validation builds immutable objects."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- later documents


class TreatmentChange(_Doc):
    """``sidflows treatment-change REF FILE``: entries shaped as a referral's treatments.

    An entry with the same drug and start as a stored treatment updates it (e.g.
    sets its end); any other entry is added.
    """

    date: IsoDate
    treatments: tuple[TreatmentEntry, ...] = Field(min_length=1, max_length=MAX_LIST)


class LabReport(_Doc):
    """``sidflows lab-result REF FILE``: new results, shaped as a referral's labs."""

    labs: tuple[LabEntry, ...] = Field(min_length=1, max_length=MAX_LIST)


def parse_treatment_change(text: str | bytes) -> TreatmentChange:
    change = _validated(TreatmentChange, load_json_document(text))
    for i, t in enumerate(change.treatments):
        _check_code(f"treatments[{i}]", t.code, t.system, (ATC_SYSTEM,))
        if t.end is not None and t.end < t.start:
            raise InvalidInput(f"treatments[{i}].end", "before start")
    return change


def parse_lab_report(text: str | bytes) -> LabReport:
    report = _validated(LabReport, load_json_document(text))
    for i, lab in enumerate(report.labs):
        if not lab.model_dump(exclude={"date"}, exclude_none=True):
            raise InvalidInput(f"labs[{i}]", "no result given")
    return report
