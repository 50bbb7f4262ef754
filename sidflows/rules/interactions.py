"""The plan's drugs beside the child's own: interactions (docs/clinical-reference.md §5.4).

Azithromycin, the antibacterial prophylaxis of antibody deficiency, prolongs the QT
interval, as do hydroxychloroquine and chloroquine (their SmPCs, sections 4.4 and 4.5): the
combination carries an excess of cardiac events (Lane JCE, et al. Lancet Rheumatol
2020;2:e698). The plan keeps the protocol's choice and says so, a decision for the
clinician (an ECG, or an alternative), instead of prescribing it silently.
"""

from __future__ import annotations

from sidflows.rules.context import PlanContext
from sidflows.rules.facts import name_matches

QT_SRC = (
    "hydroxychloroquine SmPC (4.4, 4.5: QT-prolonging drugs, macrolides); azithromycin SmPC "
    "(4.4: QT prolongation); Lane JCE, et al. Lancet Rheumatol 2020;2:e698"
)
# The macrolides that ask for the QT check (English and Spanish): the prophylaxis is the
# protocol's antibacterial, azithromycin, or one of its alternatives.
MACROLIDES = (
    "azithromycin", "azitromicina", "clarithromycin", "claritromicina", "erythromycin",
    "eritromicina",
)  # fmt: skip


def qt_words(ctx: PlanContext, drug: str) -> tuple[str, str, str]:
    """For a macrolide the plan gives beside a QT-prolonging drug the child takes on the
    plan's day: (decision suffix, rationale prefix, source suffix); empty strings where
    there is none."""
    if not name_matches(drug, MACROLIDES):
        return "", "", ""
    qt = ctx.protocol.prophylaxis.antibacterial.qt_prolonging_drugs
    taken = ", ".join(
        dict.fromkeys(
            t.drug
            for t in ctx.referral.treatments
            if t.active_on(ctx.today) and name_matches(t.drug, qt)
        )
    )
    if not taken:
        return "", "", ""
    return (
        f": with {taken}: check the QT",
        f"with {taken}: both prolong the QT interval (an excess of cardiac events with the "
        "combination): an ECG before it, or one of the alternatives (clinician decision); ",
        f"; {QT_SRC}; {ctx.cite('prophylaxis.antibacterial.qt_prolonging_drugs')}",
    )
