"""config/codes.toml through sidflows.codes: each mapping row with its source (§8)."""

from __future__ import annotations

import pytest

from sidflows.codes import (
    ATC,
    ICD10,
    SNOMED,
    class_for_drug_name,
    diagnosis_group,
    drug_for_atc,
    group_for_label,
    load_codes,
    parse_codes,
    treatment_class,
)
from sidflows.config import config_path, read_toml
from sidflows.errors import ConfigError

ATC_CASES = [
    ("§8.2 L01FA01 rituximab -> anti_cd20", "L01FA01", "anti_cd20", "rituximab"),
    ("§8.2 L01XX99 (any L01) -> chemotherapy", "L01XX99", "chemotherapy", None),
    ("§8.2 L01BB05 fludarabine -> chemotherapy", "L01BB05", "chemotherapy", "fludarabine"),
    ("§8.2 L04AB02 infliximab -> anti_tnf (L04AB)", "L04AB02", "anti_tnf", None),
    (
        "§8.2 H02AB06 prednisolone -> corticosteroid (H02AB)",
        "H02AB06",
        "corticosteroid",
        "prednisolone",
    ),
    ("§8.2 L04AX03 methotrexate -> antimetabolite", "L04AX03", "antimetabolite", "methotrexate"),
    ("§8.2 L04AD02 tacrolimus -> calcineurin_inhibitor", "L04AD02", "calcineurin_inhibitor", None),
    ("§8.2 L01XL CAR-T group -> car_t", "L01XL04", "car_t", None),
]


@pytest.mark.parametrize(
    ("code", "cls", "drug"), [pytest.param(c, k, d, id=i) for i, c, k, d in ATC_CASES]
)
def test_atc_to_treatment_class(code: str, cls: str, drug: str | None) -> None:
    found = treatment_class(code)
    assert found is not None
    assert found.value == cls
    assert found.source.startswith("WHO ATC index")
    named = drug_for_atc(code)
    assert (named.value if named else None) == drug


DIAGNOSIS_CASES = [
    ("§8.1 ICD-10 C91.0 -> ALL", "C91.0", ICD10, "acute_lymphoblastic_leukaemia"),
    ("§8.1 ICD-10 C91.00 (a subcode) -> ALL", "C91.00", ICD10, "acute_lymphoblastic_leukaemia"),
    ("§8.1 ICD-10 C910 without the dot -> ALL", "C910", ICD10, "acute_lymphoblastic_leukaemia"),
    ("§8.1 ICD-10 C92.0 -> AML", "C92.0", ICD10, "acute_myeloid_leukaemia"),
    ("§8.1 ICD-10 N04.1 -> nephrotic syndrome", "N04.1", ICD10, "nephrotic_syndrome"),
    ("§8.1 SNOMED 91857003 -> ALL", "91857003", SNOMED, "acute_lymphoblastic_leukaemia"),
    ("§8.1 SNOMED not listed -> not recognised", "999999999", SNOMED, None),
    ("§8.1 unknown system -> not recognised", "C91.0", "http://example.org", None),
]


@pytest.mark.parametrize(
    ("code", "system", "group"), [pytest.param(c, s, g, id=i) for i, c, s, g in DIAGNOSIS_CASES]
)
def test_code_to_diagnosis_group(code: str, system: str, group: str | None) -> None:
    found = diagnosis_group(code, system)
    assert (found.value if found else None) == group
    if found:
        assert found.source


LABEL_CASES = [
    ("§8.1 B-ALL", "B-ALL", "acute_lymphoblastic_leukaemia"),
    (
        "§8.1 leucemia linfoblástica aguda (accent)",
        "Leucemia linfoblástica aguda",
        "acute_lymphoblastic_leukaemia",
    ),
    ("§8.1 LAL-T", "LAL-T en recaída", "acute_lymphoblastic_leukaemia"),
    ("§8.1 'all' in lower case is a word, not ALL", "all of it", None),
    ("§8.1 síndrome nefrótico", "Síndrome nefrótico corticodependiente", "nephrotic_syndrome"),
]


@pytest.mark.parametrize(
    ("label", "group"), [pytest.param(lb, g, id=i) for i, lb, g in LABEL_CASES]
)
def test_label_variants(label: str, group: str | None) -> None:
    found = group_for_label(label)
    assert (found.value if found else None) == group


def test_drug_names_and_unknown() -> None:
    assert class_for_drug_name("Rituximab") is not None
    assert class_for_drug_name("metotrexato") is not None
    assert class_for_drug_name("zorbumab") is None


def test_every_row_names_its_source_and_bad_tables_are_refused() -> None:
    codes = load_codes()
    assert ATC in codes.systems.values()
    assert all(r.source for r in (*codes.diagnosis, *codes.atc))
    data = read_toml(config_path("codes.toml"))
    data["diagnosis"] = [{**data["diagnosis"][0], "group": "nonsense"}]  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"diagnosis\[0\]\.group"):
        parse_codes(data, origin="u")
