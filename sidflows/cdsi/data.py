"""Read CDC's CDSi supporting data (version 4.64, shipped in ``sidflows/cdsi/data/``) once.

``load()`` parses every ``AntigenSupportingData-*.xml`` and ``ScheduleSupportingData.xml``
into the frozen objects of :mod:`sidflows.cdsi.model` and caches the result.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

from sidflows.cdsi.dates import Duration, parse_duration, parse_ymd
from sidflows.cdsi.model import (
    AgeRule,
    AllowableInterval,
    Antigen,
    AntigenContraindication,
    ConditionalSkip,
    CvxAssociation,
    Immunity,
    Indication,
    Interval,
    LiveVirusConflict,
    Observation,
    Series,
    SeriesDose,
    SkipCondition,
    SkipSet,
    SupportingData,
    VaccineContraindication,
    VaccineGroup,
    VaccineRule,
)

__all__ = ["DATA_DIR", "load", "norm_cvx"]

DATA_DIR = Path(__file__).resolve().parent / "data"


def norm_cvx(code: object) -> str:
    """CVX codes compare as numbers: ``'08'``, ``'8'`` and ``8`` are the same vaccine."""
    text = str(code).strip()
    if text.isdigit():
        return str(int(text))
    return text


def _text(node: ET.Element | None, tag: str) -> str | None:
    if node is None:
        return None
    child = node.find(tag)
    if child is None or child.text is None:
        return None
    value = child.text.strip()
    return value or None


def _dur(node: ET.Element, tag: str) -> Duration | None:
    return parse_duration(_text(node, tag))


def _yes(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"yes", "y", "true"}


def _cvx_list(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(norm_cvx(part) for part in value.replace(",", ";").split(";") if part.strip())


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    digits = "".join(ch for ch in value if ch.isdigit())
    return int(digits) if digits else None


def _vaccine(node: ET.Element, preferable: bool) -> VaccineRule | None:
    cvx = _text(node, "cvx")
    if cvx is None:
        return None
    return VaccineRule(
        vaccine_type=_text(node, "vaccineType") or "",
        cvx=norm_cvx(cvx),
        begin_age=_dur(node, "beginAge"),
        end_age=_dur(node, "endAge"),
        trade_name=_text(node, "tradeName") if preferable else None,
        mvx=_text(node, "mvx") if preferable else None,
        volume=_text(node, "volume") if preferable else None,
        forecast_vaccine_type=_yes(_text(node, "forecastVaccineType")),
    )


def _condition(node: ET.Element) -> SkipCondition:
    groups = _text(node, "seriesGroups")
    return SkipCondition(
        condition_id=_text(node, "conditionID") or "",
        condition_type=(_text(node, "conditionType") or "").lower(),
        start_date=parse_ymd(_text(node, "startDate")),
        end_date=parse_ymd(_text(node, "endDate")),
        begin_age=_dur(node, "beginAge"),
        end_age=_dur(node, "endAge"),
        interval=_dur(node, "interval"),
        dose_count=_int_or_none(_text(node, "doseCount")),
        dose_type=(_text(node, "doseType") or "").lower() or None,
        dose_count_logic=(_text(node, "doseCountLogic") or "").lower() or None,
        vaccine_types=_cvx_list(_text(node, "vaccineTypes")),
        series_groups=tuple(g.strip() for g in (groups or "").split(";") if g.strip()),
    )


def _skip(node: ET.Element) -> ConditionalSkip | None:
    sets = []
    for set_node in node.findall("set"):
        sets.append(
            SkipSet(
                set_id=_text(set_node, "setID") or "",
                description=_text(set_node, "setDescription") or "",
                effective_date=parse_ymd(_text(set_node, "effectiveDate")),
                cessation_date=parse_ymd(_text(set_node, "cessationDate")),
                condition_logic=(_text(set_node, "conditionLogic") or "AND").upper(),
                conditions=tuple(_condition(c) for c in set_node.findall("condition")),
            )
        )
    if not sets:
        return None
    return ConditionalSkip(
        context=_text(node, "context") or "Both",
        set_logic=(_text(node, "setLogic") or "n/a").upper(),
        sets=tuple(sets),
    )


def _dose(node: ET.Element) -> SeriesDose:
    ages = []
    for age in node.findall("age"):
        ages.append(
            AgeRule(
                abs_min_age=_dur(age, "absMinAge"),
                min_age=_dur(age, "minAge"),
                earliest_rec_age=_dur(age, "earliestRecAge"),
                latest_rec_age=_dur(age, "latestRecAge"),
                max_age=_dur(age, "maxAge"),
                effective_date=parse_ymd(_text(age, "effectiveDate")),
                cessation_date=parse_ymd(_text(age, "cessationDate")),
            )
        )
    intervals = []
    for iv in node.findall("interval"):
        if len(iv) == 0:
            continue
        obs_node = iv.find("fromRelevantObs")
        obs_code = _text(obs_node, "code") if obs_node is not None else None
        from_previous = _yes(_text(iv, "fromPrevious"))
        from_target = _int_or_none(_text(iv, "fromTargetDose"))
        most_recent = _cvx_list(_text(iv, "fromMostRecent"))
        if not (from_previous or from_target or most_recent or obs_code):
            continue
        intervals.append(
            Interval(
                from_previous=from_previous,
                from_target_dose=from_target,
                from_most_recent=most_recent,
                from_relevant_obs=obs_code,
                abs_min_int=_dur(iv, "absMinInt"),
                min_int=_dur(iv, "minInt"),
                earliest_rec_int=_dur(iv, "earliestRecInt"),
                latest_rec_int=_dur(iv, "latestRecInt"),
                priority_override=(_text(iv, "intervalPriority") or "").lower() == "override",
                effective_date=parse_ymd(_text(iv, "effectiveDate")),
                cessation_date=parse_ymd(_text(iv, "cessationDate")),
            )
        )
    allowable_intervals = []
    for iv in node.findall("allowableInterval"):
        from_previous = _yes(_text(iv, "fromPrevious"))
        from_target = _int_or_none(_text(iv, "fromTargetDose"))
        if not (from_previous or from_target):
            continue
        allowable_intervals.append(
            AllowableInterval(
                from_previous=from_previous,
                from_target_dose=from_target,
                abs_min_int=_dur(iv, "absMinInt"),
                effective_date=parse_ymd(_text(iv, "effectiveDate")),
                cessation_date=parse_ymd(_text(iv, "cessationDate")),
            )
        )
    preferable = [_vaccine(v, True) for v in node.findall("preferableVaccine")]
    allowable = [_vaccine(v, False) for v in node.findall("allowableVaccine")]
    inadvertent = frozenset(
        norm_cvx(c) for v in node.findall("inadvertentVaccine") if (c := _text(v, "cvx"))
    )
    skips = [_skip(s) for s in node.findall("conditionalSkip")]
    seasonal = node.find("seasonalRecommendation")
    return SeriesDose(
        dose_number=_int_or_none(_text(node, "doseNumber")) or 0,
        ages=tuple(ages),
        intervals=tuple(intervals),
        allowable_intervals=tuple(allowable_intervals),
        preferable_vaccines=tuple(v for v in preferable if v is not None),
        allowable_vaccines=tuple(v for v in allowable if v is not None),
        inadvertent_vaccines=inadvertent,
        conditional_skips=tuple(s for s in skips if s is not None),
        recurring=_yes(_text(node, "recurringDose")),
        seasonal_start=parse_ymd(_text(seasonal, "startDate")),
        seasonal_end=parse_ymd(_text(seasonal, "endDate")),
    )


def _series(node: ET.Element, antigen: str) -> Series:
    select = node.find("selectSeries")
    assert select is not None
    indications = []
    for ind in node.findall("indication"):
        obs = ind.find("observationCode")
        code = _text(obs, "code") if obs is not None else None
        if code is None:
            continue
        indications.append(
            Indication(
                observation_code=code,
                description=_text(ind, "description") or "",
                begin_age=_dur(ind, "beginAge"),
                end_age=_dur(ind, "endAge"),
            )
        )
    genders = frozenset(
        (g.text or "").strip() for g in node.findall("requiredGender") if (g.text or "").strip()
    )
    equivalent = _text(node, "equivalentSeriesGroups")
    return Series(
        name=_text(node, "seriesName") or "",
        antigen=antigen,
        target_disease=_text(node, "targetDisease") or antigen,
        vaccine_group=_text(node, "vaccineGroup") or "",
        series_type=_text(node, "seriesType") or "Standard",
        equivalent_series_groups=tuple(
            g.strip() for g in (equivalent or "").split(";") if g.strip()
        ),
        required_genders=genders,
        default_series=_yes(_text(select, "defaultSeries")),
        product_path=_yes(_text(select, "productPath")),
        series_group_name=_text(select, "seriesGroupName") or "",
        series_group=_text(select, "seriesGroup") or "1",
        series_priority=_text(select, "seriesPriority") or "A",
        series_preference=_int_or_none(_text(select, "seriesPreference")) or 1,
        min_age_to_start=_dur(select, "minAgeToStart"),
        max_age_to_start=_dur(select, "maxAgeToStart"),
        indications=tuple(indications),
        doses=tuple(_dose(d) for d in node.findall("seriesDose")),
        admin_guidance=tuple(
            (g.text or "").strip() for g in node.findall("seriesAdminGuidance") if g.text
        ),
    )


def _antigen(path: Path) -> Antigen:
    root = ET.parse(path).getroot()
    series_nodes = root.findall("series")
    name = _text(series_nodes[0], "targetDisease") or path.stem
    immunity_node = root.find("immunity")
    codes: set[str] = set()
    birth: str | None = None
    country: str | None = None
    exclusions: set[str] = set()
    if immunity_node is not None:
        for hist in immunity_node.findall("clinicalHistory"):
            if code := _text(hist, "guidelineCode"):
                codes.add(code)
        for dob in immunity_node.findall("dateOfBirth"):
            birth = _text(dob, "immunityBirthDate") or birth
            country = _text(dob, "birthCountry") or country
            for exc in dob.findall("exclusion"):
                if code := _text(exc, "exclusionCode"):
                    exclusions.add(code)
    antigen_ci = []
    vaccine_ci = []
    contra = root.find("contraindications")
    if contra is not None:
        for ci in contra.findall("vaccineGroup/contraindication"):
            antigen_ci.append(
                AntigenContraindication(
                    observation_code=_text(ci, "observationCode") or "",
                    text=_text(ci, "contraindicationText") or "",
                    begin_age=_dur(ci, "beginAge"),
                    end_age=_dur(ci, "endAge"),
                )
            )
        for ci in contra.findall("vaccine/contraindication"):
            vaccines = [
                (norm_cvx(_text(v, "cvx") or ""), _dur(v, "beginAge"), _dur(v, "endAge"))
                for v in ci.findall("contraindicatedVaccine")
            ]
            vaccine_ci.append(
                VaccineContraindication(
                    observation_code=_text(ci, "observationCode") or "",
                    text=_text(ci, "contraindicationText") or "",
                    cvx=frozenset(v[0] for v in vaccines),
                    ages=tuple(vaccines),
                )
            )
    birth_date = parse_ymd(birth) if birth else None
    return Antigen(
        name=name,
        immunity=Immunity(
            guideline_codes=frozenset(codes),
            immunity_birth_date=birth_date,
            birth_country=country,
            exclusion_codes=frozenset(exclusions),
        ),
        antigen_contraindications=tuple(antigen_ci),
        vaccine_contraindications=tuple(vaccine_ci),
        series=tuple(_series(s, name) for s in series_nodes),
    )


def _schedule(
    path: Path,
) -> tuple[
    dict[str, tuple[LiveVirusConflict, ...]],
    dict[str, VaccineGroup],
    dict[str, tuple[CvxAssociation, ...]],
    dict[str, str],
    dict[str, Observation],
]:
    root = ET.parse(path).getroot()
    conflicts: dict[str, list[LiveVirusConflict]] = {}
    for node in root.findall("liveVirusConflicts/liveVirusConflict"):
        previous = norm_cvx(_text(node.find("previous"), "cvx") or "")
        current = norm_cvx(_text(node.find("current"), "cvx") or "")
        begin = _dur(node, "conflictBeginInterval")
        min_end = _dur(node, "minConflictEndInterval")
        end = _dur(node, "conflictEndInterval")
        assert begin is not None and end is not None
        conflicts.setdefault(current, []).append(
            LiveVirusConflict(previous, current, begin, min_end or end, end)
        )
    full: dict[str, bool] = {}
    for node in root.findall("vaccineGroups/vaccineGroup"):
        full[_text(node, "name") or ""] = _yes(_text(node, "administerFullVaccineGroup"))
    groups: dict[str, VaccineGroup] = {}
    for node in root.findall("vaccineGroupToAntigenMap/vaccineGroupMap"):
        name = _text(node, "name") or ""
        antigens = tuple((a.text or "").strip() for a in node.findall("antigen") if a.text)
        groups[name] = VaccineGroup(name, antigens, full.get(name, False))
    cvx_map: dict[str, tuple[CvxAssociation, ...]] = {}
    descriptions: dict[str, str] = {}
    for node in root.findall("cvxToAntigenMap/cvxMap"):
        cvx = norm_cvx(_text(node, "cvx") or "")
        descriptions[cvx] = _text(node, "shortDescription") or ""
        cvx_map[cvx] = tuple(
            CvxAssociation(
                antigen=_text(a, "antigen") or "",
                begin_age=_dur(a, "associationBeginAge"),
                end_age=_dur(a, "associationEndAge"),
            )
            for a in node.findall("association")
        )
    observations: dict[str, Observation] = {}
    for node in root.findall("observations/observation"):
        code = _text(node, "observationCode") or ""
        observations[code] = Observation(
            code=code,
            title=_text(node, "observationTitle") or "",
            indication_text=_text(node, "indicationText") or "",
            contraindication_text=_text(node, "contraindicationText") or "",
        )
    return (
        {k: tuple(v) for k, v in conflicts.items()},
        groups,
        cvx_map,
        descriptions,
        observations,
    )


@cache
def load(data_dir: Path = DATA_DIR) -> SupportingData:
    """Parse the supporting data in ``data_dir`` (default: the shipped 4.64 copy), once."""
    antigens: dict[str, Antigen] = {}
    for path in sorted(data_dir.glob("AntigenSupportingData-*.xml")):
        antigen = _antigen(path)
        antigens[antigen.name] = antigen
    conflicts, groups, cvx_map, descriptions, observations = _schedule(
        data_dir / "ScheduleSupportingData.xml"
    )
    antigen_to_group = {a: g.name for g in groups.values() for a in g.antigens}
    return SupportingData(
        antigens=antigens,
        live_virus_conflicts=conflicts,
        vaccine_groups=groups,
        cvx_map=cvx_map,
        cvx_descriptions=descriptions,
        observations=observations,
        antigen_to_group=antigen_to_group,
    )
