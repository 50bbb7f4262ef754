"""Test and demo helpers the product does not need at run time.

The synthetic cohort and the local webhook and mail receivers live here, the
way ``prefect.testing`` and ``structlog.testing`` do it: the product packages
never import this one, and its test-only libraries (aiosmtpd) are imported
nowhere else.
"""
