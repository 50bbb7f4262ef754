"""The unit's TOML configuration files: where each is, how it is read, loaded once.

Each file has its own ``parse_X(data, *, origin)`` that validates it into frozen
objects and raises ConfigError naming the file and the field; ``load_config``
finds the file (its environment variable, else the shipped default), reads it
and parses it once per resolved path.
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from sidflows.errors import ConfigError

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Parser(Protocol[T_co]):
    """``parse_X(data, *, origin)``: a file's contents into its validated, frozen object."""

    def __call__(self, data: dict[str, object], *, origin: str) -> T_co: ...

    def __hash__(self) -> int: ...  # the cache is keyed on it


@cache
def _config_dir() -> Path:
    """config/ beside the source tree, or the copy a wheel install carries.

    Found once per process (loaders are called on every decision; the install does not
    move while it runs); not found is not cached, so the error repeats.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "_config", here.parent / "config"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("no config/ directory found: set SIDFLOWS_CONFIG_DIR")


def config_path(name: str, env_override: str | None = None) -> Path:
    """The file a unit configured (environment), else the shipped default."""

    explicit = os.environ.get(env_override) if env_override else None
    if explicit:
        return Path(explicit)
    base = os.environ.get("SIDFLOWS_CONFIG_DIR")
    return (Path(base) if base else _config_dir()) / name


def read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


@cache
def _load(path: Path, parse: Parser[Any]) -> Any:
    return parse(read_toml(path), origin=str(path))


def load_config(parse: Parser[T], name: str, env_override: str, path: Path | None = None) -> T:
    """``path``, else the file ``env_override`` names, else config/``name``: parsed once.

    The file is named by its resolved path in every error (ConfigError).
    """
    return cast(T, _load(_resolved(path or config_path(name, env_override)), parse))


@cache
def _resolved(path: Path) -> Path:
    """The file's absolute path (resolved once: loaders are called on every decision)."""
    return path.resolve()
