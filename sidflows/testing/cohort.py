"""A synthetic cohort: children across the referral types of docs/clinical-reference.md §1.

Reproducible by seed; the demo, the tests and the benchmarks reuse it. The
documents are JSON-ready dicts in the referral format of docs/formats.md, with
synthetic identity values (never a real person) so that tests can look for
them where they must not appear.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

from sidflows.calendar import add_months

Doc = dict[str, Any]

_FIRST = (
    "Alba",
    "Biel",
    "Carla",
    "Dani",
    "Emma",
    "Feran",
    "Gala",
    "Hugo",
    "Iria",
    "Jan",
    "Lucia",
    "Marc",
    "Nora",
    "Oriol",
    "Paula",
    "Quim",
    "Rita",
    "Sergi",
    "Tania",
    "Uxue",
)
_LAST = ("Vidal", "Serra", "Puig", "Ferrer", "Soler", "Roca", "Font", "Mas", "Riera", "Sala")


def _d(day: date) -> str:
    return day.isoformat()


class _Child:
    """Draws one child's data; each referral type fills in its own treatments."""

    def __init__(self, rng: random.Random, index: int, received: date, prefix: str) -> None:
        self.rng = rng
        self.received = received
        age_days = rng.randint(200, 16 * 365)  # still a child after a year of follow-up
        self.birth = received - timedelta(days=age_days)
        years = age_days / 365.25
        self.weight = round(max(3.5, min(95.0, 3.5 + 2.6 * years + rng.uniform(-2, 4))), 1)
        self.ref = f"{prefix}-{index:06d}"
        self.index = index

    def days_ago(self, low: int, high: int) -> date:
        """A day in that range before the referral, never before birth."""
        return self.clamp(self.received - timedelta(days=self.rng.randint(low, high)))

    def lab(
        self,
        *,
        igg: tuple[float, float],
        cd19: tuple[float, float] | None = None,
        cd4: tuple[float, float] | None = None,
        anc: bool = False,
    ) -> Doc:
        lab: Doc = {"date": _d(self.days_ago(1, 20)), "igg_g_l": round(self.rng.uniform(*igg), 1)}
        if self.rng.random() < 0.6:
            lab["iga_g_l"] = round(self.rng.uniform(0.05, 1.5), 2)
            lab["igm_g_l"] = round(self.rng.uniform(0.1, 1.2), 2)
        if cd19:
            lab["cd19_per_ul"] = round(self.rng.uniform(*cd19))
            if self.rng.random() < 0.5:
                lab["cd19_lower_limit_per_ul"] = 100
        if cd4:
            lab["cd4_per_ul"] = round(self.rng.uniform(*cd4))
        if anc:
            lab["anc_per_ul"] = round(self.rng.uniform(300, 4000))
        return lab

    def infections(self, chance: float) -> list[Doc]:
        kinds = ("pneumonia", "otitis media", "sinusitis", "bacteraemia", "bronchitis")
        out = []
        for _ in range(self.rng.choice((0, 0, 1, 2, 3)) if self.rng.random() < chance else 0):
            kind = self.rng.choice(kinds)
            out.append(
                {
                    "date": _d(self.days_ago(10, 330)),
                    "kind": kind,
                    "serious": kind in ("pneumonia", "bacteraemia"),
                }
            )
        return out

    def document(
        self,
        service: str,
        category: str,
        label: str,
        treatments: list[Doc],
        labs: list[Doc],
        **extra: Any,
    ) -> Doc:
        rng = self.rng
        doc: Doc = {
            "patient": {
                "ref": self.ref,
                "birth_date": _d(self.birth),
                "sex": rng.choice(("female", "male")),
                "weight_kg": self.weight,
            },
            "identity": {
                "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)} Synthetic{self.index}",
                "mrn": f"SYN-MRN-{self.index:07d}",
            },
            "received": _d(self.received),
            "referrer": {"service": service},
            "diagnosis": {"category": category, "label": label},
            "treatments": treatments,
            "labs": labs,
            "infections": extra.pop("infections", self.infections(0.6)),
            "immunoglobulin_doses": extra.pop("immunoglobulin_doses", []),
            "vaccinations": extra.pop("vaccinations", self.routine_vaccines()),
        }
        if rng.random() < 0.3:
            doc["preferences"] = {"ig_route": rng.choice(("iv", "sc"))}
        if rng.random() < 0.5:
            doc["consent"] = {"cost_accepted": True}
        doc.update(extra)
        return doc

    def routine_vaccines(self) -> list[Doc]:
        out = []
        for months, vaccine in ((2, "DTaP"), (2, "PCV"), (12, "MMR"), (12, "VAR"), (48, "MMR")):
            when = add_months(self.birth, months)
            if when < self.received and self.rng.random() < 0.85:
                out.append({"vaccine": vaccine, "date": _d(when)})
        return out

    def clamp(self, day: date) -> date:
        return max(day, self.birth + timedelta(days=1))


def _all_after_maintenance(c: _Child) -> Doc:
    end = c.days_ago(20, 300)
    start = c.clamp(end - timedelta(days=800))
    return c.document(
        "oncology",
        "oncology",
        "acute lymphoblastic leukaemia",
        [
            {
                "drug": "ALL maintenance (mercaptopurine/methotrexate)",
                "class": "chemotherapy",
                "start": _d(start),
                "end": _d(end),
            }
        ],
        [c.lab(igg=(1.0, 7.0), cd4=(150, 900), cd19=(20, 400), anc=True)],
    )


def _all_on_maintenance(c: _Child) -> Doc:
    start = c.clamp(c.days_ago(200, 600))
    return c.document(
        "oncology",
        "oncology",
        "acute lymphoblastic leukaemia",
        [
            {
                "drug": "ALL maintenance (mercaptopurine/methotrexate)",
                "class": "chemotherapy",
                "start": _d(start),
                "end": None,
            }
        ],
        [c.lab(igg=(1.0, 6.0), cd4=(100, 700), anc=True)],
    )


def _lymphoma_after_rituximab_chemo(c: _Child) -> Doc:
    end = c.days_ago(30, 250)
    start = c.clamp(end - timedelta(days=150))
    return c.document(
        "oncology",
        "oncology",
        "B-cell non-Hodgkin lymphoma",
        [
            {"drug": "R-CHOP", "class": "chemotherapy", "start": _d(start), "end": _d(end)},
            {"drug": "rituximab", "class": "anti_cd20", "start": _d(start), "end": _d(end)},
        ],
        [c.lab(igg=(1.5, 6.5), cd19=(0, 150))],
    )


def _solid_tumour(c: _Child) -> Doc:
    end = c.days_ago(10, 200)
    start = c.clamp(end - timedelta(days=300))
    return c.document(
        "oncology",
        "oncology",
        "Wilms tumour",
        [
            {
                "drug": "vincristine/dactinomycin",
                "class": "chemotherapy",
                "start": _d(start),
                "end": _d(end),
            }
        ],
        [c.lab(igg=(3.0, 9.0))],
        blood_products=[
            {"date": _d(c.clamp(end - timedelta(days=20))), "product": "packed_red_cells"}
        ],
    )


def _auto_hsct(c: _Child) -> Doc:
    hsct = c.clamp(c.days_ago(90, 500))
    cond = c.clamp(hsct - timedelta(days=9))
    return c.document(
        "haematology",
        "hsct",
        "neuroblastoma, autologous HSCT",
        [
            {
                "drug": "busulfan/melphalan",
                "class": "chemotherapy",
                "start": _d(cond),
                "end": _d(c.clamp(hsct - timedelta(days=2))),
            }
        ],
        [c.lab(igg=(2.5, 8.0), cd4=(100, 700), cd19=(10, 300))],
        hsct={"date": _d(hsct), "type": "autologous", "active_gvhd": False},
        immunoglobulin_doses=[
            {"date": _d(c.clamp(hsct + timedelta(days=30))), "g_per_kg": 0.4, "route": "iv"}
        ]
        if (hsct + timedelta(days=30)) < c.received
        else [],
    )


def _allo_hsct(c: _Child) -> Doc:
    hsct = c.clamp(c.days_ago(100, 600))
    gvhd = c.rng.random() < 0.3
    treatments: list[Doc] = [
        {
            "drug": "fludarabine/treosulfan",
            "class": "chemotherapy",
            "start": _d(c.clamp(hsct - timedelta(days=8))),
            "end": _d(c.clamp(hsct - timedelta(days=3))),
        },
        {
            "drug": "ciclosporin",
            "class": "calcineurin_inhibitor",
            "start": _d(hsct),
            "end": None if gvhd else _d(min(c.received, hsct + timedelta(days=120))),
        },
    ]
    doses: list[Doc] = []
    day = hsct + timedelta(days=28)
    while day < c.received and len(doses) < 8:
        doses.append({"date": _d(day), "g_per_kg": 0.4, "route": "iv"})
        day += timedelta(days=28)
    return c.document(
        "haematology",
        "hsct",
        "acute myeloid leukaemia, allogeneic HSCT",
        treatments,
        [c.lab(igg=(3.0, 9.0), cd4=(50, 600), cd19=(0, 300))],
        hsct={"date": _d(hsct), "type": "allogeneic", "active_gvhd": gvhd},
        immunoglobulin_doses=doses,
    )


def _nephrotic_rituximab(c: _Child) -> Doc:
    last = c.clamp(c.days_ago(20, 300))
    return c.document(
        "nephrology",
        "immune_mediated",
        "steroid-dependent nephrotic syndrome",
        [
            {
                "drug": "rituximab",
                "class": "anti_cd20",
                "start": _d(c.clamp(last - timedelta(days=14))),
                "end": _d(last),
            },
            {
                "drug": "prednisolone",
                "class": "corticosteroid",
                "start": _d(c.clamp(last - timedelta(days=90))),
                "end": _d(c.clamp(last + timedelta(days=10)))
                if last + timedelta(days=10) <= c.received
                else None,
                "dose_mg_per_kg_day": round(c.rng.uniform(0.5, 2.0), 1),
            },
        ],
        [c.lab(igg=(1.0, 6.0), cd19=(0, 50))],
    )


def _lupus(c: _Child) -> Doc:
    last = c.clamp(c.days_ago(30, 200))
    return c.document(
        "rheumatology",
        "immune_mediated",
        "systemic lupus erythematosus",
        [
            {
                "drug": "rituximab",
                "class": "anti_cd20",
                "start": _d(c.clamp(last - timedelta(days=14))),
                "end": _d(last),
            },
            {
                "drug": "mycophenolate",
                "class": "antimetabolite",
                "start": _d(c.clamp(c.days_ago(300, 700))),
                "end": None,
            },
            {
                "drug": "prednisone",
                "class": "corticosteroid",
                "start": _d(c.clamp(c.days_ago(60, 200))),
                "end": None,
                "dose_mg_day": c.rng.choice((5, 10, 20, 30)),
            },
        ],
        [c.lab(igg=(3.0, 8.0), cd19=(0, 80))],
    )


def _jia_methotrexate(c: _Child) -> Doc:
    return c.document(
        "rheumatology",
        "immune_mediated",
        "juvenile idiopathic arthritis",
        [
            {
                "drug": "methotrexate",
                "class": "antimetabolite",
                "start": _d(c.clamp(c.days_ago(100, 900))),
                "end": None,
                "dose_mg_per_kg_week": round(c.rng.uniform(0.3, 0.6), 2),
            }
        ],
        [c.lab(igg=(5.0, 12.0))],
    )


def _ibd_anti_tnf(c: _Child) -> Doc:
    return c.document(
        "gastroenterology",
        "immune_mediated",
        "Crohn disease",
        [
            {
                "drug": "infliximab",
                "class": "anti_tnf",
                "start": _d(c.clamp(c.days_ago(60, 700))),
                "end": None,
            },
            {
                "drug": "azathioprine",
                "class": "antimetabolite",
                "start": _d(c.clamp(c.days_ago(60, 700))),
                "end": None,
                "dose_mg_per_kg_day": round(c.rng.uniform(1.5, 3.0), 1),
            },
        ],
        [c.lab(igg=(4.0, 12.0))],
    )


def _car_t(c: _Child) -> Doc:
    infusion = c.clamp(c.days_ago(60, 400))
    doses = [
        {"date": _d(infusion + timedelta(days=28 * k)), "g_per_kg": 0.4, "route": "iv"}
        for k in range(1, 12)
        if infusion + timedelta(days=28 * k) < c.received
    ]
    return c.document(
        "haematology",
        "oncology",
        "relapsed B-ALL, CD19 CAR-T",
        [
            {
                "drug": "tisagenlecleucel",
                "class": "car_t",
                "start": _d(infusion),
                "end": _d(infusion),
            }
        ],
        [c.lab(igg=(2.0, 9.0), cd19=(0, 5))],
        immunoglobulin_doses=doses,
    )


KINDS: dict[str, Callable[[_Child], Doc]] = {
    "all_after_maintenance": _all_after_maintenance,
    "all_on_maintenance": _all_on_maintenance,
    "lymphoma_rituximab_chemo": _lymphoma_after_rituximab_chemo,
    "solid_tumour": _solid_tumour,
    "autologous_hsct": _auto_hsct,
    "allogeneic_hsct": _allo_hsct,
    "nephrotic_rituximab": _nephrotic_rituximab,
    "lupus_rituximab": _lupus,
    "jia_methotrexate": _jia_methotrexate,
    "ibd_anti_tnf": _ibd_anti_tnf,
    "car_t": _car_t,
}


def synthetic_referrals(
    count: int, *, seed: int = 1, received: date = date(2026, 11, 20), prefix: str = "SYN"
) -> Iterator[Doc]:
    """``count`` referral documents, cycling through every referral type."""
    rng = random.Random(seed)
    kinds = list(KINDS.values())
    for index in range(count):
        child = _Child(rng, index, received, prefix)
        yield kinds[index % len(kinds)](child)
