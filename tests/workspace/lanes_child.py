"""A stageflow process to SIGKILL: it drives a run of ``two_writers`` or lands one, on a project
made by ``lanes_kit.prepare_project``. Run as ``python -m tests.workspace.lanes_child PROJECT
run`` (prints nothing; writes the run id to PROJECT/../run_id) or ``... PROJECT land RUN``.

``kill_git`` writes the ``git`` the test puts first on this process's PATH: it runs the real
git, but at the command named by ``KILL_AT`` it touches ``KILL_FLAG`` and hangs (before the
real command, after it, or after a ``--no-commit`` version of a merge: a merge half done), so
the test kills the process exactly there.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import anyio

from tests.workspace.lanes_kit import Writer, open_lanes

TWO_WRITERS = """
name: two_writers
stages:
  - {id: backend, agent: writer, produces: [summary]}
  - {id: frontend, agent: writer, produces: [summary]}
  - {id: docs, agent: writer, depends_on: [backend, frontend], produces: [summary]}
"""

_WRAPPER = """#!/bin/bash
# a git that hangs at one command, so the test can SIGKILL stageflow right there
real={real}
flag="$KILL_FLAG"
if [[ ! -e "$flag" && " $* " == *" $KILL_MATCH "* ]]; then
    case "$KILL_AT" in
        before) touch "$flag"; sleep 600 ;;
        after) "$real" "$@"; touch "$flag"; sleep 600 ;;
        half) "$real" "${{@/--no-edit/--no-commit}}"; touch "$flag"; sleep 600 ;;
    esac
fi
exec "$real" "$@"
"""


def kill_git(bin_dir: Path) -> Path:
    """Write the hanging ``git`` into ``bin_dir`` (to put first on the child's PATH)."""
    real = shutil.which("git")
    assert real is not None
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "git"
    wrapper.write_text(_WRAPPER.format(real=real), encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper


def script(writer: Writer) -> None:
    """The files each stage of ``two_writers`` writes (the test checks for them)."""
    writer.scripts.update(
        backend=lambda req: {"api.py": "def api(): ...\n"},
        frontend=lambda req: {"ui.js": "export const ui = 1;\n"},
        docs=lambda req: {"README.md": "# demo\n\nnow with an api and a ui\n"},
    )


async def main(project: Path, action: str, run_id: str | None) -> None:
    async with open_lanes(project) as env:
        script(env.writer)
        if action == "run":
            state = await env.service.start_run("two_writers", "add the api and the ui")
            (project.parent / "run_id").write_text(state.run_id, encoding="utf-8")
            await env.scheduler.drive(state.run_id, until="idle")
        else:
            assert run_id is not None
            await env.service.land(run_id)


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
