"""A FHIR Bundle on the command line: read as its sidflows twin, refused naming the entry."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fhir_bundles import BUNDLES, REFERRALS

from flows.cli import main

SECRET = "a-unit-secret-of-32-characters!!"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_propose_reads_a_bundle_as_its_json_twin(capsys: pytest.CaptureFixture[str]) -> None:
    """`propose` of a Bundle prints the plan of the same referral written as sidflows JSON."""
    bundle = BUNDLES / "lupus-on-rituximab.bundle.json"
    code, from_fhir, _ = _run(capsys, "propose", str(bundle), "--today", "2026-11-24")
    assert code == 0
    code, from_json, _ = _run(
        capsys, "propose", str(REFERRALS / "lupus-on-rituximab.json"), "--today", "2026-11-24"
    )
    assert code == 0
    assert json.loads(from_fhir) == json.loads(from_json)


def _without_ref(tmp_path: Path) -> Path:
    bundle: dict[str, Any] = json.loads((BUNDLES / "lupus-on-rituximab.bundle.json").read_text())
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["identifier"] = [
                {"type": {"coding": [{"code": "MR"}]}, "system": "urn:oid:1.2.3", "value": "MRN-7"}
            ]
    path = tmp_path / "no-ref.json"
    path.write_text(json.dumps(bundle))
    return path


def test_a_bundle_without_a_ref_needs_the_units_secret(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No urn:sidflows:ref and no SIDFLOWS_REF_SECRET: refused, naming the setting."""
    from sidflows.settings import get_settings

    path = _without_ref(tmp_path)
    monkeypatch.delenv("SIDFLOWS_REF_SECRET", raising=False)
    get_settings.cache_clear()
    code, _, err = _run(capsys, "propose", str(path), "--today", "2026-11-24")
    assert code == 2
    assert "SIDFLOWS_REF_SECRET" in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("SIDFLOWS_REF_SECRET", SECRET)
    get_settings.cache_clear()
    code, out, _ = _run(capsys, "propose", str(path), "--today", "2026-11-24")
    get_settings.cache_clear()
    assert code == 0
    assert json.loads(out)["patient_ref"].startswith("SF-")


def test_refer_refuses_a_mangled_bundle_before_the_store_exists(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown code in a Bundle: exit 2, one line naming the entry, no store created."""
    from sidflows.settings import get_settings

    store = tmp_path / "store.db"
    monkeypatch.setenv("SIDFLOWS_DATABASE_URL", f"sqlite:///{store}")
    get_settings.cache_clear()
    bundle: dict[str, Any] = json.loads((BUNDLES / "lupus-on-rituximab.bundle.json").read_text())
    mangled = copy.deepcopy(bundle)
    index = next(
        i for i, e in enumerate(mangled["entry"]) if e["resource"]["resourceType"] == "Observation"
    )
    mangled["entry"][index]["resource"]["code"]["coding"][0]["code"] = "99999-9"
    path = tmp_path / "mangled.json"
    path.write_text(json.dumps(mangled))
    code, _, err = _run(capsys, "refer", str(path))
    get_settings.cache_clear()
    assert code == 2
    assert f"entry[{index}]" in err
    assert len(err.strip().splitlines()) == 1
    assert not store.exists()
