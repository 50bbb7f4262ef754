"""Referral documents written as FHIR R4 Bundles, by hand, the way a referring
hospital's system would send them (examples/fhir/<name>.bundle.json).

``python tests/fhir/fhir_bundles.py`` rewrites the example files from
examples/referrals/*.json; tests/fhir/test_fhir_inbound.py checks they match.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REFERRALS = ROOT / "examples" / "referrals"
BUNDLES = ROOT / "examples" / "fhir"

LOINC = "http://loinc.org"
ATC = "http://www.whocc.no/atc"
CVX = "http://hl7.org/fhir/sid/cvx"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
UCUM = "http://unitsofmeasure.org"

# What a hospital's system would code each example's free text as.
DIAGNOSIS_CODES = {
    "acute lymphoblastic leukaemia": (ICD10, "C91.0"),
    "neuroblastoma, autologous HSCT": (ICD10, "C74.9"),
    "systemic lupus erythematosus": (SNOMED, "55464009"),
}
DRUG_ATC = {
    "ALL maintenance (mercaptopurine/methotrexate)": "L01BB02",
    "busulfan/melphalan": "L01AB01",
    "rituximab": "L01FA01",
    "mycophenolate": "L04AA06",
    "prednisone": "H02AB07",
}
INFECTION_CODES = {"pneumonia": "233604007", "otitis media": "65363002"}
VACCINE_CVX = {"MMR": "03", "DTaP": "20", "VAR": "21", "IPV": "10", "Hib": "48", "PCV": "133"}
LABS = {  # field: (LOINC, UCUM unit sent, factor from the format's unit to it)
    "igg_g_l": ("2465-3", "mg/dL", 100.0),
    "iga_g_l": ("2458-8", "g/L", 1.0),
    "igm_g_l": ("2472-9", "g/L", 1.0),
    "cd4_per_ul": ("24467-3", "10*9/L", 0.001),
    "cd4_percent": ("8123-2", "%", 1.0),
    "cd19_per_ul": ("8116-6", "/uL", 1.0),
    "anc_per_ul": ("751-8", "10*3/uL", 0.001),
}
LOWER_LIMITS = {"igg_lower_limit_g_l": "igg_g_l", "cd19_lower_limit_per_ul": "cd19_per_ul"}


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(value, 6), "unit": unit, "system": UCUM, "code": unit}


def referral_to_bundle(doc: dict[str, Any], *, with_ref: bool = True) -> dict[str, Any]:
    """A referral document as the FHIR Bundle a hospital would send."""
    counter = iter(range(1, 10_000))
    pid = _uuid(next(counter))
    subject = {"reference": f"urn:uuid:{pid}"}
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [],
        "birthDate": doc["patient"]["birth_date"],
        "gender": doc["patient"]["sex"],
    }
    if with_ref:
        patient["identifier"].append({"system": "urn:sidflows:ref", "value": doc["patient"]["ref"]})
    identity = doc.get("identity") or {}
    if identity.get("mrn"):
        patient["identifier"].append(
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": "urn:oid:2.16.724.4.9.99",
                "value": identity["mrn"],
            }
        )
    if identity.get("name"):
        patient["name"] = [{"text": identity["name"]}]
    entries = [_entry(patient)]
    referrer = doc["referrer"]
    role_id = _uuid(next(counter))
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": role_id,
        "specialty": [{"text": referrer["service"]}],
    }
    if referrer.get("clinician"):
        role["practitioner"] = {"display": referrer["clinician"]}
    entries.append(_entry(role))
    sr: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": _uuid(next(counter)),
        "status": "active",
        "intent": "order",
        "code": {"text": "referral to paediatric immunology"},
        "subject": subject,
        "authoredOn": doc["received"],
        "requester": {"reference": f"urn:uuid:{role_id}"},
    }
    if doc.get("reason"):
        sr["reasonCode"] = [{"text": doc["reason"]}]
    if (doc.get("preferences") or {}).get("ig_route"):
        sr["extension"] = [
            {"url": "urn:sidflows:ig-route-preference", "valueCode": doc["preferences"]["ig_route"]}
        ]
    entries.append(_entry(sr))
    weight_day = doc["received"]
    entries.append(
        _entry(
            {
                "resourceType": "Observation",
                "id": _uuid(next(counter)),
                "status": "final",
                "code": {
                    "coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]
                },
                "subject": subject,
                "effectiveDateTime": weight_day,
                "valueQuantity": _qty(doc["patient"]["weight_kg"] * 1000, "g"),
            }
        )
    )
    diagnosis = doc["diagnosis"]
    system, code = (
        (diagnosis["system"], diagnosis["code"])
        if "code" in diagnosis
        else DIAGNOSIS_CODES[diagnosis["label"]]
    )
    entries.append(
        _entry(
            {
                "resourceType": "Condition",
                "id": _uuid(next(counter)),
                "code": {
                    "coding": [{"system": system, "code": code}],
                    "text": doc["diagnosis"]["label"],
                },
                "subject": subject,
            }
        )
    )
    if doc.get("hsct"):
        h = doc["hsct"]
        entries.append(
            _entry(
                {
                    "resourceType": "Procedure",
                    "id": _uuid(next(counter)),
                    "status": "completed",
                    "code": {
                        "coding": [{"system": SNOMED, "code": "234336002"}],
                        "text": f"{h['type']} haematopoietic stem cell transplant",
                    },
                    "subject": subject,
                    "performedDateTime": h["date"],
                }
            )
        )
        if h.get("active_gvhd"):
            entries.append(
                _entry(
                    {
                        "resourceType": "Condition",
                        "id": _uuid(next(counter)),
                        "clinicalStatus": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                    "code": "active",
                                }
                            ]
                        },
                        "code": {"coding": [{"system": SNOMED, "code": "234646005"}]},
                        "subject": subject,
                    }
                )
            )
    for tr in doc["treatments"]:
        period = {"start": tr["start"]}
        if tr.get("end"):
            period["end"] = tr["end"]
        ms: dict[str, Any] = {
            "resourceType": "MedicationStatement",
            "id": _uuid(next(counter)),
            "status": "completed" if tr.get("end") else "active",
            "medicationCodeableConcept": {
                "coding": [{"system": ATC, "code": tr.get("code") or DRUG_ATC[tr["drug"]]}],
                "text": tr["drug"],
            },
            "subject": subject,
            "effectivePeriod": period,
        }
        if tr.get("dose_mg_day") is not None:
            ms["dosage"] = [
                {
                    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": _qty(tr["dose_mg_day"], "mg")}],
                }
            ]
        entries.append(_entry(ms))
    for lab in doc["labs"]:
        for name, value in lab.items():
            if name == "date" or name in LOWER_LIMITS:
                continue
            code, unit, factor = LABS[name]
            obs: dict[str, Any] = {
                "resourceType": "Observation",
                "id": _uuid(next(counter)),
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "laboratory",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": subject,
                "effectiveDateTime": lab["date"],
                "valueQuantity": _qty(value * factor, unit),
            }
            for limit, of in LOWER_LIMITS.items():
                if of == name and lab.get(limit) is not None:
                    obs["referenceRange"] = [{"low": _qty(lab[limit] * factor, unit)}]
            entries.append(_entry(obs))
    for inf in doc["infections"]:
        entries.append(
            _entry(
                {
                    "resourceType": "Condition",
                    "id": _uuid(next(counter)),
                    "code": {
                        "coding": [{"system": SNOMED, "code": INFECTION_CODES[inf["kind"]]}],
                        "text": inf["kind"],
                    },
                    "severity": {
                        "coding": [
                            {"system": SNOMED, "code": "24484000" if inf["serious"] else "6736007"}
                        ]
                    },
                    "subject": subject,
                    "onsetDateTime": inf["date"],
                }
            )
        )
    for dose in doc["immunoglobulin_doses"]:
        grams = dose["g_per_kg"] * doc["patient"]["weight_kg"]
        entries.append(
            _entry(
                {
                    "resourceType": "MedicationAdministration",
                    "id": _uuid(next(counter)),
                    "status": "completed",
                    "medicationCodeableConcept": {
                        "coding": [
                            {
                                "system": ATC,
                                "code": "J06BA02" if dose["route"] == "iv" else "J06BA01",
                            }
                        ],
                        "text": "human normal immunoglobulin",
                    },
                    "subject": subject,
                    "effectiveDateTime": dose["date"],
                    "dosage": {"dose": _qty(grams, "g")},
                }
            )
        )
    for vac in doc["vaccinations"]:
        entries.append(
            _entry(
                {
                    "resourceType": "Immunization",
                    "id": _uuid(next(counter)),
                    "status": "completed",
                    "vaccineCode": {
                        "coding": [{"system": CVX, "code": VACCINE_CVX[vac["vaccine"]]}]
                    },
                    "patient": subject,
                    "occurrenceDateTime": vac["date"],
                }
            )
        )
    if doc.get("consent"):
        accepted = doc["consent"]["cost_accepted"]
        entries.append(
            _entry(
                {
                    "resourceType": "Consent",
                    "id": _uuid(next(counter)),
                    "status": "active",
                    "scope": {"text": "cost of treatments not publicly funded"},
                    "category": [{"text": "financial consent"}],
                    "patient": subject,
                    "provision": {"type": "permit" if accepted else "deny"},
                }
            )
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def example_names() -> list[str]:
    return sorted(p.stem for p in REFERRALS.glob("*.json"))


def write_examples() -> None:
    BUNDLES.mkdir(exist_ok=True)
    for name in example_names():
        doc = json.loads((REFERRALS / f"{name}.json").read_text())
        text = json.dumps(referral_to_bundle(doc), indent=2, ensure_ascii=False) + "\n"
        (BUNDLES / f"{name}.bundle.json").write_text(text)


if __name__ == "__main__":
    write_examples()
    sys.exit(0)
