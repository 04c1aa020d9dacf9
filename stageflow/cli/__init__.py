"""The ``stageflow`` command: the parser and entry point (``main``), the opened project
(``app``), the commands, their human and JSON output, the offline demo and ``init``."""
