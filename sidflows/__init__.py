"""sidflows: what the unit knows. Domain, protocol, clinical rules, calendar, store.

This package never imports prefect; orchestration lives in ``flows/``.
"""

__version__ = "0.1.0"
