"""Bad input at the command line: exit 2, one line naming the field, nothing in the store.

Hypothesis mangles valid documents (the sample referrals, the synthetic cohort,
and the property tests' referrals) with one mutation each, deep inside them or
around them: wrong types, missing and unknown fields, impossible and
out-of-range dates, out-of-range numbers, NaN, unicode (surrogates, right-to-left
marks, NUL), bytes that are not UTF-8, deep nesting, documents over 1 MiB,
duplicate keys, top-level values that are not objects, malformed JSON. The
command line runs in-process (``flows.cli.main``) against a migrated store that
holds a child; ``refer`` and ``treatment-change`` each refuse well over 10,000
documents. A sample goes through the real ``sidflows`` script as processes.
The counts appear in the terminal summary (tests/conftest.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache, cached_property
from pathlib import Path
from typing import Any, get_args

import pytest
from conftest import EXAMPLES, clear_store_caches
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel
from test_properties import (
    BAD_CLASSES,
    BAD_VACCINES,
    DATE_KEYS,
    IMPOSSIBLE_DATES,
    NUMBER_RANGES,
    REQUIRED,
    UNKNOWN_KEYS,
    mangled_referrals,
    plus_months,
)

from flows.cli import main
from sidflows import referral as schema
from sidflows import service
from sidflows.documents import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_LIST, field_path
from sidflows.errors import InvalidInput
from sidflows.referral import (
    parse_lab_report,
    parse_referral,
    parse_treatment_change,
)
from sidflows.store import db
from sidflows.testing.cohort import synthetic_referrals
from sidflows.unit import Unit

PER_COMMAND = 10_000  # mangled documents each of refer and treatment-change must refuse
BATCH = 5  # documents per hypothesis example
SAMPLE_PER_COMMAND = 8  # through the console script, per command
# A profile of this module (applied with @settings(BULK, ...), never loaded globally):
# PER_COMMAND documents in batches; no deadline (a 1 MiB document takes its time).
PROFILE = "sidflows-bad-input"
settings.register_profile(
    PROFILE,
    deadline=None,
    max_examples=PER_COMMAND // BATCH,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
BULK = settings.get_profile(PROFILE)

Doc = dict[str, Any]
Path_ = tuple[str | int, ...]
SIDFLOWS = str(Path(sys.executable).parent / "sidflows")
PREFIX = "sidflows: invalid input: "

# ----------------------------------------------------------------------------- valid documents

STORED = json.loads((EXAMPLES / "lupus-on-rituximab.json").read_text())  # the child in the store
STORED_REF = STORED["patient"]["ref"]
STORED_BIRTH = date.fromisoformat(STORED["patient"]["birth_date"])


def _valid_referrals() -> list[Doc]:
    docs = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    docs += synthetic_referrals(60, seed=11)
    docs += synthetic_referrals(60, seed=12, received=date(2025, 3, 3), prefix="OLD")
    return docs


REFERRALS = [json.dumps(d) for d in _valid_referrals()]
# Treatment changes for the stored child: each referral's courses that began after its birth.
CHANGES = [
    json.dumps({"date": doc["received"], "treatments": rows})
    for doc in map(json.loads, REFERRALS)
    if (rows := [t for t in doc["treatments"] if t["start"] >= STORED_BIRTH.isoformat()])
]
LAB_REPORTS = [
    json.dumps({"labs": doc["labs"]}) for doc in map(json.loads, REFERRALS) if doc["labs"]
]

# ----------------------------------------------------------------------------- what each field is

ENUMS: dict[str, frozenset[str]] = {
    "sex": frozenset({"female", "male", "other", "unknown"}),
    "category": frozenset({"oncology", "hsct", "immune_mediated", "other"}),
    "type": frozenset({"autologous", "allogeneic"}),
    "class": frozenset(get_args(schema.TreatmentClass)),
    "vaccine": frozenset(get_args(schema.VaccineCode)),
    "product": frozenset(get_args(schema.BloodProductKind)),
    "route": frozenset(get_args(schema.Route)),
    "ig_route": frozenset(get_args(schema.Route)),
}
EVERY_ENUM_VALUE = frozenset().union(*ENUMS.values())
TEXT_KEYS = frozenset({"name", "mrn", "service", "clinician", "label", "drug", "kind"})
BOOL_KEYS = frozenset({"serious", "active_gvhd", "cost_accepted"})
MODELS = (
    schema.ReferralDocument,
    schema.PatientDetails,
    schema.IdentityDetails,
    schema.Referrer,
    schema.Diagnosis,
    schema.Hsct,
    schema.TreatmentEntry,
    schema.LabEntry,
    schema.InfectionEntry,
    schema.ImmunoglobulinDose,
    schema.BloodProductGiven,
    schema.VaccinationEntry,
    schema.Preferences,
    schema.Consent,
    schema.TreatmentChange,
    schema.LabReport,
)
KNOWN_KEYS = frozenset(
    info.alias or name for model in MODELS for name, info in model.model_fields.items()
)
EVENT_LISTS = ("labs", "infections", "immunoglobulin_doses", "blood_products", "vaccinations")


@dataclass(frozen=True)
class Kind:
    """One kind of document the command line reads, with its parser and required fields."""

    command: str
    pool: list[str]
    parse: Callable[[bytes], object]
    required: dict[str, tuple[str, ...]]

    @cached_property
    def documents(self) -> st.SearchStrategy[str]:
        """One of the pool's documents (by index: a short repr for hypothesis)."""
        return st.integers(0, len(self.pool) - 1).map(self.pool.__getitem__)

    def argv(self, path: str) -> list[str]:
        if self.command in ("refer", "propose"):
            return [self.command, path]
        return [self.command, STORED_REF, path]


REFER = Kind("refer", REFERRALS, parse_referral, REQUIRED)
CHANGE = Kind(
    "treatment-change",
    CHANGES,
    parse_treatment_change,
    {"": ("date", "treatments"), "treatments[]": ("drug", "class", "start")},
)
LAB_RESULT = Kind("lab-result", LAB_REPORTS, parse_lab_report, {"": ("labs",), "labs[]": ("date",)})
PROPOSE = Kind("propose", REFERRALS, parse_referral, REQUIRED)
KINDS = {kind.command: kind for kind in (REFER, CHANGE, LAB_RESULT, PROPOSE)}

# ----------------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class Mangled:
    """A mangled document and what its refusal must name."""

    payload: bytes
    field: str  # the field path the message starts with
    kind: str  # the mutation
    within: bool = False  # deep nesting: the field named is `field`, inside it, or "document"
    store_level: bool = False  # parses; the store refuses it (a course before the child's birth)


def _walk(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))


def _parent(doc: Any, path: Path_) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _set(doc: Doc, path: Path_, value: Any) -> None:
    _parent(doc, path)[path[-1]] = value


def _list_kind(path: Path_) -> str:
    """``('treatments', 1, 'end')`` -> ``treatments[]``: the REQUIRED table's name of the parent."""
    parent = path[:-1]
    if not parent:
        return ""
    return f"{parent[-2]}[]" if isinstance(parent[-1], int) else str(parent[-1])


def _key(path: Path_) -> str | None:
    return path[-1] if path and isinstance(path[-1], str) else None


# Markers replaced in the JSON text by what json.dumps cannot write (NaN, 1e999, duplicates).
RAW, DUPLICATE = "@@raw@@", "@@duplicate@@"


def _encode(doc: Any, *, raw: str = "", duplicate: str = "", ascii_only: bool = True) -> bytes:
    text_ = json.dumps(doc, ensure_ascii=ascii_only)
    if raw:
        text_ = text_.replace(json.dumps(RAW), raw)
    if duplicate:
        text_ = text_.replace(json.dumps(DUPLICATE), json.dumps(duplicate))
    try:
        return text_.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate written raw: keep it as a JSON escape instead
        return _encode(doc, raw=raw, duplicate=duplicate, ascii_only=True)


JUNK_CHARS = (
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\x85",
    "\n",
    "\r",
    "\t",
    "\u2028",
    "\u2029",
    "\ud800",
    "\udfff",
)
RTL = "\u202e\u202d\u200f\u200e\u0627\u0644\u05d0\u05d1"


def _ugly_text(min_size: int = 0) -> st.SearchStrategy[str]:
    """Any unicode, with surrogates, controls, right-to-left marks and combining marks."""
    return st.one_of(
        st.text(min_size=min_size, max_size=30),
        st.text(
            st.characters(codec=None, categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Mn", "Lo")),
            min_size=max(1, min_size),
            max_size=12,
        ),
        st.text(st.sampled_from(RTL + "".join(JUNK_CHARS) + "e\u0301 "), min_size=1, max_size=12),
    )


@st.composite
def bad_dates(draw: st.DrawFn) -> str:
    """A string that is not a date the unit accepts: impossible, out of range or mis-written."""
    year = draw(st.integers(1900, 2199))
    how = draw(st.sampled_from(["table", "day", "month", "range", "decorated", "digits"]))
    if how == "table":
        return draw(st.sampled_from(IMPOSSIBLE_DATES))
    if how == "day":  # 30 February, 31 April, 32 anything, day 00
        month = draw(st.integers(1, 12))
        last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
        day = draw(st.one_of(st.integers(last + 1, 99), st.just(0)))
        return f"{year:04d}-{month:02d}-{day:02d}"
    if how == "month":
        return f"{year:04d}-{draw(st.sampled_from([0, 13, 20, 99])):02d}-01"
    if how == "range":  # a real date the record cannot hold
        far = draw(st.one_of(st.integers(1, 1899), st.integers(2200, 9999)))
        return f"{far:04d}-{draw(st.integers(1, 12)):02d}-{draw(st.integers(1, 28)):02d}"
    valid = date(year, draw(st.integers(1, 12)), draw(st.integers(1, 28))).isoformat()
    if how == "digits":  # fullwidth or Arabic-Indic digits
        zero = draw(st.sampled_from([0xFF10, 0x0660, 0x06F0, 0x0966]))
        return "".join(chr(zero + int(c)) if c.isdigit() else c for c in valid)
    junk = draw(st.sampled_from([*JUNK_CHARS, " ", "Z", "T00:00", "\u202e", "\ufeff", "x"]))
    return draw(st.sampled_from([valid + junk, junk + valid, valid[:5] + junk + valid[5:]]))


BAD_DATES = bad_dates()
UGLY, UGLY_NAME = _ugly_text(), _ugly_text(min_size=1)


def _wrong_type(value: Any) -> st.SearchStrategy[Any]:
    """A JSON value of another type than ``value`` (never null: optional fields take null)."""
    if isinstance(value, bool):
        return st.sampled_from(["true", "false", 1, 0, [], {}, "yes"])
    if isinstance(value, int | float):
        return st.sampled_from([str(value), [value], {"value": value}, True, False])
    if isinstance(value, str):
        return st.sampled_from([12, 3.5, True, [value], {"value": value}, [], {}])
    if isinstance(value, list):
        return st.sampled_from([{"0": 1}, "none", 5, True, {}])
    if isinstance(value, dict):
        return st.sampled_from([[], "x", 5, True, [value]])
    return st.sampled_from([True, [1], {"a": 1}])  # null where a value may be absent


@cache
def _candidates(command: str, document: str) -> dict[str, st.SearchStrategy[Path_]]:
    """For each field mutation, the paths of ``document`` it can apply to (read once)."""
    doc = json.loads(document)
    nodes = list(_walk(doc))[1:]
    required = KINDS[command].required
    hsct_required = doc.get("diagnosis", {}).get("category") == "hsct"
    options: dict[str, list[Path_]] = {
        "drop_required": [
            p
            for p, _ in nodes
            if _key(p) in required.get(_list_kind(p), ()) or (p == ("hsct",) and hsct_required)
        ],
        "wrong_type": [p for p, _ in nodes],
        "bad_date": [p for p, _ in nodes if _key(p) in DATE_KEYS],
        "bad_enum": [p for p, _ in nodes if _key(p) in ENUMS],
        "bad_text": [p for p, _ in nodes if _key(p) in TEXT_KEYS or _key(p) == "reason"],
        "bad_ref": [p for p, _ in nodes if _key(p) == "ref"],
        "bad_number": [p for p, v in nodes if _key(p) in NUMBER_RANGES and v is not None],
        "not_a_number": [p for p, v in nodes if isinstance(v, int | float | type(None))],
        "bad_bool": [p for p, _ in nodes if _key(p) in BOOL_KEYS],
        "unknown_field": [(), *(p for p, v in nodes if isinstance(v, dict))],
        "duplicate_key": [(), *(p for p, v in nodes if isinstance(v, dict) and v)],
        "too_many": [p for p, v in nodes if isinstance(v, list) and v],
        "nested": [p for p, _ in nodes],
    }
    assert set(options) == set(FIELD)
    return {name: st.sampled_from(options[name]) for name in FIELD if options[name]}


def _tree(draw: st.DrawFn, document: str, kind: Kind) -> Mangled:
    """A mutation of one field anywhere in the document (most fields are deep in lists)."""
    options = _candidates(kind.command, document)
    mutation = draw(st.sampled_from(tuple(options)))
    path = draw(options[mutation])
    doc = json.loads(document)
    field = field_path(path)
    key = _key(path)
    if mutation == "drop_required":
        del _parent(doc, path)[path[-1]]
    elif mutation == "wrong_type":
        _set(doc, path, draw(_wrong_type(_parent(doc, path)[path[-1]])))
    elif mutation == "bad_date":
        _set(doc, path, draw(BAD_DATES))
    elif mutation == "bad_enum":
        near = [v.upper() for v in ENUMS[str(key)]] + [f" {v}" for v in ENUMS[str(key)]]
        if key == "vaccine":
            near += BAD_VACCINES
        if key == "class":
            near += BAD_CLASSES
        bad = draw(st.one_of(st.sampled_from(near), UGLY, st.just("\u202e" + "female")))
        assume(bad not in EVERY_ENUM_VALUE)
        _set(doc, path, bad)
    elif mutation == "bad_text":  # names, labels, drugs are one line of 1-200 characters
        one_line = key != "reason"
        limit = 200 if one_line else 2000
        junk = draw(st.sampled_from(JUNK_CHARS if one_line else (*JUNK_CHARS[:5], "\ud800")))
        value = str(_parent(doc, path)[path[-1]] or "") + "xx"
        cut = draw(st.integers(1, len(value) - 1))  # inside: whitespace at the edges is trimmed
        choices = [value[:cut] + junk + value[cut:], "x" * (limit + 1) + draw(st.sampled_from(RTL))]
        if one_line:
            choices += ["", "   ", "\u3000\t "]
        _set(doc, path, draw(st.sampled_from(choices)))
    elif mutation == "bad_ref":
        bad = draw(st.one_of(UGLY, st.just("P" * 41), st.just("-P-1"), st.just("P 1")))
        assume(not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", bad))
        _set(doc, path, bad)
    elif mutation == "bad_number":
        lo, hi, exclusive = NUMBER_RANGES[str(key)]
        excess = draw(st.floats(0.01, 1e300, allow_nan=False))
        below = lo if exclusive and draw(st.booleans()) else lo - excess
        _set(doc, path, draw(st.sampled_from([below, hi + excess, -1])))
    elif mutation == "not_a_number":
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]))
        _set(doc, path, RAW)
        return Mangled(_encode(doc, raw=literal), field, mutation)
    elif mutation == "bad_bool":
        _set(doc, path, draw(st.sampled_from(["true", "false", 1, 0, None, "yes", [], {}])))
    elif mutation == "unknown_field":
        name = draw(st.one_of(st.sampled_from(UNKNOWN_KEYS), UGLY_NAME))
        target = _parent(doc, (*path, name))
        assume(name not in KNOWN_KEYS and name not in target and name != RAW)
        target[name] = draw(st.sampled_from([1, "x", None, True, [], {}, 2.5]))
        field = field_path((*path, name))
    elif mutation == "duplicate_key":
        target = _parent(doc, (*path, DUPLICATE))
        name = draw(st.sampled_from(sorted(target)))
        target[DUPLICATE] = draw(st.sampled_from([target[name], None, "again"]))
        return Mangled(_encode(doc, duplicate=name), field_path((*path, name)), mutation)
    elif mutation == "too_many":
        rows = _parent(doc, path)[path[-1]]
        rows.extend(rows[0] for _ in range(MAX_LIST + draw(st.integers(1, 200)) - len(rows)))
    elif mutation == "nested":
        depth = draw(st.sampled_from([2, 5, MAX_DEPTH - 1, MAX_DEPTH + 1, 100, 999, 100_000]))
        opening, closing = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
        _set(doc, path, RAW)
        payload = _encode(doc, raw=opening * depth + "1" + closing * depth)
        return Mangled(payload, field, mutation, within=True)
    return Mangled(_encode(doc, ascii_only=draw(st.booleans())), field, mutation)


FIELD = (
    "drop_required",
    "wrong_type",
    "bad_date",
    "bad_enum",
    "bad_text",
    "bad_ref",
    "bad_number",
    "not_a_number",
    "bad_bool",
    "unknown_field",
    "duplicate_key",
    "too_many",
    "nested",
)
AROUND = ("top_level", "not_utf8", "malformed", "huge", "bom", "empty", "digits")
ACROSS_REFERRAL = (
    "birth_in_future",
    "birth_over_18_years",
    "hsct_missing",
    "hsct_after_received",
    "event_after_received",
    "event_before_birth",
    "end_before_start",
    "start_before_birth",
    "lab_without_result",
)
ACROSS_CHANGE = ("end_before_start", "no_treatment", "before_birth")


def _around(draw: st.DrawFn, doc: Doc) -> Mangled:
    """A mutation of the document as a whole: the refusal names ``document``."""
    mutation = draw(st.sampled_from(AROUND))
    body = json.dumps(doc).encode()
    if mutation == "top_level":
        payload = json.dumps(draw(st.sampled_from([[], [doc], "referral", 1, 2.5, None, True])))
        body = payload.encode()
    elif mutation == "not_utf8":
        how = draw(st.sampled_from(["byte", "latin-1", "utf-16", "utf-32"]))
        if how == "byte":
            bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80"]))
            at = draw(st.integers(0, len(body)))
            body = body[:at] + bad + body[at:]
        elif how == "latin-1":
            body = json.dumps({**doc, "reason": "café niño"}, ensure_ascii=False).encode("latin-1")
        else:
            body = json.dumps(doc).encode(how)
    elif mutation == "malformed":
        how = draw(st.sampled_from(["cut", "after", "before", "comma", "quotes", "comment"]))
        if how == "cut":
            body = body[: draw(st.integers(0, len(body) - 1))]
        elif how == "after":
            body += draw(st.sampled_from([b"x", b"}", b",", b"]", b"{}", b"null", b"\x00", b"#"]))
        elif how == "before":
            body = draw(st.sampled_from([b"x", b"]", b",", b"\x00", b"//"])) + body
        elif how == "comma":
            body = body[:-1] + b",}"
        elif how == "quotes":
            body = body.replace(b'"', b"'")
        else:
            body = b"/* a referral */\n" + body
    elif mutation == "huge":
        padding = MAX_DOCUMENT_BYTES + draw(st.integers(1, 4096))
        body = json.dumps({**doc, "reason": "x" * padding}).encode()
    elif mutation == "bom":
        body = b"\xef\xbb\xbf" + body
    elif mutation == "empty":
        body = draw(st.sampled_from([b"", b" ", b"\n"]))
    else:  # an integer longer than Python reads
        body = json.dumps({**doc, "reason": RAW}).replace(json.dumps(RAW), "9" * 5000).encode()
    return Mangled(body, "document", mutation)


def _cross_referral(draw: st.DrawFn, doc: Doc) -> Mangled:
    """A referral that breaks a rule between fields (dates, the hsct block, a lab's results)."""
    received = date.fromisoformat(doc["received"])
    birth = date.fromisoformat(doc["patient"]["birth_date"])
    later = timedelta(days=draw(st.integers(1, 400)))
    events = [name for name in EVENT_LISTS if doc.get(name)]
    options = ["birth_in_future", "birth_over_18_years", "hsct_missing", "hsct_after_received"]
    options += ["event_after_received", "event_before_birth"] if events else []
    options += ["end_before_start", "start_before_birth"] if doc["treatments"] else []
    options += ["lab_without_result"] if doc["labs"] else []
    mutation = draw(st.sampled_from(options))
    if mutation == "birth_in_future":
        doc["patient"]["birth_date"] = (received + later).isoformat()
        field = "patient.birth_date"
    elif mutation == "birth_over_18_years":
        eighteen = plus_months(received, -18 * 12)
        doc["patient"]["birth_date"] = (eighteen - later + timedelta(days=1)).isoformat()
        field = "patient.birth_date"
    elif mutation == "hsct_missing":
        doc["diagnosis"]["category"] = "hsct"
        doc.pop("hsct", None)
        field = "hsct"
    elif mutation == "hsct_after_received":
        doc["hsct"] = {**doc.get("hsct", {"type": "autologous"}), "date": str(received + later)}
        field = "hsct.date"
    elif mutation in ("event_after_received", "event_before_birth"):
        name = draw(st.sampled_from(events))
        i = draw(st.integers(0, len(doc[name]) - 1))
        when = received + later if mutation == "event_after_received" else birth - later
        doc[name][i]["date"] = when.isoformat()
        field = f"{name}[{i}].date"
    elif mutation in ("end_before_start", "start_before_birth"):
        i = draw(st.integers(0, len(doc["treatments"]) - 1))
        t = doc["treatments"][i]
        if mutation == "end_before_start":
            t["end"] = (date.fromisoformat(t["start"]) - later).isoformat()
            field = f"treatments[{i}].end"
        else:
            t["start"] = (birth - later).isoformat()
            field = f"treatments[{i}].start"
    else:
        i = draw(st.integers(0, len(doc["labs"]) - 1))
        doc["labs"][i] = {"date": doc["labs"][i]["date"]}
        field = f"labs[{i}]"
    return Mangled(_encode(doc), field, mutation)


def _cross_change(draw: st.DrawFn, doc: Doc) -> Mangled:
    """A treatment change that breaks a rule: end before start, none, before the child's birth."""
    mutation = draw(st.sampled_from(ACROSS_CHANGE))
    i = draw(st.integers(0, len(doc["treatments"]) - 1))
    earlier = timedelta(days=draw(st.integers(1, 400)))
    t = doc["treatments"][i]
    if mutation == "end_before_start":
        t["end"] = (date.fromisoformat(t["start"]) - earlier).isoformat()
        return Mangled(_encode(doc), f"treatments[{i}].end", mutation)
    if mutation == "no_treatment":
        doc["treatments"] = []
        return Mangled(_encode(doc), "treatments", mutation)
    t["start"] = (STORED_BIRTH - earlier).isoformat()
    return Mangled(_encode(doc), f"treatments[{i}].start", mutation, store_level=True)


@st.composite
def mangled(draw: st.DrawFn, command: str) -> Mangled:
    """A valid document for ``command`` with one mutation (in a field, across fields, around it)."""
    kind = KINDS[command]
    document = draw(kind.documents)
    where = draw(st.sampled_from(["field", "field", "field", "cross", "around"]))
    if where == "around":
        return _around(draw, json.loads(document))
    if where == "cross" and kind.command == "treatment-change":
        return _cross_change(draw, json.loads(document))
    if where == "cross" and kind.command in ("refer", "propose"):
        return _cross_referral(draw, json.loads(document))
    return _tree(draw, document, kind)


# ---------------------------------------------------------------------------- the store and the CLI


class StoreWatch:
    """Sees any write to the store: rows per table, and SQLite's count of commits by others.

    It reads through a connection of its own (plain sqlite3: fast enough to ask after
    every document), so ``PRAGMA data_version`` changes with any commit the command makes.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.tables = sorted(SQLModel.metadata.tables)
        counts = ", ".join(f'(SELECT count(*) FROM "{t}")' for t in self.tables)
        self.query = f"SELECT {counts}"
        self.other = sqlite3.connect(url.removeprefix("sqlite:///"))
        self.initial = self.fingerprint()

    def fingerprint(self) -> tuple[int, dict[str, int]]:
        counts = self.other.execute(self.query).fetchone()
        (version,) = self.other.execute("PRAGMA data_version").fetchone()
        return version, dict(zip(self.tables, counts, strict=True))

    def close(self) -> None:
        self.other.close()


@pytest.fixture(scope="module")
def module_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated store for the module, holding one child (EX-0002): every test here
    must leave it as it found it, so they can share it (a migration per test is slow)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('bad-input') / 'store.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SIDFLOWS_DATABASE_URL", url)
        clear_store_caches()
        db.upgrade(url)
        service.refer(
            (EXAMPLES / "lupus-on-rituximab.json").read_bytes(), unit=Unit(), actor="intake"
        )
        yield url
        db.dispose_engines()
    clear_store_caches()


@pytest.fixture
def watched(module_store: str) -> Iterator[StoreWatch]:
    """The module's store, as this test finds it: the test must leave it unchanged."""
    watch = StoreWatch(module_store)
    yield watch
    watch.close()


def check_refusal(code: int, out: str, err: str, case: Mangled) -> None:
    """Exit 2, nothing on stdout, one line on stderr naming the field, no traceback."""
    assert code == 2, (case, code, out, err)
    assert out == "", (case, out)
    assert "Traceback" not in err, (case, err)
    lines = err.splitlines()
    assert len(lines) == 1, (case, err)
    assert lines[0].startswith(PREFIX), (case, lines[0])
    named = lines[0].removeprefix(PREFIX)
    if case.within:
        assert named.startswith((case.field, "document: ")), (case.field, named)
    else:
        assert named.startswith(f"{case.field}: "), (case.field, named)
    assert named.split(": ", 1)[1].strip(), named


class _Stdin:
    """Standard input holding the document (FILE is ``-``): no file per example."""

    def __init__(self, payload: bytes) -> None:
        self.buffer = io.BytesIO(payload)


def refuse_in_process(
    kind: Kind, case: Mangled, watch: StoreWatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One mangled document through ``flows.cli.main``: refused, and the store untouched."""
    if case.store_level:
        kind.parse(case.payload)  # valid on its own: only the store can refuse it
    else:
        with pytest.raises(InvalidInput):
            kind.parse(case.payload)
    capsys.readouterr()
    stdin, sys.stdin = sys.stdin, _Stdin(case.payload)  # type: ignore[assignment]
    try:
        code = main(kind.argv("-"))
    finally:
        sys.stdin = stdin
    out, err = capsys.readouterr()
    check_refusal(code, out, err, case)
    assert watch.fingerprint() == watch.initial, case


def _bulk(
    kind: Kind,
    strategy: st.SearchStrategy[Mangled],
    documents: int,
    watch: StoreWatch,
    capsys: pytest.CaptureFixture[str],
    tally: Counter[str],
) -> Counter[str]:
    """Refuse ``documents`` mangled documents of ``kind``; returns how many of each mutation.

    Each hypothesis example is a batch of BATCH documents: the engine's own work per
    example would otherwise cost more than the command line's.
    """
    kinds: Counter[str] = Counter()

    @settings(BULK, max_examples=-(-documents // BATCH))
    @given(cases=st.lists(strategy, min_size=BATCH, max_size=BATCH))
    def check(cases: list[Mangled]) -> None:
        for case in cases:
            refuse_in_process(kind, case, watch, capsys)
            kinds[case.kind] += 1

    check()
    tally[f"{kind.command} (in-process)"] += sum(kinds.values())
    return kinds


# ----------------------------------------------------------------------------- the tests


def test_the_documents_mangled_are_valid_before_the_mutation() -> None:
    """Every starting document is valid, so each refusal below is the mutation's."""
    assert len(REFERRALS) > 100
    assert len(CHANGES) > 50
    for document in REFERRALS:
        parse_referral(document)
    for document in CHANGES:
        for t in parse_treatment_change(document).treatments:
            assert t.start >= STORED_BIRTH
    for document in LAB_REPORTS:
        parse_lab_report(document)
    leaves = {p[-1] for doc in map(json.loads, REFERRALS) for p, v in _walk(doc) if p}
    named = DATE_KEYS | ENUMS.keys() | TEXT_KEYS | BOOL_KEYS | NUMBER_RANGES.keys()
    assert {k for k in leaves if isinstance(k, str)} <= named | KNOWN_KEYS


def test_refer_refuses_every_mangled_referral(
    watched: StoreWatch,
    capsys: pytest.CaptureFixture[str],
    bad_input_tally: Counter[str],
) -> None:
    """`refer` refuses 10,000 mangled referrals: exit 2, one line naming the field, no row."""
    kinds = _bulk(REFER, mangled("refer"), PER_COMMAND, watched, capsys, bad_input_tally)
    assert sum(kinds.values()) >= PER_COMMAND
    assert set(kinds) == {*FIELD, *AROUND, *ACROSS_REFERRAL}  # every mutation was tried


def test_treatment_change_refuses_every_mangled_change(
    watched: StoreWatch,
    capsys: pytest.CaptureFixture[str],
    bad_input_tally: Counter[str],
) -> None:
    """`treatment-change` refuses 10,000 mangled changes: exit 2, one line, no row written."""
    kinds = _bulk(
        CHANGE, mangled("treatment-change"), PER_COMMAND, watched, capsys, bad_input_tally
    )
    assert sum(kinds.values()) >= PER_COMMAND
    # Every mutation was tried (a change holds no ref or boolean to spoil), and "before_birth"
    # among them: refused inside the store's transaction, which is rolled back.
    assert set(kinds) == {*FIELD, *AROUND, *ACROSS_CHANGE} - {"bad_ref", "bad_bool"}


def test_refer_refuses_the_property_tests_mangled_referrals(
    watched: StoreWatch,
    capsys: pytest.CaptureFixture[str],
    bad_input_tally: Counter[str],
) -> None:
    """The mutations of test_properties (on hypothesis-built referrals) are refused by `refer`."""
    strategy = mangled_referrals().map(
        lambda case: Mangled(case[0].encode("utf-8"), case[1], case[2])
    )
    kinds = _bulk(REFER, strategy, 300, watched, capsys, bad_input_tally)
    assert sum(kinds.values()) >= 300


def _script(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the caller checks the exit code
        [SIDFLOWS, *argv],
        capture_output=True,
        encoding="utf-8",
        errors="backslashreplace",
        env=env,
        timeout=120,
        check=False,
    )


SCRIPT_KINDS = (REFER, CHANGE, LAB_RESULT, PROPOSE)


@pytest.mark.parametrize("kind", SCRIPT_KINDS, ids=[k.command for k in SCRIPT_KINDS])
def test_the_sidflows_script_refuses_a_sample(
    kind: Kind, watched: StoreWatch, tmp_path: Path, bad_input_tally: Counter[str]
) -> None:
    """The installed `sidflows` script, run as a process, refuses mangled documents the same way."""
    env = {**os.environ, "SIDFLOWS_DATABASE_URL": watched.url}
    path = tmp_path / "document.json"
    kinds: Counter[str] = Counter()

    @settings(BULK, max_examples=SAMPLE_PER_COMMAND)
    @given(case=mangled(kind.command))
    def check(case: Mangled) -> None:
        path.write_bytes(case.payload)
        done = _script(kind.argv(str(path)), env)
        check_refusal(done.returncode, done.stdout, done.stderr, case)
        assert watched.fingerprint() == watched.initial, case
        kinds[case.kind] += 1

    check()
    assert sum(kinds.values()) >= SAMPLE_PER_COMMAND
    bad_input_tally[f"{kind.command} (sidflows script)"] += sum(kinds.values())


def test_a_refused_referral_does_not_even_create_the_store(tmp_path: Path) -> None:
    """`refer` validates before it opens the store: a refusal leaves no database file behind."""
    database = tmp_path / "never.db"
    document = tmp_path / "referral.json"
    document.write_text('{"patient": {"ref": "P-1"}}')
    env = {**os.environ, "SIDFLOWS_DATABASE_URL": f"sqlite:///{database}"}
    done = _script(["refer", str(document)], env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"{PREFIX}patient.birth_date: required field missing")
    assert not database.exists()


def _lupus(change: Callable[[Doc], object]) -> bytes:
    doc = json.loads((EXAMPLES / "lupus-on-rituximab.json").read_text())
    change(doc)
    return json.dumps(doc).encode()


def _raw(field: str, literal: str) -> Callable[[Doc], object]:
    """Put a raw JSON literal (what json.dumps will not write) at a dotted path."""

    def change(doc: Doc) -> None:
        target: Any = doc
        *parents, last = field.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = RAW

    return change


def _lupus_raw(field: str, literal: str) -> bytes:
    return _lupus(_raw(field, literal)).replace(json.dumps(RAW).encode(), literal.encode())


def _change(**treatment: Any) -> bytes:
    entry = {"drug": "prednisone", "class": "corticosteroid", "start": "2026-07-20", **treatment}
    return json.dumps({"date": "2026-11-24", "treatments": [entry]}).encode()


# Each one was accepted (and stored, or crashed with a traceback-free exit 1) before the fix.
REGRESSIONS: list[tuple[str, list[str], bytes, str, str]] = [
    (
        "an integer of 5000 digits (was exit 1, ValueError)",
        ["refer", "-"],
        _lupus_raw("patient.weight_kg", "9" * 5000),
        "document",
        "number too long",
    ),
    (
        "lists 600 deep in reason (was exit 1, RecursionError)",
        ["refer", "-"],
        _lupus_raw("reason", "[" * 600 + "]" * 600),
        "reason[0][0]",
        "nested more than 16 levels deep",
    ),
    (
        "NUL in a drug name (was stored; PostgreSQL refuses it)",
        ["refer", "-"],
        _lupus(lambda d: d["treatments"][0].update(drug="ritux\x00imab")),
        "treatments[0].drug",
        "control character (U+0000)",
    ),
    (
        "a line break inside a diagnosis label (was stored)",
        ["refer", "-"],
        _lupus(lambda d: d["diagnosis"].update(label="lupus\nnephritis")),
        "diagnosis.label",
        "line break (U+000A)",
    ),
    (
        "an unpaired surrogate in the referring service (was exit 1 writing it)",
        ["refer", "-"],
        _lupus(lambda d: d["referrer"].update(service="rheuma\ud800tology")),
        "referrer.service",
        "unpaired surrogate",
    ),
    (
        "a line break in an unknown field's name (was two lines)",
        ["refer", "-"],
        _lupus(lambda d: d["patient"].update({"a\nb": 1})),
        'patient["a\\nb"]',
        "unknown field",
    ),
    (
        "a surrogate in a field's name (named 'document')",
        ["refer", "-"],
        _lupus(lambda d: d.update({"x\udc80": 1})),
        '["x\\udc80"]',
        "field name not valid Unicode",
    ),
    (
        "a treatment ending in 9999 (was stored; planning then failed)",
        ["refer", "-"],
        _lupus(lambda d: d["treatments"][1].update(end="9999-12-31")),
        "treatments[1].end",
        "out of range (1900-01-01 to 2199-12-31)",
    ),
    (
        "a birth date in year 1 (was stored)",
        ["refer", "-"],
        _lupus(lambda d: d["patient"].update(birth_date="0001-01-01")),
        "patient.birth_date",
        "out of range",
    ),
    (
        "fullwidth digits in a date",
        ["refer", "-"],
        _lupus(lambda d: d.update(received="\uff12\uff10\uff12\uff16-11-20")),
        "received",
        "not a date",
    ),
    (
        "NaN named where it is (was 'document')",
        ["refer", "-"],
        _lupus_raw("labs.0.igg_g_l", "NaN"),
        "labs[0].igg_g_l",
        "NaN is not a number",
    ),
    (
        "a repeated key named with its path (was the key alone)",
        ["refer", "-"],
        _lupus(lambda d: None).replace(b'"sex": "female"', b'"sex": "female", "sex": "male"'),
        "patient.sex",
        "duplicate key",
    ),
    (
        "an impossible --today after a valid referral (the referral was stored first)",
        ["refer", "-", "--today", "2026-02-30"],
        _lupus(lambda d: None),
        "--today",
        "impossible date",
    ),
    (
        "--today in year 9999 (was exit 1 in planning)",
        ["propose", "-", "--today", "9999-12-31"],
        _lupus(lambda d: None),
        "--today",
        "out of range",
    ),
    (
        "a change ending in 9999 (was stored; re-planning then failed)",
        ["treatment-change", STORED_REF, "-"],
        _change(end="9999-12-31"),
        "treatments[0].end",
        "out of range",
    ),
    (
        "a change with NUL in the drug (was stored)",
        ["treatment-change", STORED_REF, "-"],
        _change(drug="predni\x00sone"),
        "treatments[0].drug",
        "control character",
    ),
    (
        "a change starting before the child's birth (refused in the store's transaction)",
        ["treatment-change", STORED_REF, "-"],
        _change(start="2010-01-01"),
        "treatments[0].start",
        "before birth_date",
    ),
]


@pytest.mark.parametrize(
    ("argv", "payload", "field", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in REGRESSIONS],
)
def test_regressions_are_refused_naming_the_field(
    argv: list[str],
    payload: bytes,
    field: str,
    fragment: str,
    watched: StoreWatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Documents once accepted or crashed on: exit 2, one line naming the field, store unchanged."""
    capsys.readouterr()
    stdin, sys.stdin = sys.stdin, _Stdin(payload)  # type: ignore[assignment]
    try:
        code = main(argv)
    finally:
        sys.stdin = stdin
    out, err = capsys.readouterr()
    check_refusal(code, out, err, Mangled(payload, field, "regression"))
    assert fragment in err, err
    assert watched.fingerprint() == watched.initial
