"""The clinical rules: pure functions of a referral, ``today`` and the protocol.

Each rule takes one frozen :class:`~sidflows.rules.context.PlanContext` (the
referral, its facts, the protocol, the unit calendar, ``today``, the plan's
start and horizon) and, by keyword, the earlier decisions it depends on.
No clock, no database, no environment, no prefect. Each returns frozen
decisions carrying their rationale and source.
"""
