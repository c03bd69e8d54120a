"""The operator console (served by `cwi serve` at /console)."""
