"""The format's vaccine codes -> CVX and the series a dose counts toward (vaccine_codes.toml).

The table ships beside this module (``vaccine_codes.toml``, with its provenance) and is
read once. A code is either one of the referral format's short codes (``DTaP``) or a
CVX code (``"115"``, ``"08"``: CVX codes compare as numbers).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TABLE = Path(__file__).resolve().parent / "vaccine_codes.toml"


@dataclass(frozen=True, slots=True)
class VaccineCode:
    code: str
    cvx: str
    series: tuple[str, ...]
    name: str


@dataclass(frozen=True, slots=True)
class CodeTable:
    version: str
    source: str
    codes: dict[str, VaccineCode]
    by_cvx: dict[str, VaccineCode]
    groups: dict[str, str]
    """series -> the CDSi vaccine group whose evaluation counts its doses."""

    def lookup(self, code: str) -> VaccineCode | None:
        """A format code or a CVX code; None if neither is in the table."""
        found = self.codes.get(code)
        return found if found is not None else self.by_cvx.get(norm_cvx(code))


def norm_cvx(code: str) -> str:
    """CVX codes compare as numbers: ``03`` is ``3``."""
    text = code.strip()
    return str(int(text)) if text.isdigit() else text


@cache
def code_table() -> CodeTable:
    """The shipped table, parsed once (a malformed table is a programming error)."""
    with TABLE.open("rb") as fh:
        data = tomllib.load(fh)
    groups = {str(k): str(v) for k, v in data["series"].items()}
    codes: dict[str, VaccineCode] = {}
    by_cvx: dict[str, VaccineCode] = {}
    for code, row in data["codes"].items():
        series = tuple(str(s) for s in row["series"])
        unknown = [s for s in series if s not in groups]
        if unknown:
            raise ValueError(f"{TABLE.name}: codes.{code}: unknown series {unknown}")
        entry = VaccineCode(code, norm_cvx(str(row["cvx"])), series, str(row["name"]))
        codes[code] = entry
        for cvx in (row["cvx"], *row.get("cvx_aliases", ())):
            by_cvx[norm_cvx(str(cvx))] = entry
    return CodeTable(str(data["version"]), str(data["source"]), codes, by_cvx, groups)


def series_of(vaccine: str) -> tuple[str, ...]:
    """The series a dose of ``vaccine`` (format or CVX code) counts toward."""
    found = code_table().lookup(vaccine)
    return found.series if found is not None else ()
