"""Many rows into one table in few statements, below the ORM (the sweep's writes).

SQLite: one ``executemany`` of a prepared INSERT on the connection (in process:
no round trip at all). PostgreSQL: COPY, or where a taken key is to be skipped
one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`` per batch,
one array per column: one round trip for thousands of rows. JSON is
serialised as the dialect does it, other values go through the column type's
own bind processing, so what is stored is what the ORM would have stored.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

BATCH = 5000


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    skip_taken: str | None = None,
) -> int:
    """Insert ``rows`` (dicts with the same keys) into ``table``; how many went in.

    ``skip_taken`` names a unique column: a row whose value is already there is
    skipped (ON CONFLICT DO NOTHING) and not counted.
    """
    if not rows:
        return 0
    session.flush()  # what the session holds goes first, as an ORM insert would have it
    given = list(rows[0])
    # The columns' own defaults (an escalation count of 0) for those not given, as Core
    # fills them in.
    defaults = _defaults(table, given)
    names = given + list(defaults)
    connection = session.connection()
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    columns = [table.c[name] for name in names]
    convert = [_converter(column, dialect) for column in columns]
    listed = ", ".join(quote(name) for name in names)
    target = dialect.identifier_preparer.format_table(table)
    conflict = f" ON CONFLICT ({quote(skip_taken)}) DO NOTHING" if skip_taken else ""
    if dialect.name == "postgresql":
        arrays = ", ".join(f"%b::{_pg_type(column, dialect)}[]" for column in columns)
        sql = f"INSERT INTO {target} ({listed}) SELECT * FROM unnest({arrays}){conflict}"
    else:
        marks = ", ".join("?" for _ in names)
        sql = f"INSERT INTO {target} ({listed}) VALUES ({marks}){conflict}"
    raw = connection.connection
    cursor = raw.cursor()
    made = 0
    try:
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            values = [
                _column_values(
                    [row[name] for row in chunk]
                    if name not in defaults
                    else [defaults[name]] * len(chunk),
                    f,
                )
                for name, f in zip(names, convert, strict=True)
            ]
            if dialect.name == "postgresql" and not skip_taken:
                with cursor.copy(f"COPY {target} ({listed}) FROM STDIN") as copy:
                    for row in zip(*values, strict=True):
                        copy.write_row(row)
                made += len(chunk)
            elif dialect.name == "postgresql":
                cursor.execute(sql, values)
                made += max(cursor.rowcount, 0)
            else:
                driver: Any = raw.driver_connection
                before = driver.total_changes
                cursor.executemany(sql, list(zip(*values, strict=True)))
                made += driver.total_changes - before
    except dialect.loaded_dbapi.Error as error:  # as SQLAlchemy raises it, for the callers
        raise DBAPIError.instance(sql, None, error, dialect.loaded_dbapi.Error) from error
    finally:
        cursor.close()
    return made


def _defaults(table: Table, given: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for column in table.c:
        default: Any = column.default
        if column.name in given or default is None:
            continue
        if default.is_scalar:
            found[column.name] = default.arg
        elif default.is_callable:
            found[column.name] = default.arg(None)
    return found


def _column_values(values: list[Any], convert: Callable[[Any], Any] | None) -> list[Any]:
    if convert is not None:
        return [None if v is None else convert(v) for v in values]
    if any(isinstance(v, str | dt.datetime) and type(v) not in _EXACT for v in values):
        return [_plain(v) for v in values]  # str enums as str, pendulum times as datetime
    return values


def _converter(column: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """How the column's values are bound; None: as they are (plain str, int, ...)."""
    if isinstance(column.type, JSON):
        dumps: Callable[[Any], str] = getattr(dialect, "_json_serializer", None) or json.dumps
        # The same object again (a bulk load's shared item documents) is serialised once:
        # the rows hold it, so its id stands for it while the call lasts.
        done: dict[int, str] = {}

        def serialised(value: Any) -> str:
            if type(value) is list and not value:
                return "[]"
            text = done.get(id(value))
            if text is None:
                text = done[id(value)] = dumps(value)
            return text

        return serialised
    process = column.type._cached_bind_processor(dialect)
    if process is None:
        return None
    seen: dict[Any, Any] = {}  # a batch's rows share their timestamps: processed once

    def converted(value: Any) -> Any:
        try:
            return seen[value]
        except KeyError:
            seen[value] = done = _plain(process(value))
            if len(seen) > 1000:
                seen.clear()
            return done
        except TypeError:  # not hashable
            return _plain(process(value))

    return converted


_EXACT = (str, dt.datetime)


@lru_cache(maxsize=256)
def _plain_time(value: dt.datetime) -> dt.datetime:
    offset = value.utcoffset()
    return dt.datetime(
        *value.timetuple()[:6],
        value.microsecond,
        tzinfo=None if offset is None else dt.timezone(offset),
    )


def _plain(value: Any) -> Any:
    """A str enum as its plain str, a pendulum time as a datetime (the drivers adapt
    exact types, and fast)."""
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    if isinstance(value, dt.datetime) and type(value) is not dt.datetime:
        return _plain_time(value)
    return value


def _pg_type(column: Any, dialect: Any) -> str:
    """The element type of the column's array parameter (JSON travels as text, cast)."""
    return "json" if isinstance(column.type, JSON) else str(column.type.compile(dialect=dialect))
