"""config/notifications.toml: roles, events, templates, reminders, escalation, dispatch.

Parsed once into frozen objects; a template that names a field its event does
not have is refused when the file is loaded, not when a message is due.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sidflows.config import load_config
from sidflows.documents import field_path
from sidflows.errors import ConfigError

Value = str | int | float | bool

# The facts each event offers its templates (besides the common ones).
COMMON_FIELDS = frozenset({"ref", "when", "ui", "role"})
EVENT_FIELDS: dict[str, frozenset[str]] = {
    "referral_received": frozenset({"service", "received"}),
    "plan_awaiting_approval": frozenset({"version", "reason", "items"}),
    "plan_awaiting_consent": frozenset({"version", "unfunded"}),
    "plan_activated": frozenset(
        {
            "version",
            "summary",
            "bookings",
            "ig_grams",
            "sc_training",
            "has_bookings",
            "has_ig",
            "has_sc",
        }
    ),
    "item_reminder": frozenset({"what", "due", "where", "kind", "hospital"}),
    "item_overdue": frozenset({"what", "due", "where", "kind", "hospital", "days", "step"}),
    "ig_session_missed": frozenset({"what", "due", "where", "kind", "hospital"}),
    "item_run_replaced": frozenset(
        {"what", "due", "where", "kind", "hospital", "state", "attempt", "version"}
    ),
    "items_held": frozenset({"version", "active_version", "count", "items"}),
    "trough_below_target": frozenset({"igg", "target"}),
    "plan_replanned": frozenset({"version", "reason", "changes"}),
    "delivery_failed": frozenset(
        {"failed_id", "failed_event", "failed_ref", "failed_role", "attempts", "error"}
    ),
    "digest": frozenset({"day", "count", "lines"}),
    "test": frozenset(),
}
EVENTS = frozenset(EVENT_FIELDS) - {"digest", "test"}
ROLES_REQUIRED = (
    "coordinators",
    "clinicians",
    "day_unit",
    "pharmacy",
    "home_care",
    "referrers",
    "ops",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(_Frozen):
    description: str = ""
    # Whether this role's routes may carry identity (name, record number); only
    # URLs whose scheme is in ``secure_schemes`` do, even then.
    secure: bool = False


class Event(_Frozen):
    roles: tuple[str, ...] = Field(min_length=1)
    digest: bool = False
    when: dict[str, dict[str, Value | tuple[Value, ...]]] = Field(default_factory=dict)

    def wants(self, role: str, facts: dict[str, Any]) -> bool:
        """Whether ``role`` hears of an event with these facts."""
        for name, wanted in self.when.get(role, {}).items():
            allowed = wanted if isinstance(wanted, tuple) else (wanted,)
            if facts.get(name) not in allowed:
                return False
        return True


class Template(_Frozen):
    subject: Annotated[str, Field(min_length=1, max_length=300)]
    body: Annotated[str, Field(min_length=1, max_length=5000)]


class Reminders(_Frozen):
    lead_working_days: Annotated[int, Field(ge=0, le=30)] = 2


class Dispatch(_Frozen):
    attempts: Annotated[int, Field(ge=1, le=100)] = 6
    backoff_seconds: Annotated[float, Field(ge=0, le=86400)] = 30
    backoff_max_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] = 3600
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10
    workers: Annotated[int, Field(ge=1, le=64)] = 8
    lease_seconds: Annotated[float, Field(gt=0, le=86400)] = 120
    batch: Annotated[int, Field(ge=1, le=100_000)] = 500

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (doubling, capped)."""
        return float(
            min(self.backoff_seconds * 2 ** max(attempts - 1, 0), self.backoff_max_seconds)
        )


class EscalationStep(_Frozen):
    after_working_days: Annotated[int, Field(ge=0, le=365)]
    roles: tuple[str, ...] = Field(min_length=1)


class NotificationConfig(_Frozen):
    version: str
    language: Literal["en", "es"] = "en"
    reminders: Reminders = Reminders()
    dispatch: Dispatch = Dispatch()
    escalation: tuple[EscalationStep, ...] = ()
    roles: dict[str, Role]
    secure_schemes: tuple[str, ...] = ()
    events: dict[str, Event]
    # language -> event -> {"subject", "body"} and optionally role -> template
    templates: dict[str, dict[str, dict[str, Any]]]

    @model_validator(mode="after")
    def _consistent(self) -> NotificationConfig:
        missing = [r for r in ROLES_REQUIRED if r not in self.roles]
        if missing:
            raise ValueError(f"roles: missing {', '.join(missing)}")
        for name, event in self.events.items():
            if name not in EVENTS:
                raise ValueError(
                    f"events.{name}: unknown event (known: {', '.join(sorted(EVENTS))})"
                )
            for role in (*event.roles, *event.when):
                if role not in self.roles:
                    raise ValueError(f"events.{name}: unknown role {role!r}")
        for i, step in enumerate(self.escalation):
            for role in step.roles:
                if role not in self.roles:
                    raise ValueError(f"escalation[{i}]: unknown role {role!r}")
        if self.language not in self.templates:
            raise ValueError(f"templates.{self.language}: no templates for the chosen language")
        for language, templates in self.templates.items():
            for name in (*self.events, "digest", "test"):
                if name not in templates:
                    raise ValueError(f"templates.{language}.{name}: missing")
            for name, entry in templates.items():
                _check_template(f"templates.{language}.{name}", name, entry, self.roles)
        return self

    def template(self, event: str, role: str) -> Template:
        entry = self.templates[self.language][event]
        specific = entry.get(role)
        chosen = specific if isinstance(specific, dict) else entry
        return Template(subject=chosen["subject"], body=chosen["body"])

    def role_for_route(self, route: str) -> Role:
        return self.roles[route.split(":", 1)[0]]


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _check_template(where: str, event: str, entry: dict[str, Any], roles: dict[str, Role]) -> None:
    if event not in EVENT_FIELDS:
        raise ValueError(f"{where}: unknown event")
    allowed = COMMON_FIELDS | EVENT_FIELDS[event]
    variants = {"": entry, **{k: v for k, v in entry.items() if isinstance(v, dict)}}
    for role, variant in variants.items():
        place = f"{where}.{role}" if role else where
        if role and role not in roles:
            raise ValueError(f"{place}: unknown role")
        for part in ("subject", "body"):
            text = variant.get(part)
            if not isinstance(text, str) or not text:
                raise ValueError(f"{place}.{part}: missing")
            try:
                unknown = _fields(text) - allowed
            except ValueError as exc:
                raise ValueError(f"{place}.{part}: {exc}") from None
            if unknown:
                raise ValueError(
                    f"{place}.{part}: unknown field {{{sorted(unknown)[0]}}}"
                    f" (this event has: {', '.join(sorted(allowed))})"
                )
        extra = set(variant) - {"subject", "body"} - (set(roles) if not role else set())
        if extra:
            raise ValueError(f"{place}: unknown key {sorted(extra)[0]!r}")


def parse_notifications(
    data: dict[str, object], *, origin: str = "notifications"
) -> NotificationConfig:
    try:
        return NotificationConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = field_path(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{origin}: {where + ': ' if where else ''}{message}") from None


def load_notifications(path: Path | None = None) -> NotificationConfig:
    """The unit's notification settings: SIDFLOWS_NOTIFICATIONS, else config/notifications.toml."""
    return load_config(parse_notifications, "notifications.toml", "SIDFLOWS_NOTIFICATIONS", path)
