"""The clinical rules: pure functions of a referral, ``today`` and the protocol.

No clock, no database, no environment, no prefect. Each returns frozen
decisions carrying their rationale and source.
"""
