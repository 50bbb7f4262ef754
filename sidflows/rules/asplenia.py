"""Asplenia and functional hyposplenism (docs/clinical-reference.md §5.12).

The referral's ``risk_conditions`` records it (``asplenia``: anatomical or functional
asplenia or hyposplenism, splenic irradiation included). Like a complement inhibitor, a
specific susceptibility to encapsulated bacteria (Neisseria included), not general
immunosuppression: not graded, no live-vaccine block. Penicillin V is
:mod:`sidflows.rules.prophylaxis` (the §5.6 builder), the meningococcal vaccines
:mod:`sidflows.rules.vaccination.meningococcal` (the §5.7 plan), the pneumococcal
reinforcement :mod:`sidflows.rules.vaccination.risk`, the CDSi observation
:mod:`sidflows.rules.vaccination.cdsi_history`.
"""

from __future__ import annotations

from sidflows.rules.context import PlanContext


def asplenia(ctx: PlanContext) -> bool:
    """The referral records anatomical or functional asplenia or hyposplenism (§5.12)."""
    return "asplenia" in ctx.referral.risk_conditions


ASPLENIA_SOURCE = (
    "BCSH, Davies JM et al. Br J Haematol 2011;155:308 (absent or dysfunctional spleen: "
    "lifelong antibiotic prophylaxis offered); eTG (at least to 5 years of age and 3 years "
    "after splenectomy); SIOPE (Arunagiri, Eur J Cancer 2021;143:1: a mean spleen dose "
    ">= 10 Gy is significant), docs/clinical-reference.md §5.12"
)
ASPLENIA_WHY = (
    "anatomical or functional asplenia or hyposplenism (referral risk_conditions; e.g. "
    "splenectomy, splenic irradiation): risk of overwhelming infection by encapsulated "
    "bacteria (pneumococcus, meningococcus, Hib), lifelong, highest in childhood"
)
ASPLENIA_UNTIL = (
    "for as long as the spleen does not work: lifelong prophylaxis is offered (BCSH 2011, "
    "the cautious default; eTG: at least to 5 years of age and 3 years after splenectomy, "
    "the shorter alternative); fever is an emergency: a standby therapeutic antibiotic at "
    "home to start at the first sign of it, same-day medical review, an alert card, and "
    "malaria and animal-bite advice for travel (BCSH 2011)"
)
