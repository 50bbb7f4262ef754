"""config/notifications.toml and the routes: what a unit can set, and what it is told when wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidflows.config import read_toml
from sidflows.errors import ConfigError
from sidflows.notify.config import EVENT_FIELDS, load_notifications, parse_notifications
from sidflows.notify.messages import Notice, render
from sidflows.notify.routes import Url, configured, env_name, resolve, route_for

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "notifications.toml"


def _data() -> dict[str, Any]:
    return read_toml(SHIPPED)


def test_the_shipped_file_loads_with_defaults_from_the_issue() -> None:
    """Every role, a 2-working-day reminder, escalation coordinators then clinicians."""
    config = load_notifications()
    assert set(config.roles) >= {
        "coordinators",
        "clinicians",
        "day_unit",
        "pharmacy",
        "home_care",
        "referrers",
        "ops",
    }
    assert config.reminders.lead_working_days == 2
    assert [s.roles for s in config.escalation] == [("coordinators",), ("clinicians",)]
    assert not any(r.secure for r in config.roles.values()), "no route carries identity by default"


@pytest.mark.parametrize("language", ["en", "es"])
def test_every_event_renders_in_english_and_spanish(language: str) -> None:
    """Each event's template, for every role it reaches, renders with its facts."""
    data = _data()
    data["language"] = language
    config = parse_notifications(data)
    for event, settings in config.events.items():
        facts = {name: f"<{name}>" for name in EVENT_FIELDS[event]}
        for role in settings.roles:
            subject, body = render(
                config, Notice(event, "P-1", facts), role, {"ui": "http://ui", "when": "d"}
            )
            assert subject.strip()
            assert body.strip()
            assert "{" not in subject + body


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["templates"]["en"]["item_reminder"].update(body="{name} on {due}"), "{name}"),
        (
            lambda d: d["templates"]["en"]["item_reminder"].update(body="{due"),
            "templates.en.item_reminder.body",
        ),
        (lambda d: d["events"]["item_reminder"].update(roles=["porters"]), "porters"),
        (lambda d: d["roles"].pop("ops"), "roles: missing ops"),
        (lambda d: d["templates"]["es"].pop("plan_activated"), "templates.es.plan_activated"),
        (lambda d: d["events"].update(pizza={"roles": ["ops"]}), "events.pizza"),
        (lambda d: d["dispatch"].update(attempts=0), "dispatch.attempts"),
        (lambda d: d.update(language="fr"), "language"),
    ],
)
def test_a_wrong_file_is_refused_naming_the_place(change: Any, named: str) -> None:
    """A template field the event lacks (e.g. a name), an unknown role or event: refused."""
    data = _data()
    change(data)
    with pytest.raises(ConfigError, match="notifications") as error:
        parse_notifications(data)
    assert named in str(error.value)


def test_routes_come_from_the_environment_referrers_per_service() -> None:
    """SIDFLOWS_NOTIFY_<ROLE>, comma-separated; a service's own referrers route first."""
    env = {
        "SIDFLOWS_NOTIFY_PHARMACY": "json://a/1, json://b/2",
        "SIDFLOWS_NOTIFY_REFERRERS": "json://all/referrers",
        "SIDFLOWS_NOTIFY_REFERRERS_ONCOLOGY": "mailto://onc",
    }
    assert [u.value for u in resolve("pharmacy", env)] == ["json://a/1", "json://b/2"]
    assert route_for("referrers", service="Oncology") == "referrers:oncology"
    assert [u.value for u in resolve("referrers:oncology", env)] == ["mailto://onc"]
    assert [u.value for u in resolve("referrers:nephrology", env)] == ["json://all/referrers"]
    assert resolve("clinicians", env) == ()
    assert env_name("referrers:oncology") == "SIDFLOWS_NOTIFY_REFERRERS_ONCOLOGY"


def test_routes_from_a_secrets_file_and_the_environment_wins(tmp_path: Path) -> None:
    """SIDFLOWS_NOTIFY_SECRETS names a TOML file of routes; the environment overrides it."""
    secrets = tmp_path / "routes.toml"
    secrets.write_text(
        '[routes]\nclinicians = ["mailtos://u:p@mail/x"]\nreferrers_rheumatology = "json://r"\n'
    )
    env = {"SIDFLOWS_NOTIFY_SECRETS": str(secrets), "SIDFLOWS_NOTIFY_CLINICIANS": ""}
    assert [u.value for u in resolve("clinicians", env)] == ["mailtos://u:p@mail/x"]
    assert [u.value for u in resolve("referrers:rheumatology", env)] == ["json://r"]
    env["SIDFLOWS_NOTIFY_CLINICIANS"] = "json://override"
    assert [u.value for u in resolve("clinicians", env)] == ["json://override"]
    assert configured(env) == ["clinicians", "referrers_rheumatology"]
    secrets.write_text("[routes\n")
    with pytest.raises(ConfigError, match="not valid TOML") as error:
        resolve("clinicians", {"SIDFLOWS_NOTIFY_SECRETS": str(secrets)})
    assert "mailtos" not in str(error.value)


def test_a_url_is_never_shown() -> None:
    """Its repr and label hold the scheme and a digest, never the address or a password."""
    url = Url("mailtos://user:s3cret@smtp.hospital.example?to=x@y")
    assert "s3cret" not in repr(url)
    assert "hospital" not in repr(url)
    assert url.label.startswith("mailtos#")
    assert "s3cret" not in url.label
    assert "cto=5" in url.with_timeout(5)
    assert "rto=5" in url.with_timeout(5)
    assert Url("json://h/x?rto=30").with_timeout(5).count("rto=") == 1
