"""Where a role's messages go: Apprise URLs from the environment or a secrets file.

``SIDFLOWS_NOTIFY_<ROLE>`` holds comma-separated Apprise URLs; referrers are
routed per service (``SIDFLOWS_NOTIFY_REFERRERS_ONCOLOGY``), falling back to
``SIDFLOWS_NOTIFY_REFERRERS``. ``SIDFLOWS_NOTIFY_SECRETS`` may name a TOML file
(outside the repository) with a ``[routes]`` table of the same names in lower
case; the environment wins. A URL is a secret (it may hold a password or a
token): it is never logged, stored or shown; a route is named by its scheme and
a short digest, e.g. ``json#3f2a9c``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sidflows.errors import ConfigError

PREFIX = "SIDFLOWS_NOTIFY_"
SECRETS = "SIDFLOWS_NOTIFY_SECRETS"


@dataclass(frozen=True)
class Url:
    """One Apprise URL. Its repr never shows it."""

    value: str = field(repr=False)

    @property
    def scheme(self) -> str:
        return self.value.split("://", 1)[0].lower()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.value.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return f"{self.scheme}#{self.digest[:6]}"

    def with_timeout(self, seconds: float) -> str:
        """The URL with Apprise's connect and read timeouts, unless it sets its own."""
        parts = urlsplit(self.value)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.setdefault("cto", f"{seconds:g}")
        query.setdefault("rto", f"{seconds:g}")
        return urlunsplit(parts._replace(query=urlencode(query)))


def env_name(route: str) -> str:
    """``referrers:oncology`` -> ``SIDFLOWS_NOTIFY_REFERRERS_ONCOLOGY``."""
    return PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", route).strip("_").upper()


def route_for(role: str, *, service: str | None = None) -> str:
    """The route a message is stored under: the role, or referrers of one service."""
    if role == "referrers" and service:
        return f"referrers:{re.sub(r'[^a-z0-9]+', '_', service.lower()).strip('_')}"
    return role


def _split(text: str) -> tuple[Url, ...]:
    return tuple(Url(u.strip()) for u in text.split(",") if u.strip())


def _secrets(environ: Mapping[str, str]) -> dict[str, tuple[Url, ...]]:
    path = environ.get(SECRETS)
    if not path:
        return {}
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{SECRETS}: no such file: {path}") from None
    except (tomllib.TOMLDecodeError, OSError) as exc:
        # The message of a decode error quotes no value, only the position.
        raise ConfigError(f"{SECRETS}: {path}: not valid TOML ({type(exc).__name__})") from None
    routes = data.get("routes", {})
    if not isinstance(routes, dict):
        raise ConfigError(f"{SECRETS}: routes: must be a table")
    found: dict[str, tuple[Url, ...]] = {}
    for name, given in routes.items():
        urls = [given] if isinstance(given, str) else given
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ConfigError(f"{SECRETS}: routes.{name}: a URL or a list of URLs")
        found[env_name(name)] = tuple(Url(u.strip()) for u in urls if u.strip())
    return found


def resolve(route: str, environ: Mapping[str, str] | None = None) -> tuple[Url, ...]:
    """The URLs of a route (empty when none is configured)."""
    env = os.environ if environ is None else environ
    names = [env_name(route)]
    if ":" in route:
        names.append(env_name(route.split(":", 1)[0]))
    from_file = _secrets(env)
    for name in names:
        if env.get(name, "").strip():
            return _split(env[name])
        if from_file.get(name):
            return from_file[name]
    return ()


def configured(environ: Mapping[str, str] | None = None) -> list[str]:
    """Which routes have URLs (names only), for the command line and the docs."""
    env = os.environ if environ is None else environ
    names = {k for k, v in env.items() if k.startswith(PREFIX) and k != SECRETS and v.strip()}
    names |= {k for k, v in _secrets(env).items() if v}
    return sorted(n.removeprefix(PREFIX).lower() for n in names)
