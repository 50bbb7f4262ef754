"""One exception family for input the unit refuses, each carrying the field path."""

from __future__ import annotations


class InvalidInput(ValueError):
    """A document or command argument that cannot be accepted.

    ``field`` is the path of the offending field (``treatments[1].end``), and
    ``str(error)`` is the single line the command line prints.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class UnknownPatient(LookupError):
    """No child with that pseudonymous ref is in the store."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"unknown patient ref {ref!r}")


class ConfigError(ValueError):
    """The unit's configuration (protocol, calendar, routes) is not valid."""
