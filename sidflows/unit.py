"""The unit's configuration as one object: what every pathway step is given.

`sidflows.service` receives a ``Unit`` instead of reading settings, files or the
environment itself. The orchestration builds one per process
(``flows.runtime.unit()``); a test builds its own, with a protocol or calendar
of its own where it needs one. Each part is parsed when it is first used, then
kept: a command that never approves does not stop on a roster it never reads,
and a wrong roster still stops the first command that does.
"""

from __future__ import annotations

from functools import cached_property

from sidflows.calendar import UnitCalendar, load_calendar
from sidflows.codes import load_codes
from sidflows.notify.config import NotificationConfig, load_notifications
from sidflows.protocol import Protocol, load_protocol
from sidflows.settings import Settings, get_settings
from sidflows.staff import Roster, load_staff


class Unit:
    """Protocol, calendar, staff roster, notification settings and the UI's address."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        protocol: Protocol | None = None,
        calendar: UnitCalendar | None = None,
        staff: Roster | None = None,
        notifications: NotificationConfig | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        given = {
            "protocol": protocol,
            "calendar": calendar,
            "staff": staff,
            "notifications": notifications,
        }
        # A part given here is used as it is; the others are read from the unit's files.
        self.__dict__.update({name: part for name, part in given.items() if part is not None})

    @cached_property
    def protocol(self) -> Protocol:
        return load_protocol(self.settings.protocol)

    @cached_property
    def calendar(self) -> UnitCalendar:
        return load_calendar(self.settings.calendar)

    @cached_property
    def staff(self) -> Roster:
        return load_staff(self.settings.staff)

    @cached_property
    def notifications(self) -> NotificationConfig:
        return load_notifications()

    @property
    def ui_url(self) -> str:
        return self.settings.ui_url

    def check(self) -> Unit:
        """Read every file of the unit now (a command that writes the store calls this
        first, so a broken file stops it before anything is stored; ConfigError names
        the file and the field)."""
        for part in ("protocol", "calendar", "staff", "notifications"):
            getattr(self, part)
        load_codes()
        return self
