"""`python -m stageflow` is the same as the `stageflow` command."""

from stageflow.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
