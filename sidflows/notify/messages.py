"""The facts of each event, from plan documents and items: pure, no store, no clock.

Facts are the minimum a member of staff needs (ref, what, when, where); they
never hold a name, a birth date or a record number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidflows.notify.config import NotificationConfig

KIND_LABELS = {
    "en": {
        "ig_session": "{route} immunoglobulin {dose_g:g} g",
        "ig_trough": "trough IgG",
        "vaccine_dose": "vaccine {vaccine} dose {dose_number}",
        "reassessment": "reassessment",
        "plan_review": "plan review",
        "prophylaxis": "{drug} prophylaxis",
    },
    "es": {
        "ig_session": "inmunoglobulina {route} {dose_g:g} g",
        "ig_trough": "IgG valle",
        "vaccine_dose": "vacuna {vaccine} dosis {dose_number}",
        "reassessment": "revaloración",
        "plan_review": "revisión del plan",
        "prophylaxis": "profilaxis con {drug}",
    },
}
PLACES = {
    "en": {
        "day_unit": "day unit",
        "chair": "day unit, chair {chair}",
        "home": "at home",
        "supervised": "at home, with the home-care nurse",
        "hospital": "hospital",
    },
    "es": {
        "day_unit": "hospital de día",
        "chair": "hospital de día, sillón {chair}",
        "home": "en domicilio",
        "supervised": "en domicilio, con la enfermera de atención domiciliaria",
        "hospital": "hospital",
    },
}
SUMMARY_LINE = {
    "en": "- {count} × {label}, first {first}",
    "es": "- {count} × {label}, la primera el {first}",
}
NONE = {"en": "- none", "es": "- ninguno"}
# The note that follows ops' failure alert once the message was delivered after all
# (not a configurable event: it goes wherever that alert went, in the unit's language).
DELIVERED_AFTER_FAILURE = {
    "en": {
        "subject": "sidflows: a notification that had failed was delivered",
        "body": (
            "Notification {failed_id} ({failed_event} for {failed_ref}, role {failed_role}),"
            " reported as failed, was delivered on {when} after {attempts} failed attempts."
            " No action needed."
        ),
    },
    "es": {
        "subject": "sidflows: se entregó una notificación que había fallado",
        "body": (
            "La notificación {failed_id} ({failed_event} de {failed_ref}, rol {failed_role}),"
            " que había fallado, se entregó el {when} tras {attempts} intentos fallidos."
            " No requiere acción."
        ),
    },
}


@dataclass(frozen=True)
class Notice:
    """An event about one child (or none) that the outbox turns into messages per role."""

    event: str
    ref: str | None
    facts: dict[str, Any]
    item_id: int | None = None
    item_key: str | None = None
    plan_version: int | None = None
    service: str | None = None  # the referring service, for the referrers' route
    roles: tuple[str, ...] | None = None  # only these roles (an escalation step)
    suffix: str = ""  # distinguishes repeated notices of one item (escalation steps)
    extra: dict[str, Any] = field(default_factory=dict)


def lines(entries: Iterable[str], language: str) -> str:
    found = [e for e in entries if e]
    return "\n".join(found) if found else NONE[language]


def item_label(kind: str, details: Mapping[str, Any], language: str) -> str:
    pattern = KIND_LABELS[language].get(kind, kind.replace("_", " "))
    values = {**details, "route": str(details.get("route", "")).upper()}
    try:
        return pattern.format_map(values)
    except (KeyError, ValueError, TypeError):
        return kind.replace("_", " ")


def item_place(details: Mapping[str, Any], chair: int | None, language: str) -> str:
    places = PLACES[language]
    if chair is not None:
        return places["chair"].format(chair=chair)
    setting = details.get("setting")
    if setting in ("home", "supervised"):
        return places[str(setting)]
    if details.get("route") == "iv":
        return places["day_unit"]
    return places["hospital"] if details.get("hospital", True) else places["home"]


def item_facts(
    *, kind: str, due: str, details: Mapping[str, Any], chair: int | None, language: str
) -> dict[str, Any]:
    return {
        "what": item_label(kind, details, language),
        "due": due,
        "where": item_place(details, chair, language),
        "kind": kind,
        "hospital": bool(details.get("hospital", True)),
    }


def activation_facts(
    document: Mapping[str, Any], chairs: Mapping[str, tuple[str, int]], language: str
) -> dict[str, Any]:
    """What each role needs of a newly active plan. ``chairs``: item key -> (day, chair)."""
    items = list(document["items"])
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        by_kind.setdefault(str(item["kind"]), []).append(item)
    summary = [
        SUMMARY_LINE[language].format(
            count=len(group),
            label=item_label(kind, group[0], language),
            first=min(str(i["due"]) for i in group),
        )
        for kind, group in by_kind.items()
    ]
    sessions = by_kind.get("ig_session", [])
    bookings = [
        f"- {chairs[s['key']][0]}: {item_place(s, chairs[s['key']][1], language)}, "
        f"{s.get('session_minutes') or '?'} min, {s['dose_g']:g} g"
        for s in sessions
        if s["key"] in chairs
    ]
    grams = Counter(str(s.get("route", "")).upper() for s in sessions)
    ig_grams = [
        f"- {chairs.get(s['key'], (s['due'], 0))[0]}: {s['dose_g']:g} g {str(s['route']).upper()}"
        for s in sessions
    ]
    sc = [s for s in sessions if s.get("route") == "sc"]
    training = [
        f"- {s['due']}: {item_place(s, None, language)}, {s['dose_g']:g} g"
        for s in sc
        if s.get("setting") == "supervised"
    ]
    return {
        "version": document.get("plan_version", ""),
        "summary": lines(summary, language),
        "bookings": lines(bookings, language),
        "ig_grams": lines(ig_grams, language)
        + (f"\n= {sum(s['dose_g'] for s in sessions):g} g" if sessions and grams else ""),
        "sc_training": lines(training, language),
        "has_bookings": bool(bookings),
        "has_ig": bool(sessions),
        "has_sc": bool(sc),
    }


def unfunded(document: Mapping[str, Any], language: str) -> str:
    return lines(
        (
            f"- {i['due']}: {item_label(str(i['kind']), i, language)}"
            for i in document["items"]
            if not i.get("publicly_funded", False)
        ),
        language,
    )


def render(
    config: NotificationConfig, notice: Notice, role: str, common: Mapping[str, Any]
) -> tuple[str, str]:
    """Subject and body of the notice for one role (fields checked when the file loaded)."""
    template = config.template(notice.event, role)
    values = _Facts({**common, "role": role, "ref": notice.ref or "-", **notice.facts})
    return template.subject.format_map(values), template.body.format_map(values)


def delivered_after_failure(facts: Mapping[str, Any], language: str) -> tuple[str, str]:
    """Subject and body of the "delivered" note that follows a failure alert."""
    text = DELIVERED_AFTER_FAILURE.get(language, DELIVERED_AFTER_FAILURE["en"])
    values = _Facts(facts)
    return text["subject"].format_map(values), text["body"].format_map(values)


class _Facts(dict[str, Any]):
    """A fact an event did not supply reads as "-" rather than failing the transaction."""

    def __missing__(self, key: str) -> str:
        return "-"
