"""The staff roster: config/staff.toml parsed once into validated, frozen objects.

Prefect's server has one shared credential, not personal accounts, so who may
approve a plan is decided here: a name (or login) is looked up in the roster
and must hold the role the step needs. The format is documented in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sidflows.config import load_config
from sidflows.documents import field_path
from sidflows.errors import ConfigError, InvalidInput

Role = Literal["clinician", "coordinator", "nurse", "pharmacist", "family_liaison"]
Text = Annotated[str, Field(min_length=1, max_length=200)]


def normalise(who: str) -> str:
    """How names and logins are compared: case ignored, spaces trimmed and collapsed."""
    return " ".join(who.split()).casefold()


class StaffMember(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text
    roles: tuple[Role, ...] = Field(min_length=1)
    login: Text | None = None

    @field_validator("name", "login")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("blank")
        return value.strip() if value is not None else None

    def has(self, role: Role) -> bool:
        return role in self.roles


class StaffFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    staff: tuple[StaffMember, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Roster:
    """The unit's staff, looked up by name or login."""

    origin: str
    staff: tuple[StaffMember, ...]
    by_key: Mapping[str, StaffMember]

    def find(self, who: str) -> StaffMember | None:
        return self.by_key.get(normalise(who))

    def by_login(self, login: str) -> StaffMember | None:
        """The member whose ``login`` this is (a proven identity: never matched by name)."""
        key = normalise(login)
        return next((m for m in self.staff if m.login and normalise(m.login) == key), None)

    def permit(self, who: str, *, role: Role | None, field: str = "by") -> StaffMember:
        """The member ``who`` names, when they hold ``role`` (None: any role).

        Raises InvalidInput on ``field`` with the one line that says why not.
        """
        if not who.strip():
            raise InvalidInput(
                field, f"empty: give your name as in the staff roster ({self.origin})"
            )
        member = self.find(who)
        if member is not None and (role is None or member.has(role)):
            return member
        wanted = f"a {role}" if role else "listed"
        listed = f": listed as {', '.join(member.roles)}" if member is not None else ""
        raise InvalidInput(
            field, f"{who.strip()!r} is not {wanted} in the staff roster ({self.origin}){listed}"
        )


def parse_staff(data: dict[str, object], *, origin: str = "staff roster") -> Roster:
    try:
        staff = StaffFile.model_validate(data).staff
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise ConfigError(
            f"{origin}: {field_path(error['loc'])}: {error['msg'].removeprefix('Value error, ')}"
        ) from None
    by_key: dict[str, StaffMember] = {}
    where: dict[str, str] = {}
    for index, member in enumerate(staff):
        for part, value in (("name", member.name), ("login", member.login)):
            if value is None:
                continue
            key = normalise(value)
            if key in where:
                raise ConfigError(
                    f"{origin}: staff[{index}].{part}: {value!r} is already {where[key]}"
                )
            by_key[key], where[key] = member, f"staff[{index}].{part}"
    if not any(member.has("clinician") for member in staff):
        raise ConfigError(f"{origin}: staff: no clinician listed: nobody could approve a plan")
    return Roster(origin, staff, by_key)


def load_staff(path: Path | None = None) -> Roster:
    """The unit's roster: SIDFLOWS_STAFF, else config/staff.toml. Parsed once."""
    return load_config(parse_staff, "staff.toml", "SIDFLOWS_STAFF", path)
