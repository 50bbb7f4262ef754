"""The referral document (CONTRACTS.md), validated into immutable domain objects.

Parsing happens once, at the edge: after :func:`parse_referral` nothing
downstream sees raw JSON. Every refusal is an :class:`InvalidInput` naming the
field path, e.g. ``treatments[1].end: before start``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from sidflows.errors import InvalidInput

MAX_DOCUMENT_BYTES = 1_048_576
MAX_LIST = 1000
MAX_AGE_YEARS = 18
# A referral is three levels deep (treatments[0].start); anything far deeper is junk, and
# refusing it here keeps every later step (validation, storage) far from Python's recursion limit.
MAX_DEPTH = 16
# Dates a child's record can hold. Beyond them the calendar arithmetic of planning
# (months added to a treatment's end) would leave what a date can represent.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2199, 12, 31)

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# C0 and C1 control characters except tab, line feed and carriage return, and unpaired
# surrogates (not Unicode: no database stores them): never in a document.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# One-line text (names, labels, drugs) also refuses tabs and every line break.
_LINE_BREAK = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _iso_date(value: object) -> object:
    """Accept only ``YYYY-MM-DD`` strings (or dates built in code) between 1900 and 2199."""
    if isinstance(value, date):
        day = value
    elif not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("not a date (expected YYYY-MM-DD)")
    else:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"impossible date {value!r}") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValueError(f"out of range ({EARLIEST_DAY} to {LATEST_DAY}): {day}")
    return day


def iso_day(value: str, field: str) -> date:
    """A day given on the command line (``--today``), or InvalidInput naming the option."""
    try:
        day = _iso_date(value)
    except ValueError as exc:
        raise InvalidInput(field, str(exc)) from None
    assert isinstance(day, date)
    return day


def _one_line(value: str) -> str:
    found = _LINE_BREAK.search(value)
    if found:
        raise ValueError(f"contains a control character or line break (U+{ord(found[0]):04X})")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
]
Ref = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]

LIVE_VACCINES = frozenset({"MMR", "VAR", "MMRV", "LAIV", "ROTA", "BCG", "YF"})
INACTIVATED_VACCINES = frozenset(
    {"DTaP", "Tdap", "IPV", "Hib", "HepB", "HepA", "PCV", "PPSV23", "MenACWY", "MenB", "HPV", "IIV"}
)
VaccineCode = Literal[
    "MMR", "VAR", "MMRV", "LAIV", "ROTA", "BCG", "YF",
    "DTaP", "Tdap", "IPV", "Hib", "HepB", "HepA", "PCV", "PPSV23", "MenACWY", "MenB", "HPV",
    "IIV",
]  # fmt: skip
TreatmentClass = Literal[
    "chemotherapy", "anti_cd20", "corticosteroid", "antimetabolite", "anti_tnf",
    "jak_inhibitor", "calcineurin_inhibitor", "car_t", "other_biologic",
]  # fmt: skip
# Blood products and specific immunoglobulins of the ACIP antibody-live vaccine
# interval table (REFERENCE.md §4). An extension of the referral contract.
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
    dose_mg_per_kg_day: Annotated[float, Field(ge=0, le=100)] | None = Field(
        default=None, description="unit: mg per kg of body weight per day (daily drugs)"
    )
    dose_mg_day: Annotated[float, Field(ge=0, le=5000)] | None = Field(
        default=None, description="unit: mg per day (prednisone or equivalent for a steroid)"
    )
    # Extension: weekly drugs (methotrexate) are graded on mg/kg/week.
    dose_mg_per_kg_week: Annotated[float, Field(ge=0, le=100)] | None = Field(
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
    # challenge (< 2 = specific antibody failure, REFERENCE.md §3).
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

    @property
    def ref(self) -> str:
        return self.patient.ref


# --------------------------------------------------------------------------- parsing


class _NotANumber:
    """NaN or Infinity in the JSON text: refused once its path is known."""

    def __init__(self, name: str) -> None:
        self.name = f"{name} is not a number"


class _Refused(dict[str, Any]):
    """A JSON object holding something no document may (a repeated key, NaN, a NUL...).

    Found while parsing; refused by :func:`check_tree`, which knows the path.
    """

    def __init__(self, pairs: list[tuple[str, Any]], key: str, problem: str) -> None:
        super().__init__(pairs)
        self.key, self.problem = key, problem


def _string_problem(value: str) -> str | None:
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if "\ud800" <= found[0] <= "\udfff":
        return "not valid Unicode (an unpaired surrogate)"
    return f"contains a control character (U+{ord(found[0]):04X})"


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each JSON object as it is parsed: its keys and its text and number values checked."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        problem = _string_problem(key)
        if problem:
            return _Refused(pairs, key, f"field name {problem}")
        if key in seen:
            return _Refused(pairs, key, "duplicate key")
        if isinstance(value, str):
            problem = _string_problem(value)
            if problem:
                return _Refused(pairs, key, problem)
        elif isinstance(value, _NotANumber):
            return _Refused(pairs, key, value.name)
        seen[key] = value
    return seen


_SCALARS = (int, float, type(None))  # bool is an int


def check_tree(data: Any) -> None:
    """Refuse what JSON allows but no document may hold, naming its path.

    Repeated keys, NaN and Infinity, text that is not valid Unicode or carries
    control characters (flagged while parsing), lists longer than MAX_LIST and
    nesting deeper than MAX_DEPTH. Iterative, so that a deep document cannot
    exhaust the stack.
    """
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            raise InvalidInput(field_path(path[:3]), f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, _Refused):
            raise InvalidInput(field_path((*path, value.key)), value.problem)
        if isinstance(value, dict):  # its text was checked while parsing: only go deeper
            found = [((*path, k), v) for k, v in value.items() if isinstance(v, dict | list)]
        elif isinstance(value, list):
            if len(value) > MAX_LIST:  # refused before anything validates a thousand entries
                raise InvalidInput(field_path(path) or "document", f"more than {MAX_LIST} entries")
            found = [((*path, i), v) for i, v in enumerate(value) if not isinstance(v, _SCALARS)]
        elif isinstance(value, _NotANumber):  # in a list, or the whole document
            raise InvalidInput(field_path(path) or "document", value.name)
        elif isinstance(value, str) and (problem := _string_problem(value)):  # in a list
            raise InvalidInput(field_path(path) or "document", problem)
        else:
            continue
        stack.extend(reversed(found))


def load_json_document(text: str | bytes, *, what: str = "document") -> Any:
    """Parse JSON text, refusing oversize input, duplicate keys, NaN and junk (check_tree)."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(what, f"larger than {MAX_DOCUMENT_BYTES // 1024} KiB")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(what, f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_object, parse_constant=_NotANumber)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            what, f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise InvalidInput(what, "nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts (4300)
        raise InvalidInput(what, "malformed JSON (a number too long to read)") from None
    check_tree(data)
    return data


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+")


def field_path(loc: Iterable[int | str]) -> str:
    """``('treatments', 1, 'end')`` -> ``treatments[1].end``.

    A name that is not plain (spaces, dots, line breaks, other scripts) is shown
    JSON-quoted in brackets, ``["a\\nb"]``, so the path stays one unambiguous line.
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _PLAIN_NAME.fullmatch(part):
            path += f"[{json.dumps(part)}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        return "unknown field"
    msg = str(error["msg"]).removeprefix("Value error, ").replace("valid tuple", "list")
    return re.sub(r"^Input should be ", "must be ", msg)


def invalid_from_pydantic(exc: ValidationError, *, prefix: str = "") -> InvalidInput:
    """The first error of a pydantic validation, as one line naming the field."""
    error = exc.errors(include_url=False)[0]
    loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    path = field_path(loc)
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    return InvalidInput(path or "document", _message(error))


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
    _check_code("diagnosis", referral.diagnosis.code, referral.diagnosis.system)
    for i, t in enumerate(referral.treatments):
        _check_code(f"treatments[{i}]", t.code, t.system)
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


def _check_code(where: str, code: str | None, system: str | None) -> None:
    """A code comes with its system, and a system with a code."""
    if code is not None and system is None:
        raise InvalidInput(f"{where}.system", "required when code is given")
    if system is not None and code is None:
        raise InvalidInput(f"{where}.code", "required when system is given")


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
        if t.end is not None and t.end < t.start:
            raise InvalidInput(f"treatments[{i}].end", "before start")
    return change


def parse_lab_report(text: str | bytes) -> LabReport:
    report = _validated(LabReport, load_json_document(text))
    for i, lab in enumerate(report.labs):
        if not lab.model_dump(exclude={"date"}, exclude_none=True):
            raise InvalidInput(f"labs[{i}]", "no result given")
    return report
