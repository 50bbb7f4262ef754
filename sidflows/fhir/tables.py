"""Code tables of the FHIR mapping, each row with its source.

Kept here until ``config/codes.toml`` + ``sidflows/codes.py`` (diagnosis groups,
ATC to treatment class) exist; then the diagnosis and ATC tables move there and
this module reads them. Sources:

- LOINC: loinc.org (codes checked with LOINC's mod-10 check digit and against the
  LOINC long common names as published, e.g. the eHealth Connector lab list,
  project-husky/husky ``LabObsListLoinc.java``).
- ATC: WHO Collaborating Centre for Drug Statistics Methodology, ATC/DDD Index
  (https://atcddd.fhi.no/atc_ddd_index/), 2024-2025 codes; pre-2024 codes of the
  drugs WHO moved are kept as aliases.
- CVX: CDC, Vaccines administered (CVX) code set
  (https://www2a.cdc.gov/vaccines/iis/iisstandards/vaccines.asp?rpt=cvx); every row but
  BCG (19) is also in the CDSi supporting data 4.64 shipped in sidflows/cdsi/data.
- SNOMED CT: SNOMED International, International Edition (browser.ihtsdotools.org).
- ICD-10: WHO ICD-10 2019 (https://icd.who.int/browse10/2019/en).
- UCUM: the Unified Code for Units of Measure (https://ucum.org/ucum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from sidflows import codes

LOINC = "http://loinc.org"
ATC = "http://www.whocc.no/atc"
CVX = "http://hl7.org/fhir/sid/cvx"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
UCUM = "http://unitsofmeasure.org"
REF_SYSTEM = "urn:sidflows:ref"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
IG_ROUTE_EXTENSION = "urn:sidflows:ig-route-preference"

# ----------------------------------------------------------------------------- LOINC

LabField = Literal[
    "igg_g_l", "iga_g_l", "igm_g_l", "cd4_per_ul", "cd4_percent", "cd19_per_ul", "anc_per_ul",
]  # fmt: skip
Quantity = Literal["g_l", "per_ul", "percent", "kg"]


@dataclass(frozen=True, slots=True)
class LoincRow:
    field: LabField | Literal["weight_kg"]
    quantity: Quantity
    name: str  # LOINC long common name
    # the format's field the Observation's referenceRange.low fills, if any
    lower_limit: str | None = None


BODY_WEIGHT = "29463-7"
LOINC_ROWS: dict[str, LoincRow] = {
    "29463-7": LoincRow("weight_kg", "kg", "Body weight"),
    "2465-3": LoincRow(
        "igg_g_l", "g_l", "IgG [Mass/volume] in Serum or Plasma", "igg_lower_limit_g_l"
    ),
    "2458-8": LoincRow("iga_g_l", "g_l", "IgA [Mass/volume] in Serum or Plasma"),
    # IgM is 2472-9 (check digit 9); "2472-4" is not a LOINC code.
    "2472-9": LoincRow("igm_g_l", "g_l", "IgM [Mass/volume] in Serum or Plasma"),
    "24467-3": LoincRow("cd4_per_ul", "per_ul", "CD3+CD4+ (T4 helper) cells [#/volume] in Blood"),
    "8123-2": LoincRow("cd4_percent", "percent", "CD3+CD4+ (T4 helper) cells/100 cells in Blood"),
    # 8116-6 is the absolute CD19 count; the percentage is 8117-4 (the format has no CD19 %).
    "8116-6": LoincRow(
        "cd19_per_ul", "per_ul", "CD19 cells [#/volume] in Blood", "cd19_lower_limit_per_ul"
    ),
    "751-8": LoincRow("anc_per_ul", "per_ul", "Neutrophils [#/volume] in Blood by Automated count"),
    "753-4": LoincRow("anc_per_ul", "per_ul", "Neutrophils [#/volume] in Blood by Manual count"),
    "26499-4": LoincRow("anc_per_ul", "per_ul", "Neutrophils [#/volume] in Blood"),
}

# UCUM code -> factor to the format's unit (g/L, cells/uL, %, kg).
UNIT_FACTORS: dict[Quantity, dict[str, float]] = {
    "g_l": {"g/L": 1.0, "mg/dL": 0.01, "g/dL": 10.0, "mg/L": 0.001, "mg/mL": 1.0},
    "per_ul": {
        "/uL": 1.0,
        "{cells}/uL": 1.0,
        "/mm3": 1.0,
        "{cells}/mm3": 1.0,
        "10*3/uL": 1000.0,
        "10*9/L": 1000.0,
        "10*6/L": 1.0,
    },
    "percent": {"%": 1.0},
    "kg": {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237},
}
UNIT_NAMES: dict[Quantity, str] = {
    "g_l": "g/L",
    "per_ul": "cells/uL",
    "percent": "%",
    "kg": "kg",
}

# ----------------------------------------------------------------------------- ATC

TreatmentClass = Literal[
    "chemotherapy", "anti_cd20", "corticosteroid", "antimetabolite", "anti_tnf",
    "jak_inhibitor", "calcineurin_inhibitor", "car_t", "other_biologic",
]  # fmt: skip

IG_SC = "J06BA01"  # immunoglobulins, normal human, for extravascular adm.
IG_IV = "J06BA02"  # immunoglobulins, normal human, for intravascular adm.
IG_ROUTES = {IG_SC: "sc", IG_IV: "iv"}

# (ATC code or group prefix, class, what): the longest matching prefix wins, so the
# CD20 inhibitors (L01FA), the JAK inhibitors (L01EJ) and CAR-T cells (L01XL0x) are
# picked out of L01 (antineoplastic agents). WHO ATC/DDD Index.
ATC_CLASSES: tuple[tuple[str, TreatmentClass, str], ...] = (
    ("L01", "chemotherapy", "antineoplastic agents"),
    ("L01FA", "anti_cd20", "CD20 (Clusters of Differentiation 20) inhibitors: rituximab, ..."),
    ("L01XC02", "anti_cd20", "rituximab (before 2022)"),
    ("L04AG08", "anti_cd20", "ocrelizumab (2024)"),
    ("L04AA36", "anti_cd20", "ocrelizumab (before 2024)"),
    ("L01XL03", "car_t", "axicabtagene ciloleucel"),
    ("L01XL04", "car_t", "tisagenlecleucel"),
    ("L01EJ", "jak_inhibitor", "Janus-associated kinase (JAK) inhibitors: ruxolitinib, ..."),
    ("L04AF", "jak_inhibitor", "Janus-associated kinase (JAK) inhibitors (2024): tofacitinib, ..."),
    ("L04AA29", "jak_inhibitor", "tofacitinib (before 2024)"),
    ("L04AA37", "jak_inhibitor", "baricitinib (before 2024)"),
    ("L04AA44", "jak_inhibitor", "upadacitinib (before 2024)"),
    ("H02AB", "corticosteroid", "glucocorticoids"),
    ("L04AA06", "antimetabolite", "mycophenolic acid (and mycophenolate mofetil)"),
    ("L04AX01", "antimetabolite", "azathioprine"),
    ("L04AX03", "antimetabolite", "methotrexate (immunosuppressant)"),
    ("L04AB", "anti_tnf", "tumor necrosis factor alpha (TNF-alpha) inhibitors"),
    ("L04AD", "calcineurin_inhibitor", "calcineurin inhibitors: ciclosporin, tacrolimus"),
    ("L04AC", "other_biologic", "interleukin inhibitors"),
    ("L04AG", "other_biologic", "monoclonal antibodies (2024; CD20 ones above)"),
    ("L04AA24", "other_biologic", "abatacept"),
    ("L04AA26", "other_biologic", "belimumab (before 2024)"),
)

# Prophylaxis drugs of the plan, for the outbound MedicationRequests.
PROPHYLAXIS_ATC: dict[str, tuple[str, str]] = {
    "co-trimoxazole": ("J01EE01", "sulfamethoxazole and trimethoprim"),
    "azithromycin": ("J01FA10", "azithromycin"),
    "amoxicillin": ("J01CA04", "amoxicillin"),
    "dapsone": ("J04BA02", "dapsone"),
    "pentamidine": ("P01CX01", "pentamidine isethionate"),
    "atovaquone": ("P01AX06", "atovaquone"),
    "phenoxymethylpenicillin": ("J01CE02", "phenoxymethylpenicillin"),
    "aciclovir": ("J05AB01", "aciclovir"),
    "fluconazole": ("J02AC01", "fluconazole"),
}


def treatment_class(atc: str) -> tuple[TreatmentClass, str] | None:
    """The format's treatment class of an ATC code, with the row's name.

    The longest matching row of the unit's code table (config/codes.toml, the
    one the clinical rules read) and of the rows below wins; on a tie, the unit's.
    """
    unit_row = codes.treatment_class(atc)
    best: tuple[str, TreatmentClass, str] | None = None
    for prefix, cls, what in ATC_CLASSES:
        if atc.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, cls, what)
    if unit_row is not None and (best is None or len(unit_row.row) >= len(best[0])):
        return cast(TreatmentClass, unit_row.value), unit_row.source
    return None if best is None else (best[1], best[2])


# ----------------------------------------------------------------------------- CVX

# CVX -> the format's vaccine codes (a combination vaccine gives each of its parts).
CVX_VACCINES: dict[str, tuple[tuple[str, ...], str]] = {
    "3": (("MMR",), "MMR"),
    "21": (("VAR",), "varicella"),
    "94": (("MMRV",), "MMRV"),
    "111": (("LAIV",), "influenza, live, trivalent, intranasal"),
    "149": (("LAIV",), "influenza, live, quadrivalent, intranasal"),
    "116": (("ROTA",), "rotavirus, pentavalent"),
    "119": (("ROTA",), "rotavirus, monovalent"),
    "122": (("ROTA",), "rotavirus, unspecified formulation"),
    "19": (("BCG",), "Bacillus Calmette-Guerin vaccine"),
    "37": (("YF",), "yellow fever"),
    "183": (("YF",), "yellow fever vaccine - alt"),
    "20": (("DTaP",), "DTaP"),
    "106": (("DTaP",), "DTaP, 5 pertussis antigens"),
    "107": (("DTaP",), "DTaP, unspecified formulation"),
    "50": (("DTaP", "Hib"), "DTaP-Hib"),
    "110": (("DTaP", "HepB", "IPV"), "DTaP-Hep B-IPV"),
    "120": (("DTaP", "Hib", "IPV"), "DTaP-Hib-IPV"),
    "130": (("DTaP", "IPV"), "DTaP-IPV"),
    "146": (("DTaP", "IPV", "Hib", "HepB"), "DTaP, IPV, Hib, HepB"),
    "115": (("Tdap",), "Tdap"),
    "9": (("Td",), "Td (adult), adsorbed"),
    "113": (("Td",), "Td (adult) preservative free"),
    "139": (("Td",), "Td (adult), unspecified formulation"),
    "10": (("IPV",), "IPV"),
    "17": (("Hib",), "Hib, unspecified formulation"),
    "48": (("Hib",), "Hib (PRP-T)"),
    "49": (("Hib",), "Hib (PRP-OMP)"),
    "8": (("HepB",), "Hep B, adolescent or pediatric"),
    "43": (("HepB",), "Hep B, adult"),
    "45": (("HepB",), "Hep B, unspecified formulation"),
    "83": (("HepA",), "Hep A, ped/adol, 2 dose"),
    "85": (("HepA",), "Hep A, unspecified formulation"),
    "133": (("PCV",), "pneumococcal conjugate PCV 13"),
    "152": (("PCV",), "pneumococcal conjugate, unspecified formulation"),
    "215": (("PCV",), "pneumococcal conjugate PCV 15"),
    "216": (("PCV",), "pneumococcal conjugate PCV 20"),
    "33": (("PPSV23",), "pneumococcal polysaccharide PPV23"),
    "114": (("MenACWY",), "meningococcal MCV4P"),
    "136": (("MenACWY",), "meningococcal MCV4O"),
    "147": (("MenACWY",), "meningococcal MCV4, unspecified formulation"),
    "203": (("MenACWY",), "meningococcal polysaccharide (groups A, C, Y, W-135) TT conjugate"),
    "162": (("MenB",), "meningococcal B, recombinant"),
    "163": (("MenB",), "meningococcal B, OMV"),
    "164": (("MenB",), "meningococcal B, unspecified"),
    "62": (("HPV",), "HPV, quadrivalent"),
    "137": (("HPV",), "HPV, unspecified formulation"),
    "165": (("HPV",), "HPV9"),
    "88": (("IIV",), "influenza, unspecified formulation"),
    "140": (("IIV",), "influenza, split virus, trivalent, PF"),
    "141": (("IIV",), "influenza, split virus, trivalent, preservative"),
    "150": (("IIV",), "influenza, split virus, quadrivalent, PF"),
    "158": (("IIV",), "influenza, split virus, quadrivalent, preservative"),
    "161": (("IIV",), "influenza, injectable, quadrivalent, PF, pediatric"),
    "171": (("IIV",), "influenza, MDCK, quadrivalent, PF"),
    "186": (("IIV",), "influenza, MDCK, quadrivalent, preservative"),
    "197": (("IIV",), "influenza, high-dose, quadrivalent, PF"),
    "205": (("IIV",), "influenza, adjuvanted, quadrivalent, PF"),
}
CDSI_MISSING_CVX = frozenset({"19"})  # BCG: in CDC's CVX list, not in the CDSi data

# The format's vaccine code -> the CVX used for it going out (the unspecified
# formulation where CDC has one).
VACCINE_CVX: dict[str, str] = {
    "MMR": "3", "VAR": "21", "MMRV": "94", "LAIV": "149", "ROTA": "122", "BCG": "19",
    "YF": "37", "DTaP": "107", "Tdap": "115", "Td": "139", "IPV": "10", "Hib": "17", "HepB": "45",
    "HepA": "85", "PCV": "152", "PPSV23": "33", "MenACWY": "147", "MenB": "164",
    "HPV": "137", "IIV": "88",
}  # fmt: skip


def norm_cvx(code: str) -> str:
    """CVX codes compare as numbers: ``03`` is ``3``."""
    text = code.strip()
    return str(int(text)) if text.isdigit() else text


# ----------------------------------------------------------------------------- SNOMED CT

Category = Literal["oncology", "hsct", "immune_mediated", "other"]

# Diagnosis: ICD-10 (WHO 2019) code prefixes -> category. The longest prefix wins.
ICD10_CATEGORIES: tuple[tuple[str, Category, str], ...] = (
    *((f"C{n:02d}", "oncology", "malignant neoplasms (chapter II, C00-C97)") for n in range(98)),
    ("D45", "oncology", "polycythaemia vera"),
    ("D46", "oncology", "myelodysplastic syndromes"),
    ("D47", "oncology", "other neoplasms of uncertain behaviour of lymphoid/haematopoietic tissue"),
    ("Z94.8", "hsct", "other transplanted organ and tissue status (bone marrow, stem cells)"),
    ("T86.0", "hsct", "bone-marrow transplant rejection (graft-versus-host reaction)"),
    ("M05", "immune_mediated", "seropositive rheumatoid arthritis"),
    ("M06", "immune_mediated", "other rheumatoid arthritis"),
    ("M08", "immune_mediated", "juvenile arthritis"),
    *(
        (f"M3{n}", "immune_mediated", "systemic connective tissue disorders (M30-M36)")
        for n in range(7)
    ),
    ("K50", "immune_mediated", "Crohn disease"),
    ("K51", "immune_mediated", "ulcerative colitis"),
    ("G35", "immune_mediated", "multiple sclerosis"),
    ("G70", "immune_mediated", "myasthenia gravis and other myoneural disorders"),
    ("D59.1", "immune_mediated", "other autoimmune haemolytic anaemias"),
    ("D69.3", "immune_mediated", "idiopathic thrombocytopenic purpura"),
    ("N04", "other", "nephrotic syndrome"),
    ("D61", "other", "other aplastic anaemias"),
)

SNOMED_DIAGNOSES: dict[str, tuple[Category, str]] = {
    "363346000": ("oncology", "malignant neoplastic disease"),
    "91857003": ("oncology", "acute lymphoid leukemia"),
    "91861009": ("oncology", "acute myeloid leukemia"),
    "55464009": ("immune_mediated", "systemic lupus erythematosus"),
    "69896004": ("immune_mediated", "rheumatoid arthritis"),
    "410795001": ("immune_mediated", "juvenile idiopathic arthritis"),
    "34000006": ("immune_mediated", "Crohn's disease"),
    "64766004": ("immune_mediated", "ulcerative colitis"),
    "24700007": ("immune_mediated", "multiple sclerosis"),
}

# Graft-versus-host disease: sets hsct.active_gvhd.
GVHD_SNOMED: dict[str, str] = {
    "234646005": "graft-versus-host disease",
    "402355000": "acute graft-versus-host disease",
    "402356004": "chronic graft-versus-host disease",
}
GVHD_ICD10 = ("T86.0",)  # only with a stem cell transplant Procedure; else a diagnosis

# Infections (SNOMED CT disorders) -> the referral's infection kind.
INFECTION_SNOMED: dict[str, str] = {
    "233604007": "pneumonia",
    "65363002": "otitis media",
    "91302008": "sepsis",
    "5758002": "bacteremia",
    "7180009": "meningitis",
    "36971009": "sinusitis",
    "4120002": "bronchiolitis",
    "128045006": "cellulitis",
    "68566005": "urinary tract infection",
    "25374005": "gastroenteritis",
    "6142004": "influenza",
    "38907003": "varicella",
    "4740000": "herpes zoster",
    "28944009": "cytomegalovirus infection",
    "840539006": "COVID-19",
}
# Condition.severity (SNOMED CT): severe -> serious.
SEVERITY_SERIOUS: dict[str, bool] = {
    "24484000": True,  # severe
    "6736007": False,  # moderate
    "255604002": False,  # mild
}

# Stem cell transplant procedures -> type (None: read "autologous"/"allogeneic" from the text).
TRANSPLANT_SNOMED: dict[str, tuple[Literal["autologous", "allogeneic"] | None, str]] = {
    "234336002": (None, "hemopoietic stem cell transplant"),
    "23719005": (None, "transplantation of bone marrow"),
    "444360002": ("allogeneic", "allogeneic hematopoietic stem cell transplantation"),
}

# Routes (SNOMED CT) of IG doses.
ROUTE_SNOMED: dict[str, str] = {"47625008": "iv", "34206005": "sc"}
ROUTE_CODES: dict[str, tuple[str, str]] = {
    "iv": ("47625008", "Intravenous route"),
    "sc": ("34206005", "Subcutaneous route"),
}
