"""Settings from the environment (prefix SIDFLOWS_), one typed class."""

from __future__ import annotations

import ipaddress
from functools import cache
from pathlib import Path

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sidflows.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///sidflows.db"


class Settings(BaseSettings):
    """Where the store lives and which unit files to read.

    ``database_url``: SQLite file in the working directory by default; a
    PostgreSQL URL (``postgresql+psycopg://user@host/db``) in production.
    """

    model_config = SettingsConfigDict(env_prefix="SIDFLOWS_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    protocol: Path | None = None
    calendar: Path | None = None
    staff: Path | None = None
    # Keys the ref derived from a FHIR record number (HMAC): a secret, kept out of the repo.
    ref_secret: str | None = None
    # Where Prefect's UI is, for the messages that point coordinators to it.
    ui_url: str = "http://127.0.0.1:4200"
    # Where the pathway writes each plan version as a FHIR Bundle for the hospital's system
    # to collect: a directory, or an http(s) URL it POSTs to (docs/fhir.md). Unset: off.
    fhir_export: str | None = None
    # The export target is secure (a protected directory, an https endpoint inside the
    # hospital): the Bundles carry the child's name and record number. Default: refs only.
    fhir_export_identity: bool = False
    # The directory the unit serves (over HTTPS) where the daily sweep keeps the calendar
    # feeds: one per staff role and one per child (docs/fhir.md). Unset: no feeds written.
    calendar_dir: Path | None = None
    # The approval page for units with single sign-on (docs/sso.md), served by
    # `sidflows serve` behind the hospital's authenticating proxy. Off by default.
    approvals_web: bool = False
    approvals_listen: str = "127.0.0.1:8470"  # host:port it listens on (the proxy's upstream)
    # The one header the proxy sets to the authenticated user (matched to the roster's login):
    # oauth2-proxy's X-Auth-Request-User or X-Auth-Request-Email, or X-Forwarded-User.
    approvals_user_header: str = "X-Auth-Request-User"
    # Where the proxy connects from (addresses or networks, comma-separated): anything else
    # is refused with 403, whatever headers it sends.
    approvals_proxies: str = "127.0.0.1,::1"
    # A secret the proxy adds in a header of its own (X-Sidflows-Proxy-Secret): when set,
    # a request without it is refused too (a proxy on another host, or a shared loopback).
    approvals_proxy_secret: str | None = None
    # The page shows the child's name and record number beside the ref (a protected page).
    approvals_show_identity: bool = False

    @field_validator("database_url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("SIDFLOWS_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        if "changethis" in value:
            raise ValueError("SIDFLOWS_DATABASE_URL still holds a placeholder password")
        return value

    @field_validator("approvals_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"SIDFLOWS_APPROVALS_LISTEN must be host:port, not {value!r}")
        return value

    @field_validator("approvals_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in value.split(","):
            try:
                ipaddress.ip_network(part.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"SIDFLOWS_APPROVALS_PROXIES: {part.strip()!r} is no address or network"
                ) from None
        return value

    @field_validator("approvals_user_header")
    @classmethod
    def _one_header(cls, value: str) -> str:
        if not value.strip() or any(c in value for c in ", :"):
            raise ValueError(f"SIDFLOWS_APPROVALS_USER_HEADER must name one header, not {value!r}")
        return value.strip()

    @model_validator(mode="after")
    def _identity_only_to_a_secure_endpoint(self) -> Settings:
        target = self.fhir_export or ""
        if self.fhir_export_identity and target.lower().startswith("http://"):
            raise ValueError(
                "SIDFLOWS_FHIR_EXPORT_IDENTITY needs an https:// endpoint (or a directory): "
                "identity never goes over plain HTTP"
            )
        return self


@cache
def get_settings() -> Settings:
    """The settings, or a ConfigError naming the first bad one (``SIDFLOWS_<NAME>: ...``)."""
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = "SIDFLOWS_" + "_".join(str(p) for p in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        if not message.startswith("SIDFLOWS_"):
            message = f"{name}: {message}"
        raise ConfigError(message) from None
