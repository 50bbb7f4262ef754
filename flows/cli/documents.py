"""``sidflows propose`` and ``schema``: documents only; no store, no Prefect (they answer fast)."""

from __future__ import annotations

import argparse

from flows.cli.io import EXIT_OK, print_json, read_document
from sidflows.calendar import load_calendar
from sidflows.documents import iso_day
from sidflows.errors import InvalidInput
from sidflows.incoming import referral_text
from sidflows.plan_document import plan_document
from sidflows.planning import propose_plan
from sidflows.protocol import load_protocol
from sidflows.referral import parse_referral
from sidflows.schema import referral_schema
from sidflows.settings import get_settings


def propose(args: argparse.Namespace) -> int:
    text = referral_text(read_document(args.file), ref_secret=get_settings().ref_secret)
    referral = parse_referral(text)
    protocol = load_protocol()
    calendar = load_calendar()
    today = iso_day(args.today, "--today") if args.today else calendar.today()
    if referral.received > today:  # the plan would read results from its own future
        raise InvalidInput(
            "received",
            f"after the plan's day {today}: a plan cannot read a record from its future",
        )
    plan = propose_plan(referral, today=today, protocol=protocol, calendar=calendar)
    print_json(plan_document(plan))
    return EXIT_OK


def schema(args: argparse.Namespace) -> int:
    print_json(referral_schema())
    return EXIT_OK
