"""The ``stageflow`` command's exit codes (documented in the README)."""

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_STATE = 0, 1, 2, 3, 4
EXIT_WAITING = 5  # --wait stopped at a gate: a human must approve or reject
EXIT_PAUSED = 6  # the run is paused (at its budget, or by request)
