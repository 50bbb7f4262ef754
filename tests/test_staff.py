"""The staff roster: config/staff.toml into frozen objects, lookups, roles, bad files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sidflows.config import config_path
from sidflows.errors import ConfigError, InvalidInput
from sidflows.staff import Roster, load_staff, parse_staff

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "staff.toml"


def roster(text: str) -> Roster:
    return parse_staff(tomllib.loads(text), origin="staff.toml")


UNIT = roster(
    """
    [[staff]]
    name = "Dr Ana Ruiz"
    roles = ["clinician"]
    login = "aruiz"

    [[staff]]
    name = "Marta Vidal"
    roles = ["nurse", "coordinator"]
    """
)


def test_shipped_roster_lists_the_demo_and_test_staff() -> None:
    """The shipped roster parses and names the demo's clinician and coordinator."""
    from flows.demo.simulation import CLINICIAN, COORDINATOR

    shipped = load_staff(SHIPPED)
    assert shipped.permit(CLINICIAN, role="clinician").name == CLINICIAN
    assert shipped.permit(COORDINATOR, role=None).name == COORDINATOR
    for name in ("Dr Test", "dr.approver", "Dr End-to-End"):
        assert shipped.permit(name, role="clinician").name == name
    assert shipped.staff[0].model_config.get("frozen") is True


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("Dr Ana Ruiz", "Dr Ana Ruiz"),
        ("  dr ana ruiz ", "Dr Ana Ruiz"),
        ("DR  ANA\tRUIZ", "Dr Ana Ruiz"),
        ("aruiz", "Dr Ana Ruiz"),
        (" ARUIZ", "Dr Ana Ruiz"),
        ("marta vidal", "Marta Vidal"),
    ],
)
def test_names_and_logins_match_ignoring_case_and_spaces(typed: str, name: str) -> None:
    """A name or login is found whatever its case and surrounding or repeated spaces."""
    member = UNIT.find(typed)
    assert member is not None
    assert member.name == name


@pytest.mark.parametrize(
    ("who", "role", "message"),
    [
        ("Marta Vidal", "clinician", "'Marta Vidal' is not a clinician in the staff roster"),
        ("Marta Vidal", "clinician", ": listed as nurse, coordinator"),
        ("Dr Nobody", "clinician", "'Dr Nobody' is not a clinician in the staff roster"),
        ("Dr Nobody", None, "'Dr Nobody' is not listed in the staff roster (staff.toml)"),
        ("   ", "clinician", "empty: give your name as in the staff roster"),
        ("", None, "empty"),
    ],
)
def test_who_lacks_the_role_is_refused_with_one_line(
    who: str, role: str | None, message: str
) -> None:
    """Anyone not on the roster, or without the role, is refused naming the field."""
    with pytest.raises(InvalidInput) as refused:
        UNIT.permit(who, role=role, field="--by")  # type: ignore[arg-type]
    assert refused.value.field == "--by"
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_any_role_is_enough_when_none_is_asked() -> None:
    """A nurse may do what needs only a place on the roster (recording consent)."""
    assert UNIT.permit("marta vidal", role=None).name == "Marta Vidal"
    assert UNIT.permit("ARUIZ", role="clinician").name == "Dr Ana Ruiz"


CLINICIAN = '[[staff]]\nname = "Dr A"\nroles = ["clinician"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "staff.toml: staff: Field required"),
        ("staff = []", "staff.toml: staff: Tuple should have at least 1 item"),
        ('[[staff]]\nroles = ["clinician"]', "staff[0].name: Field required"),
        ('[[staff]]\nname = "  "\nroles = ["clinician"]', "staff[0].name: blank"),
        ('[[staff]]\nname = "Dr A"\nroles = []', "staff[0].roles: Tuple should have at least 1"),
        ('[[staff]]\nname = "Dr A"\nroles = ["surgeon"]', "staff[0].roles[0]: Input should be"),
        ('[[staff]]\nname = "Dr A"\nroles = "clinician"', "staff[0].roles: Input should be"),
        ('[[staff]]\nname = "Dr A"\nrole = ["clinician"]', "staff[0].roles: Field required"),
        (CLINICIAN + 'rank = "consultant"', "staff[0].rank: Extra inputs are not permitted"),
        (
            CLINICIAN + '[[staff]]\nname = " DR a "\nroles = ["nurse"]',
            "staff[1].name: 'DR a' is already staff[0].name",
        ),
        (
            CLINICIAN + '[[staff]]\nname = "Dr B"\nroles = ["nurse"]\nlogin = "dr a"',
            "staff[1].login: 'dr a' is already staff[0].name",
        ),
        ('[[staff]]\nname = "Nurse A"\nroles = ["nurse"]', "staff: no clinician listed"),
        ("[[staff]\n", "not valid TOML"),
    ],
    ids=[
        "empty file",
        "empty roster",
        "no name",
        "blank name",
        "no roles",
        "unknown role",
        "roles not a list",
        "misspelt field",
        "unknown field",
        "duplicate name",
        "login is a name",
        "no clinician",
        "not TOML",
    ],
)
def test_bad_roster_is_a_config_error_naming_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    """A roster that cannot be trusted is refused whole, the message naming file and field."""
    path = tmp_path / "staff.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_staff(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_unit_roster_comes_from_sidflows_staff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIDFLOWS_STAFF points at the unit's roster; a missing file is a config error."""
    path = tmp_path / "unit-staff.toml"
    path.write_text(CLINICIAN)
    monkeypatch.setenv("SIDFLOWS_STAFF", str(path))
    assert config_path("staff.toml", "SIDFLOWS_STAFF") == path
    assert [m.name for m in load_staff().staff] == ["Dr A"]
    monkeypatch.setenv("SIDFLOWS_STAFF", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml: file not found"):
        load_staff()
