"""``sidflows benchmark ...``: the figures (speed and memory), printed, never asserted."""
