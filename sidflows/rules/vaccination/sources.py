"""The sources the vaccination rules cite (docs/clinical-reference.md §4)."""

from __future__ import annotations

IDSA = "IDSA 2013 (Rubin, CID 58:e44)"
IDSA_T6 = "IDSA 2013 table 6"
ACIP_ABS = "ACIP general best practice, antibody-live vaccine interval table"
ACIP_STEROIDS = "ACIP general best practice, altered immunocompetence (corticosteroids)"
ACR_EULAR = (
    "ACR 2022 vaccination guideline (Bass, Arthritis Care Res 2023;75:449); EULAR 2019 "
    "(Furer, Ann Rheum Dis 2020;79:39)"
)
HSCT_SRC = "IDSA 2013 table 4; ECIL-7; EBMT paediatric vaccination"
CHEMO_SRC = "IDSA 2013 rec. 73; AIEOP (Cesaro 2014); IAP 2019"
CD20_SRC = "rheumatology recommendations (ACR 2022); rituximab label"
PNEUMO_SRC = "IDSA 2013 (PCV then PPSV23 >= 8 weeks)"
ACIP_TDAP = (
    "ACIP (Havers, MMWR 2020;69:77): from 7 years no DTaP; Tdap as the first catch-up dose, "
    "then Td or Tdap"
)
