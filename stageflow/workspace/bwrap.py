"""The bubblewrap profile of a confined command: which paths it sees, and how.

``bwrap_argv`` turns a command into ``bwrap <options> -- <command>``. The options, in the
order bwrap applies them (a later mount covers an earlier one):

1. ``--unshare-all`` (user, PID, network, IPC, UTS and cgroup namespaces; ``--share-net``
   puts the network back when the stage allows it), ``--die-with-parent`` and
   ``--cap-drop ALL``: run as root, bwrap would otherwise leave the command every capability
   inside its namespaces, enough to unmount what hides the secrets below;
2. the whole system read-only (``--ro-bind / /``), a minimal ``/dev``, a fresh ``/proc`` for
   the new PID namespace (the server's process and its environment are not in it) with
   ``/proc/sys`` read-only (uid 0 may write sysctls even without capabilities), and empty
   private ``/tmp`` and ``/run`` (other programs' sockets: the Docker daemon, ssh-agent, D-Bus);
3. hidden (an empty tmpfs, or ``/dev/null`` for a file): stageflow's state directory and
   database (other runs' data, the config), the user's stageflow home, and the usual credential
   stores in the home directory (``~/.ssh``, ``~/.aws``, ``~/.gnupg``, ``~/.netrc``, ...);
4. writable: the workspace root only; inside it ``.git``, ``.claude`` and ``.stageflow``
   (when not hidden) stay read-only, as for the file tools. A missing ``.git`` or ``.claude``
   gets an empty read-only directory in its place (left behind empty), so the command cannot
   create one that git or Claude Code would later read outside the sandbox;
5. git: the repository's common directory (objects, refs, hooks, config) read-only, so no
   commit, ``git branch -f`` or planted hook reaches the user's repository; a linked
   worktree's own git directory writable (its index) except ``HEAD``, ``commondir``,
   ``gitdir`` and ``config.worktree``, which would point git (run later, unconfined, by
   stageflow or the user) at another branch or another configuration.

Everything here reads the file system but starts nothing; ``sandbox`` runs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CREDENTIAL_PATHS", "GitLayout", "bwrap_argv", "git_layout"]

# relative to the home directory; the Claude Code child keeps its own login (``keep``)
CREDENTIAL_PATHS = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".password-store",
    ".config/gcloud",
    ".config/gh",
    ".config/hub",
    ".local/share/keyrings",
    ".claude",
    ".claude.json",
)
_PROTECTED = (".git", ".claude", ".stageflow")  # read-only inside the root, as for file tools
# where a missing one would be read later outside the sandbox: a `.git` in the root (git run
# there by stageflow or the user would read its config and run its fsmonitor or hooks), a
# `.claude` (Claude Code loads its settings and hooks from the project)
_PLACEHOLDERS = (".git", ".claude")
_GITDIR_PINNED = ("HEAD", "commondir", "gitdir", "config.worktree")
# put back into the empty /run: NixOS keeps its PATH there; DNS when the network is allowed
_RUN_KEPT = ("/run/current-system",)
_RUN_KEPT_WITH_NETWORK = ("/run/systemd/resolve",)
_EMPTIED = ("/tmp", "/run")


@dataclass(frozen=True)
class GitLayout:
    """Where the git repository of a directory keeps its data.

    ``dot_git`` is the ``.git`` file (a linked worktree) or directory found from the directory
    upwards; ``gitdir`` the directory it names (a worktree's own, or ``.git`` itself);
    ``common`` the repository's shared directory (objects, refs, hooks, config).
    """

    dot_git: Path
    gitdir: Path
    common: Path

    @property
    def linked(self) -> bool:
        """True for a linked worktree (its own git directory inside the common one)."""
        return self.gitdir != self.common


def git_layout(root: Path) -> GitLayout | None:
    """The git layout of ``root`` read from its ``.git`` (no git command runs), or None."""
    for directory in (root, *root.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            resolved = dot_git.resolve()
            return GitLayout(dot_git, resolved, resolved)
        if dot_git.is_file():
            try:
                text = dot_git.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return None
            if not text.startswith("gitdir:"):
                return None
            gitdir = (directory / text[len("gitdir:") :].strip()).resolve()
            common = gitdir
            try:
                named = (gitdir / "commondir").read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                named = ""
            if named:
                common = (gitdir / named).resolve()
            return GitLayout(dot_git, gitdir, common)
    return None


def _inside(path: Path, base: Path) -> bool:
    return path == base or path.is_relative_to(base)


def _hide(path: Path) -> list[str]:
    if path.is_dir():
        return ["--tmpfs", str(path)]
    return ["--ro-bind", os.devnull, str(path)]


def _hidden_paths(hidden: Iterable[Path], homes: Iterable[Path], keep: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for home in homes:
        out += [home / rel for rel in CREDENTIAL_PATHS if rel not in keep]
    out += list(hidden)
    seen: dict[Path, None] = {}
    for path in out:
        real = Path(path).resolve()  # bwrap mounts on a link's target: hide the target
        if real.exists():
            seen.setdefault(real, None)
    return list(seen)


def bwrap_argv(
    executable: str,
    argv: Sequence[str],
    *,
    root: Path,
    network: bool,
    hidden: Iterable[Path] = (),
    homes: Iterable[Path] = (),
    keep: Sequence[str] = (),
    read_only: Iterable[Path] = (),
) -> list[str]:
    """``bwrap`` options and ``argv`` after ``--``: see the module docstring.

    ``hidden`` are more paths to hide; ``homes`` the home directories whose credential stores
    (``CREDENTIAL_PATHS``, except those named in ``keep``) are hidden; ``read_only`` paths
    are bound read-only on top (the Claude Code child's scratch directory, which lives in
    ``/tmp``).
    """
    root = root.resolve()
    out = [executable, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]
    if network:
        out.append("--share-net")
    out += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    out += ["--ro-bind", "/proc/sys", "/proc/sys", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    kept = _RUN_KEPT + (_RUN_KEPT_WITH_NETWORK if network else ())
    for run_dir in kept:
        if Path(run_dir).is_dir():
            out += ["--ro-bind", run_dir, run_dir]
    var_run = Path("/var/run")
    if var_run.is_dir() and not var_run.is_symlink():
        out += ["--tmpfs", str(var_run)]
    secret = _hidden_paths(hidden, homes, keep)
    inside = [p for p in secret if _inside(p, root) and p != root]
    # the rest, and what holds the root (the state directory holds the run's worktree);
    # what lies in the empty /tmp or /run is hidden already
    above = [
        p
        for p in secret
        if p not in inside and p != root and not any(_inside(p, Path(d)) for d in _EMPTIED)
    ]
    for secret_path in above:
        out += _hide(secret_path)
    layout = git_layout(root)
    if layout is not None:
        out += ["--ro-bind", str(layout.common), str(layout.common)]
    out += ["--bind", str(root), str(root)]
    for name in _PROTECTED:
        path = str(root / name)
        if os.path.lexists(path):
            out += ["--ro-bind", path, path]
        elif name in _PLACEHOLDERS:  # an empty read-only directory: it cannot be created
            out += ["--tmpfs", path, "--remount-ro", path]
    for secret_path in inside:
        out += _hide(secret_path)
    if layout is not None:
        out += _git_binds(layout)
    for extra in read_only:
        out += ["--ro-bind", str(extra), str(extra)]
    return [*out, "--chdir", str(root), "--", *argv]


def _git_binds(layout: GitLayout) -> list[str]:
    out = ["--ro-bind", str(layout.dot_git), str(layout.dot_git)]
    if not layout.linked:
        return out
    out += ["--bind", str(layout.gitdir), str(layout.gitdir)]
    for name in _GITDIR_PINNED:
        pinned = layout.gitdir / name
        if not pinned.exists() and name == "config.worktree":
            # an empty file git reads as no settings; absent, the command could create it
            # (it applies when the repository enables extensions.worktreeConfig)
            try:
                pinned.touch()
            except OSError:
                continue
        if pinned.exists():
            out += ["--ro-bind", str(pinned), str(pinned)]
    return out
