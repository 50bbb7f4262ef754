"""Run CDC's CDSi test-case workbooks through the engine and report the pass rates.

``python -m sidflows.cdsi.conformance [--workbook PATH ...] [--case ID] [--failures N]``

A case passes when every dose with an expected evaluation status gets that status for
the case's vaccine group, and the vaccine group forecast has the expected series status
and exactly the expected earliest, recommended and past-due dates (blank when blank).
"""

from __future__ import annotations

import argparse
import importlib
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sidflows.cdsi.data import load, norm_cvx
from sidflows.cdsi.engine import assess
from sidflows.cdsi.types import (
    AdministeredDose,
    Assessment,
    Gender,
    Patient,
    PatientObservation,
)

__all__ = [
    "DEFAULT_WORKBOOKS",
    "Case",
    "CaseResult",
    "ExpectedDose",
    "check_case",
    "main",
    "read_workbook",
    "run_cases",
]

_TESTS_DATA = Path(__file__).resolve().parents[2] / "tests" / "cdsi" / "data"
DEFAULT_WORKBOOKS = (
    _TESTS_DATA / "cdsi-healthy-childhood-and-adult-test-cases-v4.45.xlsx",
    _TESTS_DATA / "CDSi-underlying-conditions-test-cases-v4.6.xlsx",
)
_TABS = ("FITS Exported TestCases", "Underlying Condition Test Cases")

# The workbooks' Vaccine_Group column -> the supporting data's vaccine group names.
_GROUPS = {
    "dtap": "DTaP/Tdap/Td",
    "pol": "Polio",
    "ipol": "Polio",
    "polio": "Polio",
    "hib": "Hib",
    "pcv": "Pneumococcal",
    "pneumococcal": "Pneumococcal",
    "var": "Varicella",
    "varicella": "Varicella",
    "rota": "Rotavirus",
    "rotavirus": "Rotavirus",
    "mcv": "Meningococcal",
    "meningococcal": "Meningococcal",
    "menb": "Meningococcal B",
    "meningococcal b": "Meningococcal B",
    "zoster": "Zoster",
    "flu": "Influenza",
    "influenza": "Influenza",
}


@dataclass(frozen=True, slots=True)
class ExpectedDose:
    dose: AdministeredDose
    status: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Case:
    workbook: str
    case_id: str
    name: str
    patient: Patient
    doses: tuple[ExpectedDose, ...]
    observations: tuple[PatientObservation, ...]
    assessment_date: date
    vaccine_group: str
    series_status: str
    earliest: date | None
    recommended: date | None
    past_due: date | None
    changed_in_version: str | None = None
    """The workbook's Changed_In_Version: the CDSi version the case was last changed
    for (its expected results follow the supporting data of that time)."""
    date_updated: date | None = None


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    differences: tuple[str, ...]
    assessment: Assessment | None = field(default=None, compare=False)

    @property
    def passed(self) -> bool:
        return not self.differences


def _as_date(value: Any) -> date | None:
    if value is None or value in {"", "-"}:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    month, day, year = text.split("/")
    return date(int(year), int(month), int(day))


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _group_name(raw: str, known: Sequence[str]) -> str:
    key = raw.strip().lower()
    if key in _GROUPS:
        return _GROUPS[key]
    for name in known:
        if name.lower() == key:
            return name
    return raw.strip()


def read_workbook(path: Path) -> list[Case]:
    """Read one of CDC's workbooks (layout per its 'Test Case Layout' tab); each file is
    read once per process."""
    return list(_read_workbook(path.resolve()))


@cache
def _read_workbook(path: Path) -> tuple[Case, ...]:
    openpyxl: Any = importlib.import_module("openpyxl")  # test extra; untyped

    known = list(load().vaccine_groups)
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        tab = next(t for t in _TABS if t in book.sheetnames)
        rows = book[tab].iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(rows)]
        col = {name.lower(): i for i, name in enumerate(header)}
        cases: list[Case] = []
        for row in rows:
            cases.extend(_case(path.name, row, col, known))
        return tuple(cases)
    finally:
        book.close()


def _case(
    workbook: str, row: Sequence[Any], col: dict[str, int], known: Sequence[str]
) -> Iterator[Case]:
    def get(name: str) -> Any:
        i = col.get(name.lower())
        return row[i] if i is not None and i < len(row) else None

    case_id = _as_text(get("CDC_Test_ID"))
    birth = _as_date(get("DOB"))
    group = _as_text(get("Vaccine_Group"))
    assessed = _as_date(get("Assessment_Date"))
    if case_id is None or birth is None or group is None or assessed is None:
        return
    gender_text = (_as_text(get("Gender")) or "U").upper()[:1]
    gender: Gender = "F" if gender_text == "F" else "M" if gender_text == "M" else "U"
    doses: list[ExpectedDose] = []
    for k in range(1, 8):
        given = _as_date(get(f"Date_Administered_{k}"))
        cvx = _as_text(get(f"CVX_{k}"))
        if given is None or cvx is None:
            continue
        dose = AdministeredDose(str(k), cvx, given, _as_text(get(f"MVX_{k}")))
        doses.append(
            ExpectedDose(
                dose,
                _as_text(get(f"Evaluation_Status_{k}")),
                _as_text(get(f"Evaluation_Reason_{k}")),
            )
        )
    observations: list[PatientObservation] = []
    for k in range(1, 4):
        code = _as_text(get(f"Observation_Code_{k}"))
        if code is not None:
            observations.append(PatientObservation(code, _as_date(get(f"Observation_Date_{k}"))))
    yield Case(
        workbook=workbook,
        case_id=case_id,
        name=_as_text(get("Test_Case_Name")) or "",
        patient=Patient(birth, gender),
        doses=tuple(doses),
        observations=tuple(observations),
        assessment_date=assessed,
        vaccine_group=_group_name(group, known),
        series_status=_as_text(get("Series_Status")) or "",
        earliest=_as_date(get("Earliest_Date")),
        recommended=_as_date(get("Recommended_Date")),
        past_due=_as_date(get("Past_Due_Date")),
        changed_in_version=_as_text(get("Changed_In_Version")),
        date_updated=_as_date(get("Date_updated")),
    )


def _fmt(value: date | None) -> str:
    return value.isoformat() if value is not None else "-"


def check_case(case: Case) -> CaseResult:
    """Run one case and list what differs from the expected results."""
    data = load()
    groups = [case.vaccine_group]
    for expected in case.doses:
        for assoc in data.cvx_map.get(norm_cvx(expected.dose.cvx), ()):
            group = data.antigen_to_group.get(assoc.antigen)
            if group is not None and group not in groups:
                groups.append(group)
    result = assess(
        case.patient,
        [d.dose for d in case.doses],
        case.assessment_date,
        case.observations,
        vaccine_groups=groups,
    )
    diffs: list[str] = []
    forecast = result.vaccine_groups.get(case.vaccine_group)
    # A dose of another vaccine group (e.g. varicella beside MMR) is expected to carry
    # its evaluation in its own vaccine group.
    statuses: dict[str, tuple[str, tuple[str, ...]]] = {}
    for group in reversed(groups):
        other = result.vaccine_groups.get(group)
        if other is not None:
            statuses.update({d: (st, r) for d, st, r in other.dose_statuses})
    for expected in case.doses:
        if expected.status is None:
            continue
        got, reasons = statuses.get(expected.dose.dose_id, ("-", ()))
        if got.lower() != expected.status.lower():
            diffs.append(
                f"dose {expected.dose.dose_id} (CVX {expected.dose.cvx} on "
                f"{expected.dose.date_administered}): expected {expected.status}"
                f"{' (' + expected.reason + ')' if expected.reason else ''}, got {got}"
                f"{' (' + '; '.join(reasons) + ')' if reasons else ''}"
            )
    got_status = forecast.status if forecast else "-"
    if got_status.lower() != case.series_status.lower():
        diffs.append(f"series status: expected {case.series_status}, got {got_status}")
    for label, want, have in (
        ("earliest", case.earliest, forecast.earliest if forecast else None),
        ("recommended", case.recommended, forecast.recommended if forecast else None),
        ("past due", case.past_due, forecast.past_due if forecast else None),
    ):
        if want != have:
            diffs.append(f"{label}: expected {_fmt(want)}, got {_fmt(have)}")
    return CaseResult(case, tuple(diffs), result)


def run_cases(cases: Sequence[Case]) -> list[CaseResult]:
    return [check_case(case) for case in cases]


def _rate(results: Sequence[CaseResult]) -> str:
    passed = sum(r.passed for r in results)
    share = 100.0 * passed / len(results) if results else 100.0
    return f"{passed}/{len(results)} ({share:.2f} %)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sidflows cdsi-conformance", description="Run CDC's CDSi test cases."
    )
    parser.add_argument("--workbook", action="append", type=Path, help="workbook (.xlsx)")
    parser.add_argument("--case", action="append", help="only this CDC_Test_ID (repeatable)")
    parser.add_argument("--failures", type=int, default=20, help="failing cases to list")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load()
    workbooks: list[Path] = args.workbook or list(DEFAULT_WORKBOOKS)
    all_results: list[CaseResult] = []
    engine_seconds = 0.0
    for path in workbooks:
        if not path.exists():
            print(f"{path}: no such workbook", file=sys.stderr)
            return 2
        cases = read_workbook(path)
        if args.case:
            cases = [c for c in cases if c.case_id in set(args.case)]
        tick = time.perf_counter()
        results = run_cases(cases)
        engine_seconds += time.perf_counter() - tick
        all_results.extend(results)
        print(f"{path.name}: {_rate(results)} cases pass")
        by_group: dict[str, list[CaseResult]] = {}
        for r in results:
            by_group.setdefault(r.case.vaccine_group, []).append(r)
        for name in sorted(by_group):
            print(f"  {name:<24} {_rate(by_group[name])}")
    failing = [r for r in all_results if not r.passed]
    kinds = Counter(d.split(":")[0].split(" (")[0] for r in failing for d in r.differences)
    if failing:
        print(f"failing cases: {len(failing)}; differences by kind: {dict(kinds)}")
    for r in failing[: max(args.failures, 0) if not args.case else len(failing)]:
        c = r.case
        changed = ""
        if c.changed_in_version or c.date_updated:
            changed = " (case last changed"
            changed += f" for v{c.changed_in_version}" if c.changed_in_version else ""
            changed += f" on {c.date_updated}" if c.date_updated else ""
            changed += ")"
        print(f"- {c.case_id} [{c.vaccine_group}] {c.name.strip()}{changed}")
        for d in r.differences:
            print(f"    {d}")
    rate = len(all_results) / engine_seconds if engine_seconds > 0 else 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{len(all_results)} forecasts in {engine_seconds:.2f} s ({rate:.0f} forecasts/s); "
        f"total {time.perf_counter() - started:.2f} s; peak memory {peak:.0f} MiB"
    )
    return 0 if not failing else 1


if __name__ == "__main__":
    raise SystemExit(main())
