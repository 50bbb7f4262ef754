"""The protocol: config/protocol.toml loads, a unit can override it, it is validated and sourced."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sidflows.errors import ConfigError
from sidflows.protocol import Protocol, load_protocol, parse_protocol

ROOT = Path(__file__).parents[1]
SHIPPED = ROOT / "config" / "protocol.toml"
CLINICAL_REFERENCE = ROOT / "docs" / "clinical-reference.md"
EXAMPLE = ROOT / "examples" / "referrals" / "all-after-maintenance.json"


def _data() -> dict[str, Any]:
    with SHIPPED.open("rb") as fh:
        return tomllib.load(fh)


def _changed(path: str, value: Any) -> dict[str, Any]:
    """The shipped protocol data with one dotted key set (``immunoglobulin.iv.g_per_kg``)."""
    data = copy.deepcopy(_data())
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:  # a table the file does not have yet ([prophylaxis.sources]) is made
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


def test_shipped_protocol_loads() -> None:
    """config/protocol.toml parses into a frozen Protocol with its version."""
    protocol = load_protocol()
    assert isinstance(protocol, Protocol)
    assert protocol.version == "2026.12"
    assert load_protocol() is protocol  # parsed once
    with pytest.raises(ValueError, match="frozen"):
        protocol.version = "x"  # type: ignore[misc]


def test_shipped_values_are_the_reference_defaults() -> None:
    """Spot checks of the defaults docs/clinical-reference.md gives (§2-§6)."""
    p = load_protocol()
    g, ig, v, pjp = p.grading, p.immunoglobulin, p.vaccination, p.prophylaxis.pjp
    assert (g.steroid_high_mg_day, g.steroid_high_mg_per_kg_day, g.steroid_high_min_days) == (
        20.0,
        2.0,
        14,
    )
    assert (g.methotrexate_low_max_mg_per_kg_week, g.azathioprine_low_max_mg_per_kg_day) == (
        0.4,
        3.0,
    )
    assert g.anc_severe_below_per_ul == 500
    assert g.anc_profound_below_per_ul == 100
    assert [
        (b.severe_below_per_ul, b.severe_below_percent, b.moderate_below_per_ul) for b in g.cd4
    ] == [
        (750, 26, 1500),
        (500, 22, 1000),
        (200, 14, 500),
    ]
    assert (ig.start_below_g_l_with_infections, ig.start_below_g_l_any) == (4.0, 1.5)
    assert (ig.iv.g_per_kg, ig.iv.interval_days, ig.sc.g_per_kg, ig.sc.interval_days) == (
        0.4,
        28,
        0.1,
        7,
    )
    assert ig.sc.supervised_sessions == 2
    assert (ig.trough_every_months, ig.trough_target_g_l, ig.trough_target_car_t_g_l) == (
        3,
        7.0,
        10.0,
    )
    assert ig.trial_off_recheck_months == 3
    assert (v.after_chemotherapy_inactivated_months, v.after_chemotherapy_live_months) == (3, 6)
    assert v.after_chemotherapy_inactivated_months_anti_cd20 == 6
    assert (v.after_anti_cd20_months, v.after_high_dose_steroid_live_months) == (6, 3)
    assert [(r.up_to_g_per_kg, r.months) for r in v.antibody_interval.ivig_rows] == [
        (0.4, 8),
        (1.0, 10),
        (2.5, 11),
    ]
    assert (v.hsct.pcv_start_months, v.hsct.pcv_doses, v.hsct.live_from_months) == (3, 3, 24)
    assert (pjp.tmp_mg_per_m2_day, pjp.tmp_max_mg_day, pjp.doses_per_day) == (150.0, 320.0, 2)
    assert p.prophylaxis.antibacterial.mg_per_kg == 10.0
    assert p.reassessment.after_chemotherapy_months == (3, 6, 12)
    assert p.review.every_months == 3


def test_unit_protocol_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIDFLOWS_PROTOCOL pointing at a modified copy changes the value and the version."""
    text = SHIPPED.read_text(encoding="utf-8")
    text = text.replace('version = "2026.12"', 'version = "2026.6-unit-a"', 1)
    text = text.replace("trough_target_g_l = 7.0", "trough_target_g_l = 6.0", 1)
    path = tmp_path / "protocol.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("SIDFLOWS_PROTOCOL", str(path))
    unit = load_protocol()
    assert unit.version == "2026.6-unit-a"
    assert unit.immunoglobulin.trough_target_g_l == 6.0
    monkeypatch.delenv("SIDFLOWS_PROTOCOL")
    assert load_protocol().version == "2026.12"  # the shipped one again


def test_unit_protocol_version_reaches_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan proposed under a unit's protocol records that protocol's version."""
    import json

    from flows.cli import main

    path = tmp_path / "protocol.toml"
    path.write_text(
        SHIPPED.read_text(encoding="utf-8").replace('version = "2026.12"', 'version = "9.9"', 1),
        encoding="utf-8",
    )
    monkeypatch.setenv("SIDFLOWS_PROTOCOL", str(path))
    assert main(["propose", str(EXAMPLE), "--today", "2026-11-24"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol_version"] == "9.9"


@pytest.mark.parametrize(
    ("path", "value", "fragments"),
    [
        pytest.param(
            "immunoglobulin.iv.g_per_kg",
            0.7,
            ("immunoglobulin.iv", "g_per_kg must lie between"),
            id="IV g_per_kg above max_g_per_kg",
        ),
        pytest.param(
            "immunoglobulin.sc.g_per_kg",
            0.05,
            ("immunoglobulin.sc", "g_per_kg must lie between"),
            id="SC g_per_kg below min_g_per_kg",
        ),
        pytest.param(
            "immunoglobulin.iv.interval_days",
            0,
            ("immunoglobulin.iv.interval_days",),
            id="interval of 0 days",
        ),
        pytest.param(
            "immunoglobulin.trough_every_months",
            13,
            ("immunoglobulin.trough_every_months",),
            id="trough every 13 months",
        ),
        pytest.param(
            "grading.steroid_high_mg_day",
            -20,
            ("grading.steroid_high_mg_day",),
            id="negative steroid threshold",
        ),
        pytest.param(
            "grading.unlisted_level", "medium", ("grading.unlisted_level",), id="unknown level"
        ),
        pytest.param(
            "grading.high_classes",
            ["chemotherapy", "steroids"],
            ("grading.high_classes",),
            id="unknown treatment class",
        ),
        pytest.param(
            "grading.cd4",
            [
                {
                    "below_age_years": 6,
                    "severe_below_per_ul": 500,
                    "severe_below_percent": 22,
                    "moderate_below_per_ul": 1000,
                },
                {
                    "below_age_years": 1,
                    "severe_below_per_ul": 750,
                    "severe_below_percent": 26,
                    "moderate_below_per_ul": 1500,
                },
            ],
            ("grading", "increasing age order"),
            id="CD4 bands out of order",
        ),
        pytest.param(
            "vaccination.influenza_season_start",
            "10-32",
            ("vaccination.influenza_season_start",),
            id="impossible season day",
        ),
        pytest.param(
            "vaccination.antibody_interval.products.albumin",
            1,
            ("vaccination.antibody_interval.products",),
            id="unknown blood product",
        ),
        pytest.param(
            "vaccination.hsct.live",
            ["MMR", "VZV"],
            ("vaccination.hsct.live",),
            id="unknown vaccine code",
        ),
        pytest.param(
            "funding.publicly_funded.discharge",
            True,
            ("funding.publicly_funded",),
            id="unknown item kind",
        ),
        pytest.param("colour", "blue", ("colour",), id="unknown key"),
        pytest.param("version", "", ("version",), id="empty version"),
        pytest.param("version", "v" * 41, ("version",), id="version longer than plans keep"),
        pytest.param(
            "prophylaxis.pjp.drug", "x" * 41, ("prophylaxis.pjp.drug",), id="drug name too long"
        ),
    ],
)
def test_invalid_protocol_refused_naming_the_field(
    path: str, value: Any, fragments: tuple[str, ...]
) -> None:
    """An invalid protocol raises ConfigError naming the offending field."""
    with pytest.raises(ConfigError) as caught:
        parse_protocol(_changed(path, value), origin="unit.toml")
    message = str(caught.value)
    assert message.startswith("unit.toml: ")
    for fragment in fragments:
        assert fragment in message, message


def test_invalid_protocol_file_refused(tmp_path: Path) -> None:
    """An invalid protocol file names the file and the field; a missing or broken file too."""
    bad = tmp_path / "protocol.toml"
    bad.write_text(
        SHIPPED.read_text(encoding="utf-8").replace("g_per_kg = 0.4\n", "g_per_kg = 0.9\n", 1),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"protocol\.toml: immunoglobulin\.iv: .*g_per_kg"):
        load_protocol(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("version = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_protocol(broken)
    with pytest.raises(ConfigError, match="file not found"):
        load_protocol(tmp_path / "missing.toml")


def test_command_line_reports_an_invalid_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sidflows propose` under an invalid unit protocol exits 1 with one configuration line."""
    from flows.cli import main

    bad = tmp_path / "protocol.toml"
    bad.write_text(
        SHIPPED.read_text(encoding="utf-8").replace("g_per_kg = 0.4\n", "g_per_kg = 0.9\n", 1),
        encoding="utf-8",
    )
    monkeypatch.setenv("SIDFLOWS_PROTOCOL", str(bad))
    assert main(["propose", str(EXAMPLE), "--today", "2026-11-24"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "configuration" in err
    assert "immunoglobulin.iv" in err


# ----------------------------------------------------------------------------- sources named

# What counts as naming a source: a docs/clinical-reference.md section or a named
# guideline, label or "unit policy". A light text check, not a parser of citations.
SOURCE = re.compile(
    r"§\d|IDSA|ACIP|\bEMA\b|SmPC|AAAAI|ACAAI|ECIL|EBMT|CDC|Ontario|rituximab label|UKALL"
    r"|PRU Handbook|CHOP|Immunotherapy 20\d\d|unit policy|practice parameter|ACR 20|AIEOP"
    r"|IAP 20|Canadian guideline",
    re.IGNORECASE,
)
_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=")
_HEADER = re.compile(r"^\[\[?([^\]]+)\]\]?")
EXEMPT = {"version"}  # the file's own version, explained in the file header


def _comment(line: str) -> str:
    return line.split("#", 1)[1] if "#" in line else ""


def _table_comments(lines: list[str]) -> dict[str, str]:
    """Each table's comment: its header's own comment and the comment block around it."""
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        header = _HEADER.match(line)
        if not header or header.group(1) in found:
            continue
        text = [_comment(line)]
        j = i - 1
        while j >= 0 and lines[j].startswith("#") and not lines[j].startswith("# ----"):
            text.append(_comment(lines[j]))
            j -= 1
        j = i + 1
        while j < len(lines) and lines[j].startswith("#"):
            text.append(_comment(lines[j]))
            j += 1
        found[header.group(1)] = " ".join(text)
    return found


def unsourced_keys(text: str) -> list[str]:
    """Keys whose comment paragraph, table or parent table comment names no source."""
    lines = text.splitlines()
    tables = _table_comments(lines)
    missing: list[str] = []
    table = ""
    for i, line in enumerate(lines):
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            continue
        key = _KEY.match(line)
        if not key or (not table and key.group(1) in EXEMPT):
            continue
        if table == "sources" or table.endswith(".sources"):
            continue  # a citation itself: checked as data below
        paragraph = [_comment(line)]
        j = i - 1
        while j >= 0 and lines[j].strip() and not _HEADER.match(lines[j]):
            paragraph.append(_comment(lines[j]))
            j -= 1
        # The table's comment, or a parent table's ([funding] names §1 for its sub-table).
        parts = table.split(".")
        owners = [".".join(parts[:n]) for n in range(len(parts), 0, -1)] if table else []
        in_table = any(SOURCE.search(tables.get(owner, "")) for owner in owners)
        if not (SOURCE.search(" ".join(paragraph)) or in_table):
            missing.append(f"line {i + 1}: [{table}] {key.group(1)}")
    return missing


def test_every_value_names_a_source() -> None:
    """Every value in protocol.toml has a comment nearby naming its source or 'unit policy'."""
    assert unsourced_keys(SHIPPED.read_text(encoding="utf-8")) == []


def test_source_check_catches_an_unsourced_value() -> None:
    """The check itself: a value added with a comment that names no source is reported."""
    text = SHIPPED.read_text(encoding="utf-8") + "\n[extra]\n# just a number\nanswer = 42\n"
    assert unsourced_keys(text) == [f"line {len(text.splitlines())}: [extra] answer"]


# ----------------------------------------------------------------------------- sources as data


def unsourced_parameters(table: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Every scalar or list parameter (an array of tables or a table of values counted once)
    whose table's ``sources`` has no entry for it, as dotted paths; tables are walked."""
    missing: list[str] = []
    sources = table.sources
    for name in type(table).model_fields:
        if name in ("version", "sources"):
            continue
        value = getattr(table, name)
        if isinstance(value, BaseModel):  # a table of its own, with its own sources
            missing += unsourced_parameters(value, (*path, name))
        elif name not in sources:
            missing.append(".".join((*path, name)))
    return missing


def parameter_paths(table: BaseModel, path: tuple[str, ...] = ()) -> list[str]:
    found: list[str] = []
    for name in type(table).model_fields:
        if name in ("version", "sources"):
            continue
        value = getattr(table, name)
        if isinstance(value, BaseModel):
            found += parameter_paths(value, (*path, name))
        else:
            found.append(".".join((*path, name)))
    return found


def _without_source(path: str) -> dict[str, Any]:
    """The shipped data with one parameter's ``sources`` entry removed."""
    data = copy.deepcopy(_data())
    *tables, name = path.split(".")
    target: Any = data
    for part in tables:
        target = target[part]
    del target["sources"][name]
    return data


def test_every_parameter_of_the_shipped_protocol_has_a_source() -> None:
    """Every parameter the rules can read (each model field but version and sources) is cited."""
    protocol = load_protocol()
    assert unsourced_parameters(protocol) == []
    paths = parameter_paths(protocol)
    # The walk reached every table, nested ones included.
    assert {p.rsplit(".", 1)[0] for p in paths if "." in p} == {
        "grading",
        "immunoglobulin",
        "immunoglobulin.iv",
        "immunoglobulin.sc",
        "vaccination",
        "vaccination.hsct",
        "vaccination.antibody_interval",
        "prophylaxis.pjp",
        "prophylaxis.antibacterial",
        "prophylaxis.encapsulated",
        "prophylaxis.meningococcal",
        "prophylaxis.outside_scope",
        "reassessment",
        "review",
        "funding",
        "regimens",
    }
    assert "igg_lower_limit" in paths
    for path in paths:
        assert protocol.source(path).strip(), path


def test_the_walk_finds_a_parameter_without_a_source() -> None:
    """The completeness check itself: a parameter whose entry is removed is reported."""
    protocol = parse_protocol(_without_source("immunoglobulin.iv.g_per_kg"))
    assert unsourced_parameters(protocol) == ["immunoglobulin.iv.g_per_kg"]


_CITED_SECTION = re.compile(r"docs/clinical-reference\.md §(\d+(?:\.\d+)?)")


def test_every_citation_points_at_a_section_of_the_clinical_reference() -> None:
    """Each entry names docs/clinical-reference.md and a section the document has."""
    headings = re.findall(
        r"^#{2,3} (\d+(?:\.\d+)?)\.? ", CLINICAL_REFERENCE.read_text("utf-8"), re.M
    )
    protocol = load_protocol()
    for path in parameter_paths(protocol):
        citation = protocol.source(path)
        cited = _CITED_SECTION.findall(citation)
        assert cited, f"{path}: {citation!r} names no section of docs/clinical-reference.md"
        for section in cited:
            assert section in headings, f"{path}: §{section} is not a heading of the document"


def test_the_clinical_reference_documents_every_parameter() -> None:
    """docs/clinical-reference.md names each parameter by its dotted path, and keeps the
    section numbers that citations use (§1 to §7, with their anchors)."""
    text = CLINICAL_REFERENCE.read_text("utf-8")
    missing = [p for p in parameter_paths(load_protocol()) if f"`{p}`" not in text]
    assert missing == []
    numbered = re.findall(r"^## (\d+)\. ", text, re.M)
    assert numbered == ["1", "2", "3", "4", "5", "6", "7", "8"]
    assert "## 2. Grading of immunosuppression\n" in text  # #2-grading-of-immunosuppression


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(
            "grading.sources.steroid_hgh_mg_day",
            "grading.sources.steroid_hgh_mg_day: not a parameter of [grading]",
            id="typo in a parameter name",
        ),
        pytest.param(
            "immunoglobulin.iv.sources.g_per_kilo",
            "immunoglobulin.iv.sources.g_per_kilo: not a parameter of [immunoglobulin.iv]",
            id="typo in a nested table",
        ),
        pytest.param(
            "vaccination.sources.pcv_doses",
            "vaccination.sources.pcv_doses: not a parameter of [vaccination]",
            id="a parameter of another table",
        ),
        pytest.param(
            "immunoglobulin.sources.iv",
            "immunoglobulin.sources.iv: [immunoglobulin.iv] is a table: "
            "cite it in [immunoglobulin.iv.sources]",
            id="a table cited as a parameter",
        ),
        pytest.param(
            "prophylaxis.sources.drug",
            "prophylaxis.sources.drug: not a parameter of [prophylaxis]",
            id="a table with no parameters of its own",
        ),
        pytest.param(
            "grading.sources.sources",
            "grading.sources.sources: not a parameter of [grading]",
            id="sources itself",
        ),
        pytest.param(
            "sources.version",
            "sources.version: not a parameter of the top level",
            id="the version is not a parameter",
        ),
        pytest.param(
            "sources.igg_lower_limits",
            "sources.igg_lower_limits: not a parameter of the top level",
            id="typo at the top level",
        ),
    ],
)
def test_a_source_for_no_parameter_is_refused_naming_it(key: str, expected: str) -> None:
    """A sources key that names no parameter of its table is refused with its full path."""
    with pytest.raises(ConfigError) as caught:
        parse_protocol(_changed(key, "IDSA 2013"), origin="unit.toml")
    assert str(caught.value) == f"unit.toml: {expected}"


@pytest.mark.parametrize(
    "citation",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("a\nb", id="two lines"),
    ],
)
def test_a_blank_or_multiline_citation_is_refused(citation: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_protocol(_changed("grading.sources.steroid_high_mg_day", citation), origin="u")
    assert str(caught.value) == (
        "u: grading.sources.steroid_high_mg_day: a citation must be one line of text, not blank"
    )


def test_a_citation_that_is_not_text_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^u: grading\.sources\.cd4: "):
        parse_protocol(_changed("grading.sources.cd4", {"severe_below_per_ul": "CDC"}), origin="u")


def test_a_protocol_without_sources_still_parses() -> None:
    """A unit's older copy with no sources tables parses; source() then says none is recorded."""
    data = _data()

    def strip(table: dict[str, Any]) -> None:
        table.pop("sources", None)
        for value in table.values():
            if isinstance(value, dict):
                strip(value)

    strip(data)
    protocol = parse_protocol(data)
    assert protocol.grading.steroid_high_mg_day == 20.0
    with pytest.raises(KeyError, match="records no source"):
        protocol.source("grading.steroid_high_mg_day")


def test_source_by_dotted_path() -> None:
    """Protocol.source returns the file's entry for a parameter, a nested one, a whole array."""
    protocol, data = load_protocol(), _data()
    assert protocol.source("grading.steroid_high_mg_day") == (
        "IDSA 2013 (Rubin, CID 58:e44), docs/clinical-reference.md §2.1"
    )
    assert (
        protocol.source("immunoglobulin.iv.g_per_kg")
        == (data["immunoglobulin"]["iv"]["sources"]["g_per_kg"])
    )
    assert protocol.source("igg_lower_limit") == data["sources"]["igg_lower_limit"]
    assert protocol.source("grading.cd4") == data["grading"]["sources"]["cd4"]
    # One column of an array of tables, one entry of a table of values: the whole one's citation.
    assert protocol.source("grading.cd4.severe_below_per_ul") == protocol.source("grading.cd4")
    products = "vaccination.antibody_interval.products"
    assert protocol.source(f"{products}.plasma") == protocol.source(products)
    assert "ACIP" in protocol.source(products)
    assert protocol.source("funding.publicly_funded.reassessment").endswith("§1")


@pytest.mark.parametrize(
    ("path", "why"),
    [
        pytest.param("grading.steroid_hgh_mg_day", "not a parameter of \\[grading\\]", id="typo"),
        pytest.param("grading.cd4s", "not a parameter of \\[grading\\]", id="typo in an array"),
        pytest.param("colour", "not a parameter of the top level", id="unknown top-level"),
        pytest.param("", "not a parameter of the top level", id="empty path"),
        pytest.param("version", "not a parameter of the top level", id="the version"),
        pytest.param("grading.sources", "not a parameter of \\[grading\\]", id="sources"),
        pytest.param("grading", "a table of the protocol, not a parameter", id="a table"),
        pytest.param("immunoglobulin.iv", "a table of the protocol", id="a nested table"),
        pytest.param("grading.cd4.colour", "'colour' is not part of", id="no such column"),
        pytest.param(
            "vaccination.antibody_interval.products.albumin",
            "'albumin' is not part of",
            id="no such entry",
        ),
        pytest.param(
            "grading.steroid_high_mg_day.extra", "'extra' is not part of", id="below a number"
        ),
        pytest.param("grading.cd4.0", "'0' is not part of", id="an index"),
    ],
)
def test_source_of_no_parameter_raises_key_error(path: str, why: str) -> None:
    with pytest.raises(KeyError, match=why):
        load_protocol().source(path)


def test_source_not_recorded_raises_key_error() -> None:
    """A real parameter whose table has no entry for it: KeyError saying where it belongs."""
    protocol = parse_protocol(_without_source("immunoglobulin.iv.g_per_kg"))
    with pytest.raises(KeyError) as caught:
        protocol.source("immunoglobulin.iv.g_per_kg")
    assert "records no source" in str(caught.value)
    assert "[immunoglobulin.iv.sources]" in str(caught.value)
    assert protocol.source("immunoglobulin.sc.g_per_kg")  # the other route keeps its own


def test_a_changed_value_keeps_whatever_source_the_unit_wrote(tmp_path: Path) -> None:
    """The unit owns its sources: a changed value with the old entry still parses (that
    entry is the unit's to change, as the file's header says), and source() returns
    exactly what the file says, the old entry or the unit's own."""
    header = SHIPPED.read_text(encoding="utf-8").split("version =", 1)[0]
    assert "MUST change that value's `sources` entry" in header
    old = _data()["immunoglobulin"]["sources"]["trough_target_g_l"]

    kept = parse_protocol(_changed("immunoglobulin.trough_target_g_l", 6.0))
    assert kept.immunoglobulin.trough_target_g_l == 6.0
    assert kept.source("immunoglobulin.trough_target_g_l") == old

    text = SHIPPED.read_text(encoding="utf-8")
    text = text.replace("trough_target_g_l = 7.0", "trough_target_g_l = 6.0", 1)
    text = text.replace(
        f'trough_target_g_l = "{old}"',
        'trough_target_g_l = "unit policy: 6 g/L, the EMA core SmPC floor (unit A, 2027)"',
        1,
    )
    path = tmp_path / "protocol.toml"
    path.write_text(text, encoding="utf-8")
    unit = load_protocol(path)
    assert unit.immunoglobulin.trough_target_g_l == 6.0
    assert unit.source("immunoglobulin.trough_target_g_l") == (
        "unit policy: 6 g/L, the EMA core SmPC floor (unit A, 2027)"
    )
    assert unit.source("immunoglobulin.trough_target_car_t_g_l") == load_protocol().source(
        "immunoglobulin.trough_target_car_t_g_l"
    )


def test_config_and_docs_stand_alone() -> None:
    """No file under config/ or docs/ points outside the repository for its knowledge."""
    offending = [
        f"{path.relative_to(ROOT)}: {needle}"
        for folder in ("config", "docs")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.is_file()
        for needle in ("../" + "shared", "REFERENCE" + ".md")  # spelt apart: this file is not one
        if needle in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert offending == []
