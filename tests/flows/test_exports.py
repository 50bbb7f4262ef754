"""What the pathway writes for others on a real Prefect server: each plan version as a FHIR
Bundle (a directory, an HTTP endpoint), once; `show --fhir`; the sweep's calendar feeds."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import icalendar
import pytest
from conftest import EXAMPLES
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from flows.cli import main
from flows.deployments import register
from flows.exports import export_plans
from flows.referral import run_activate, run_pathway
from flows.replan import run_replan
from flows.sweep import run_sweep
from sidflows import service
from sidflows.settings import Settings, get_settings
from sidflows.testing.receivers import HttpReceiver
from sidflows.unit import Unit

pytestmark = pytest.mark.prefect
TODAY = dt.date(2026, 11, 24)
NAME, MRN = "Export Example Child", "MRN-EXP-0001"
RECOVERED = {
    "labs": [{"date": "2026-11-30", "igg_g_l": 8.5, "cd19_per_ul": 300, "cd4_per_ul": 900}]
}


@pytest.fixture(scope="module", autouse=True)
def deployments(prefect_server: str) -> None:
    register()


def _set(monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(f"SIDFLOWS_{name.upper()}", value)
    get_settings.cache_clear()


def _refer(ref: str) -> str:
    sample = json.loads((EXAMPLES / "all-after-maintenance.json").read_text())
    sample["patient"]["ref"] = ref  # keys of its own on the session's server
    sample["identity"] = {"name": NAME, "mrn": MRN}
    return service.refer(json.dumps(sample).encode(), unit=Unit(), actor="test").ref


def _approve(ref: str) -> None:
    service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
    service.consent(ref, unit=Unit(), by="coordinator")
    assert run_activate(ref) == "activated"


def _two_versions(ref: str) -> None:
    """v1 proposed, v1 active, v2 proposed (a re-plan), v2 active: four exports."""
    assert run_pathway(ref, today=TODAY) == "awaiting_approval"
    _approve(ref)
    service.record_lab_result(ref, json.dumps(RECOVERED), actor="Dr Test")
    assert run_replan(ref, "new lab result", TODAY + dt.timedelta(days=7)).startswith("v2")
    _approve(ref)


def _careplan(bundle: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    return found


def _url_of(bundle: dict[str, Any]) -> str:
    url: str = next(
        e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    return url


@pytest.fixture
def cleared() -> Iterator[None]:
    yield
    get_settings.cache_clear()


def test_each_version_is_written_once_to_a_directory(
    prefect_server: str,
    store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cleared: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outbox = tmp_path / "fhir-out"
    _set(monkeypatch, fhir_export=str(outbox))
    ref = _refer("EX-FHIR-1")
    _two_versions(ref)
    names = sorted(p.name for p in outbox.iterdir())
    assert names == [f"{ref}-v{v}-{s}.json" for v in (1, 2) for s in ("active", "proposed")]
    bundles = {p.stem: json.loads(p.read_text()) for p in outbox.iterdir()}
    for bundle in bundles.values():
        Bundle.model_validate(bundle)
        assert bundle["type"] == "collection"
    assert _careplan(bundles[f"{ref}-v1-proposed"])["status"] == "draft"
    assert _careplan(bundles[f"{ref}-v1-active"])["status"] == "active"
    v2 = _careplan(bundles[f"{ref}-v2-active"])
    assert v2["replaces"][0]["reference"] == _url_of(bundles[f"{ref}-v1-active"])
    text = "".join(p.read_text() for p in outbox.iterdir())
    assert NAME not in text
    assert MRN not in text
    stamps = {p.name: p.stat().st_mtime_ns for p in outbox.iterdir()}
    assert export_plans(ref) == 0  # a second run writes nothing new
    assert {p.name: p.stat().st_mtime_ns for p in outbox.iterdir()} == stamps
    assert not [p for p in outbox.iterdir() if p.name.startswith(".")]

    # `show --fhir` prints the current plan (v2 active) the same way, identity on request.
    assert main(["show", ref, "--fhir"]) == 0
    shown = json.loads(capsys.readouterr().out)
    Bundle.model_validate(shown)
    assert _careplan(shown)["replaces"][0]["reference"] == _url_of(bundles[f"{ref}-v1-active"])
    assert NAME not in json.dumps(shown)
    assert main(["show", ref, "--fhir", "--identity"]) == 0
    with_identity = json.loads(capsys.readouterr().out)
    Bundle.model_validate(with_identity)
    assert NAME in json.dumps(with_identity)
    assert MRN in json.dumps(with_identity)
    assert main(["show", ref, "--identity"]) == 2
    assert "--identity" in capsys.readouterr().err


def test_each_version_is_posted_once_to_an_http_endpoint(
    prefect_server: str, store: str, monkeypatch: pytest.MonkeyPatch, cleared: None
) -> None:
    receiver = HttpReceiver().start()
    try:
        _set(monkeypatch, fhir_export=f"http://127.0.0.1:{receiver.port}/fhir/Bundle")
        ref = _refer("EX-FHIR-2")
        _two_versions(ref)
        assert receiver.requests == 4
        assert {where for where, _, _ in receiver.received.messages} == {"/fhir/Bundle"}
        assert export_plans(ref) == 0  # recorded in the audit trail: nothing sent again
        assert receiver.requests == 4
    finally:
        receiver.stop()


def test_identity_never_goes_over_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDFLOWS_FHIR_EXPORT", "http://hospital.example/fhir/Bundle")
    monkeypatch.setenv("SIDFLOWS_FHIR_EXPORT_IDENTITY", "true")
    with pytest.raises(ValidationError, match="https"):
        Settings()
    monkeypatch.setenv("SIDFLOWS_FHIR_EXPORT", "https://hospital.example/fhir/Bundle")
    assert Settings().fhir_export_identity


def test_the_sweep_keeps_the_calendar_feeds(
    prefect_server: str, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cleared: None
) -> None:
    feeds = tmp_path / "served"
    _set(monkeypatch, calendar_dir=str(feeds))
    ref = _refer("EX-CAL-1")
    run_pathway(ref, today=TODAY)
    _approve(ref)
    summary = run_sweep(TODAY, reconcile=False, notify=False)
    assert summary["calendar_feeds"] == 3
    files = sorted(str(p.relative_to(feeds)) for p in feeds.rglob("*") if p.is_file())
    assert files == [f"children/{ref}.ics", "day-unit.ics", "home-care.ics"]
    for path in feeds.rglob("*.ics"):
        icalendar.Calendar.from_ical(path.read_bytes())
    day_unit = (feeds / "day-unit.ics").read_bytes()
    assert b"BEGIN:VEVENT" in day_unit
    assert NAME.encode() not in day_unit
    assert run_sweep(TODAY, reconcile=False, notify=False)["calendar_feeds"] == 0
