"""The child's vaccinations through the CDSi engine, once per plan (clinical-reference §4.9).

The referral's doses (format codes, or CVX codes) become CDSi administered doses
(``vaccine_codes.toml``); the child's situation on ``ctx.today`` becomes CDSi
observations (the codes of the supporting data's observation list); the engine
evaluates and forecasts the vaccine groups the plan needs at ``ctx.today``. The
rules then read, per vaccine: the doses counted (valid by CDSi's ages and
intervals, each series counted by antigen, a same-day duplicate once), the group's
status and earliest date, and the vaccine's minimum age.

Before the engine sees them, the protocol's own rules remove the doses that do not
count for the unit: those before a stem cell transplant (revaccination restarts every
series, §4.6) and those given during chemotherapy (§4.1). Pure: no clock, no I/O
besides the once-cached supporting data and code table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import cache

from sidflows.cdsi import AdministeredDose, Patient, PatientObservation
from sidflows.cdsi.data import load
from sidflows.cdsi.dates import Duration, add_duration
from sidflows.cdsi.engine import Assessor
from sidflows.cdsi.model import SupportingData
from sidflows.cdsi.types import VaccineGroupForecast
from sidflows.rules.asplenia import asplenia
from sidflows.rules.context import PlanContext
from sidflows.rules.grading import grade
from sidflows.rules.immunoglobulin import IgDecision
from sidflows.rules.model import Decision
from sidflows.rules.vaccination.cvx import code_table

CDSI_SRC = "CDC CDSi logic specification 4.6, supporting data 4.64"
# A dose CDSi evaluates Not Valid for one of these is not counted; one it finds valid,
# extraneous (series already complete) or outside the series CDSi chose (not a
# preferable or allowable vaccine of it) was given and counts for the unit's series.
INVALID = ("Age: Too Young", "Interval: Too Soon", "Live Virus Conflict", "Inadvertent")
_GENDER = {"female": "F", "male": "M"}
ADULT_YEARS = 18


@dataclass(frozen=True, slots=True)
class Entry:
    """One referral dose as the engine sees it."""

    dose_id: str
    code: str
    cvx: str
    when: date
    series: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CdsiHistory:
    """The engine's answer for one plan, read per vaccine of the format.

    The engine runs at ``today`` for a vaccine group the first time a rule reads it
    (one assessment per group and plan, kept in ``_forecasts``): a group whose series
    need no dose costs nothing.
    """

    today: date
    birth_date: date
    entries: tuple[Entry, ...]
    duplicates: tuple[tuple[Entry, Entry], ...]
    """(dropped, kept): the same series recorded twice on one day, counted once."""
    observations: tuple[tuple[str, str, date | None], ...]
    """(CDSi observation code, its title, its date) given to the engine."""
    groups: frozenset[str]
    """The vaccine groups the plan may read (others are never assessed)."""
    patient: Patient
    doses: tuple[AdministeredDose, ...]
    _forecasts: dict[str, VaccineGroupForecast | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    _engine: list[Assessor] = field(default_factory=list, compare=False, repr=False)
    """The engine's assessment of this child at ``today``, made when first needed and
    shared by the groups (the history organised once, each antigen evaluated once)."""

    def group_forecast(self, group: str) -> VaccineGroupForecast | None:
        """The engine's forecast of one vaccine group at ``today`` (assessed once): the
        same as ``assess(..., vaccine_groups=[group])`` (sidflows.cdsi.engine.Assessor)."""
        forecasts = self._forecasts
        if group in forecasts:
            return forecasts[group]
        if group not in self.groups:
            return None
        if not self._engine:
            self._engine.append(
                Assessor(
                    self.patient,
                    self.doses,
                    self.today,
                    [PatientObservation(code, when) for code, _, when in self.observations],
                    data=paediatric_data(),
                )
            )
        forecasts[group] = self._engine[0].group(group)
        return forecasts[group]

    def forecast_after(
        self, group: str, planned: tuple[tuple[str, date], ...], on: date
    ) -> VaccineGroupForecast | None:
        """The engine's forecast of ``group`` on ``on`` had the ``planned`` doses (CVX, day)
        been given as well: the next dose of a catch-up the plan gives (§4.16)."""
        if group not in self.groups:
            return None
        extra = tuple(
            AdministeredDose(f"planned-{i}", cvx, day) for i, (cvx, day) in enumerate(planned)
        )
        return Assessor(
            self.patient,
            (*self.doses, *extra),
            on,
            [PatientObservation(code, when) for code, _, when in self.observations],
            data=paediatric_data(),
        ).group(group)

    def group_of(self, vaccine: str) -> str | None:
        table = code_table()
        found = table.lookup(vaccine)
        return table.groups[found.series[0]] if found is not None and found.series else None

    def forecast(self, vaccine: str) -> VaccineGroupForecast | None:
        group = self.group_of(vaccine)
        return None if group is None else self.group_forecast(group)

    def _statuses(self, vaccine: str) -> dict[str, tuple[str, tuple[str, ...]]] | None:
        fc = self.forecast(vaccine)
        if fc is None:
            return None
        return {dose_id: (status, reasons) for dose_id, status, reasons in fc.dose_statuses}

    def entries_of(self, vaccine: str, since: date | None = None) -> tuple[Entry, ...]:
        """The doses (duplicates dropped) that belong to ``vaccine``'s series."""
        found = code_table().lookup(vaccine)
        series = set(found.series) if found is not None else set()
        return tuple(
            e for e in self.entries if series & set(e.series) and (since is None or e.when >= since)
        )

    def _judged(
        self, vaccine: str, since: date | None, gap: timedelta | None
    ) -> list[tuple[Entry, str | None]]:
        """Each dose of the series with why it is not counted (None: counted).

        By CDSi: a dose it evaluates Not Valid for its age or interval (too young, too
        soon, a live virus conflict) or sub-standard. On the protocol's dates (``gap``,
        the protocol's interval): only a dose before the vaccine's minimum age, or closer
        than ``gap`` to the previous counted one; CDSi's series choice does not apply.
        """
        statuses = self._statuses(vaccine) if gap is None else None
        out: list[tuple[Entry, str | None]] = []
        prev: date | None = None
        for e in self.entries_of(vaccine):
            why: str | None = None
            if gap is not None:
                min_age = self.min_age_date(e.code)
                if min_age is not None and e.when < min_age:
                    why = f"given before the minimum age of {e.code} ({min_age})"
                elif prev is not None and e.when - prev < gap:
                    why = f"{(e.when - prev).days} days after the previous dose"
            else:
                status = statuses.get(e.dose_id) if statuses is not None else None
                if status is not None and (
                    status[0] == "Sub standard"
                    or (status[0] == "Not Valid" and any(r.startswith(INVALID) for r in status[1]))
                ):
                    why = f"{status[0]}: {', '.join(status[1])}"
            if why is None:
                prev = e.when
            if since is None or e.when >= since:
                out.append((e, why))
        return out

    def counted(
        self, vaccine: str, since: date | None = None, *, gap: timedelta | None = None
    ) -> tuple[date, ...]:
        """Dates of the doses that count toward ``vaccine``'s series (on or after ``since``):
        by antigen (DTaP, Tdap, Td one series; MMRV in MMR and varicella), a same-day
        duplicate once, a dose CDSi evaluates Not Valid (too young, too soon) not at all,
        unless ``gap`` (the protocol's interval) separates a too-soon dose from the last."""
        return tuple(sorted(e.when for e, why in self._judged(vaccine, since, gap) if not why))

    def not_counted(
        self, vaccine: str, since: date | None = None, *, gap: timedelta | None = None
    ) -> list[tuple[Entry, str]]:
        """The doses of the series CDSi evaluates Not Valid or sub-standard, with why."""
        return [(e, why) for e, why in self._judged(vaccine, since, gap) if why]

    def earliest(self, vaccine: str) -> date | None:
        """The forecast's earliest date of the group's next dose, if it is Not Complete."""
        fc = self.forecast(vaccine)
        if fc is None or fc.status != "Not Complete":
            return None
        return fc.earliest

    def min_age_date(self, vaccine: str) -> date | None:
        """The day ``vaccine`` may first be given by CDSi's vaccine ages (PPSV23: 2 years)."""
        found = code_table().lookup(vaccine)
        if found is None:
            return None
        age = _min_age(found.cvx)
        return None if age is None else add_duration(self.birth_date, age)

    def describe(self, vaccine: str) -> str:
        """What the engine says of ``vaccine``'s group, for a decision's rationale."""
        fc = self.forecast(vaccine)
        if fc is None:
            return "CDSi: no forecast for this vaccine"
        text = f"CDSi {fc.vaccine_group}: {fc.status}"
        if fc.status == "Not Complete" and fc.earliest is not None:
            # A date already reached is said as "due now": an age-based earliest date
            # can be the birth date itself, which must not leave the store.
            if fc.earliest <= self.today:
                text += f", dose {fc.forecast_dose_number} due now"
            else:
                text += f", dose {fc.forecast_dose_number} from {fc.earliest}"
            if fc.recommended is not None and fc.recommended > max(fc.earliest, self.today):
                text += f" (recommended {fc.recommended})"
        elif fc.reasons:
            text += f" ({'; '.join(dict.fromkeys(fc.reasons))})"
        return text

    def decisions(self) -> list[Decision]:
        """The bookkeeping the plan shows: observations, duplicates, doses not counted."""
        out: list[Decision] = []
        if self.observations:
            shown = "; ".join(
                f"{code} {title}" + (f" ({when})" if when else "")
                for code, title, when in self.observations
            )
            out.append(
                Decision(
                    "vaccination",
                    f"CDSi observations on {self.today}: {shown}",
                    "the child's situation as CDSi observations (transplant and its date, "
                    "immunosuppressive therapy, chemotherapy, IG replacement, the grading's "
                    "immunocompromise, low IgG, asplenia): they select CDSi's risk series and "
                    "contraindications",
                    CDSI_SRC,
                )
            )
        for dropped, kept in self.duplicates:
            same = "" if dropped.code == kept.code else f" (with {kept.code})"
            out.append(
                Decision(
                    "vaccination",
                    f"{dropped.code} recorded twice on {dropped.when}{same}: counted once",
                    "two doses of one series on the same day are one dose: the entry is "
                    "probably recorded twice; check the record",
                    f"{CDSI_SRC} (4.2: the history organised by antigen); ACIP general best "
                    "practice",
                )
            )
        return out


@cache
def paediatric_data() -> SupportingData:
    """The supporting data without the series no child can start (minimum age to start
    18 years or more: adult HepB, pneumococcal, polio, MMR series), parsed once.

    Exact for the unit's children (under 18 by the referral format): the engine leaves
    a series with no valid dose out while the patient is younger than its minimum age
    to start, and a child cannot have a valid dose of it. Fewer series, a faster forecast.
    """
    data = load()
    adult = (ADULT_YEARS * 12, 0)
    antigens = {
        name: replace(
            antigen,
            series=tuple(
                s
                for s in antigen.series
                if s.min_age_to_start is None
                or (s.min_age_to_start.months, s.min_age_to_start.days) < adult
            ),
        )
        for name, antigen in data.antigens.items()
    }
    return replace(data, antigens=antigens)


@cache
def _min_age(cvx: str) -> Duration | None:
    """The lowest age at which a standard series prefers (else allows) ``cvx``, without
    CDSi's 4-day grace (which evaluates doses given, not the day to schedule one)."""
    data = load()
    preferable: list[Duration] = []
    allowable: list[Duration] = []
    for antigen in data.antigens.values():
        for series in antigen.series:
            if series.series_type not in ("Standard", "Risk"):
                continue
            for dose in series.doses:
                for rule in dose.preferable_vaccines:
                    if rule.cvx == cvx and rule.begin_age is not None:
                        preferable.append(rule.begin_age)
                for rule in dose.allowable_vaccines:
                    if rule.cvx == cvx and rule.begin_age is not None:
                        allowable.append(rule.begin_age)
    found = preferable or allowable
    if not found:
        return None
    low = min(found, key=lambda d: (d.months, d.days))
    return Duration(low.months, max(low.days, 0), low.text)


def _counts_for_unit(ctx: PlanContext, when: date, series: tuple[str, ...]) -> bool:
    """The protocol's exclusions: doses before HSCT (§4.6), doses during chemotherapy
    (§4.1), except influenza, which is given every season during maintenance (§4.5)."""
    referral = ctx.referral
    if referral.hsct is not None and when < referral.hsct.date:
        return False
    if series == ("influenza",):
        return True
    return not any(
        ctx.facts.is_chemotherapy(t) and t.start <= when <= (t.end or ctx.today)
        for t in referral.treatments
    )


def _entries(ctx: PlanContext) -> tuple[list[Entry], list[tuple[Entry, Entry]]]:
    table = code_table()
    raw: list[Entry] = []
    for i, v in enumerate(ctx.referral.vaccinations):
        found = table.lookup(v.vaccine)
        if found is None or not found.series or not _counts_for_unit(ctx, v.date, found.series):
            continue
        raw.append(Entry(str(i), v.vaccine, found.cvx, v.date, found.series))
    # A combination (more series) first, so a single vaccine beside it that day is the copy.
    raw.sort(key=lambda e: (e.when, -len(e.series), int(e.dose_id)))
    kept: list[Entry] = []
    duplicates: list[tuple[Entry, Entry]] = []
    taken: dict[tuple[date, str], Entry] = {}
    for e in raw:
        first = [taken[(e.when, s)] for s in e.series if (e.when, s) in taken]
        if len(first) == len(e.series):
            duplicates.append((e, first[0]))
            continue
        for s in e.series:
            taken.setdefault((e.when, s), e)
        kept.append(e)
    return kept, duplicates


def _observations(ctx: PlanContext, ig: IgDecision | None) -> list[tuple[str, date | None]]:
    referral, facts = ctx.referral, ctx.facts
    found: list[tuple[str, date | None]] = []
    if referral.hsct is not None:
        found += [("004", None), ("171", referral.hsct.date)]
    if facts.chemotherapy_ongoing:
        found.append(("168", None))
    if facts.active:
        found.append(("158", None))
    if facts.on_ig_replacement or (ig is not None and ig.gives_ig):
        last = facts.last_ig_dose.date if facts.last_ig_dose is not None else None
        found.append(("137", last))
    if grade(ctx).level != "none":
        found.append(("003", None))
    if facts.igg_low:
        found.append(("273", None))
    if facts.after_car_t:
        found.append(("191", None))
    if facts.diagnosis_group == "nephrotic_syndrome":
        found.append(("167", None))
    if asplenia(ctx):
        found.append(("160", None))  # anatomical or functional asplenia (§5.12)
    return found


def cdsi_history(
    ctx: PlanContext, *, ig: IgDecision | None = None, groups: Iterable[str] = ()
) -> CdsiHistory:
    """The child's doses and observations for the engine, which runs at ``ctx.today`` for
    each of ``groups`` when a rule first reads it."""
    entries, duplicates = _entries(ctx)
    data = paediatric_data()
    titles = tuple(
        (code, data.observations[code].title if code in data.observations else "", when)
        for code, when in _observations(ctx, ig)
    )
    birth = ctx.referral.patient.birth_date
    return CdsiHistory(
        today=ctx.today,
        birth_date=birth,
        entries=tuple(entries),
        duplicates=tuple(duplicates),
        observations=titles,
        groups=frozenset(g for g in groups if g in data.vaccine_groups),
        patient=Patient(birth, _GENDER.get(ctx.referral.patient.sex, "U")),  # type: ignore[arg-type]
        doses=tuple(AdministeredDose(e.dose_id, e.cvx, e.when) for e in entries),
    )


def groups_for(vaccines: Iterable[str]) -> set[str]:
    """The CDSi vaccine groups of these format codes."""
    table = code_table()
    out: set[str] = set()
    for v in vaccines:
        found = table.lookup(v)
        if found is not None:
            out.update(table.groups[s] for s in found.series)
    return out
