"""``sidflows demo``: a synthetic cohort through a simulated year of the real flows."""
