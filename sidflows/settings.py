"""Settings from the environment (prefix SIDFLOWS_), one typed class."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    @field_validator("database_url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("SIDFLOWS_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        if "changethis" in value:
            raise ValueError("SIDFLOWS_DATABASE_URL still holds a placeholder password")
        return value

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
    return Settings()
