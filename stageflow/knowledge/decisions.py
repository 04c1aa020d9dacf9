"""Runs feed the knowledge base: artifacts are indexed, marked decisions become files.

``KnowledgeRecorder.sink`` is an engine ``EventSink``: the scheduler calls it for the events its
drivers append, so each finished attempt is seen once, by the process that recorded it (two
processes never drive one run at once). It only queues; ``run`` (a background task) or
``drain`` (the CLI, before it exits) does the work:

- every artifact of a finished attempt is indexed (type ``artifact``, with run and stage), so
  "how did we solve X last time" finds it;
- an attempt that finished ``passed`` with a truthy ``outputs.decision`` (``true``, a title, or
  ``{title, status, tags}``) writes its first artifact (the stage's first ``produces`` name) to
  ``.stageflow/knowledge/decisions/<NNNN>-<slug>.md`` with front matter ``type: decision, id,
  title, status, run, stage, attempt, date`` and indexes it. It is a file, so it is versioned
  with the project. A rework of the same stage rewrites the same file (same number and id);
  recording an attempt twice changes nothing.

Numbers are taken with an atomic create (``os.link`` of a complete temporary file), so two
processes recording decisions at once never share a number and readers never see half a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import unicodedata
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import yaml
from anyio.abc import TaskStatus

from stageflow import events as ev
from stageflow.config import Settings
from stageflow.engine.driver import EventSink
from stageflow.engine.state import RunState
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.store.store import Store

__all__ = [
    "Decision",
    "DecisionRecord",
    "FinishedAttempt",
    "KnowledgeRecorder",
    "compose_sinks",
    "decision_of",
    "decisions_dir",
    "slugify",
    "write_decision",
]

log = logging.getLogger(__name__)

DEFAULT_STATUS = "accepted"
SHUTDOWN_DRAIN_S = 5.0  # at most this long is spent on queued attempts when stopping
SLUG_CHARS = 60
_NUMBERED = re.compile(r"^(\d{4,})-.*\.md$")


def decisions_dir(settings: Settings) -> Path:
    """``<project>/.stageflow/knowledge/decisions``."""
    return settings.state_dir / "knowledge" / "decisions"


@dataclass(frozen=True)
class Decision:
    """What a stage's ``outputs.decision`` asks to record."""

    title: str | None
    status: str
    tags: tuple[str, ...] = ()


def decision_of(value: Any) -> Decision | None:
    """``outputs.decision`` read leniently: ``true`` / a title / ``{title, status, tags}``.

    Falsy values (absent, ``false``, ``""``, ``{}``) mean no decision.
    """
    if not value:
        return None
    if isinstance(value, str):
        return Decision(title=value.strip() or None, status=DEFAULT_STATUS)
    if isinstance(value, dict):
        title = value.get("title")
        status = value.get("status")
        tags = value.get("tags")
        return Decision(
            title=(str(title).strip() or None) if title else None,
            status=str(status).strip().lower() if status else DEFAULT_STATUS,
            tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        )
    return Decision(title=None, status=DEFAULT_STATUS)


def slugify(text: str, max_chars: int = SLUG_CHARS) -> str:
    """A file-name slug: ASCII lower-case words joined by ``-`` (``decision`` if none)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_chars:
        slug = slug[:max_chars].rsplit("-", 1)[0] or slug[:max_chars]
    return slug or "decision"


def first_heading(markdown: str) -> str | None:
    """The text of the first ``#`` heading, if any."""
    for line in markdown.splitlines():
        m = re.match(r"^#{1,3}\s+(.+?)\s*#*\s*$", line)
        if m:
            return m.group(1).strip()
    return None


@dataclass(frozen=True)
class DecisionRecord:
    """One decision file's content."""

    run_id: str
    stage: str
    attempt: int
    title: str
    status: str
    date: str  # ISO date (UTC) of the attempt's end
    body: str
    tags: tuple[str, ...] = ()


def _front_matter(text: str) -> dict[str, Any]:
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _existing(folder: Path, run_id: str, stage: str) -> tuple[Path, dict[str, Any]] | None:
    for path in sorted(folder.glob("*.md")):
        try:
            front = _front_matter(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if front.get("run") == run_id and front.get("stage") == stage:
            return path, front
    return None


def _render(doc_id: str, record: DecisionRecord) -> str:
    front: dict[str, Any] = {
        "type": "decision",
        "id": doc_id,
        "title": record.title,
        "status": record.status,
        "run": record.run_id,
        "stage": record.stage,
        "attempt": record.attempt,
        "date": record.date,
    }
    if record.tags:
        front["tags"] = list(record.tags)
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{head}---\n{record.body.rstrip()}\n"


def _next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=0) + 1


def write_decision(folder: Path, record: DecisionRecord) -> Path:
    """Write ``record`` as a new numbered file, or update the file of its run and stage.

    Returns the file's path. An attempt older than (or the same as) the one already written
    changes nothing.
    """
    folder.mkdir(parents=True, exist_ok=True)
    found = _existing(folder, record.run_id, record.stage)
    if found is not None:
        path, front = found
        written = front.get("attempt")
        if isinstance(written, int) and written >= record.attempt:
            return path
        doc_id = str(front.get("id") or f"decisions/{path.stem}")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(_render(doc_id, record), encoding="utf-8")
        tmp.replace(path)  # atomic: a reader sees the old or the new file
        return path
    slug = slugify(record.title)
    tmp = folder / f".{slug}.{os.getpid()}.tmp"
    try:
        number = _next_number(folder)
        while True:
            name = f"{number:04d}-{slug}"
            tmp.write_text(_render(f"decisions/{name}", record), encoding="utf-8")
            path = folder / f"{name}.md"
            try:
                os.link(tmp, path)  # fails if another process took the number first
            except FileExistsError:
                number += 1
                continue
            return path
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@dataclass(frozen=True)
class FinishedAttempt:
    """A finished attempt as the recorder needs it (copied out of the mutable run state)."""

    run_id: str
    at: float
    event: ev.AttemptFinished
    task: str
    produces: tuple[str, ...]


def _decision_artifact(item: FinishedAttempt) -> ev.ArtifactRef | None:
    refs = {a.name: a for a in item.event.artifacts}
    for name in item.produces:
        if name in refs:
            return refs[name]
    return item.event.artifacts[0] if item.event.artifacts else None


class KnowledgeRecorder:
    """Indexes finished attempts' artifacts and writes decisions (see the module docstring)."""

    def __init__(self, store: Store, index: KnowledgeIndex, settings: Settings) -> None:
        self.store = store
        self.index = index
        self.settings = settings
        self._queue: deque[FinishedAttempt] = deque()
        self._wake: anyio.Event | None = None
        self._lock: anyio.Lock | None = None
        self.written: list[Path] = []  # the decision file of each decision recorded, in order

    def sink(self, env: ev.Envelope, state: RunState) -> None:
        """The engine ``EventSink``: queue finished attempts; never blocks, never raises."""
        event = env.event
        if not isinstance(event, ev.AttemptFinished):
            return
        try:
            produces = tuple(state.stage_spec(event.stage).produces)
        except Exception:  # a stage unknown to the spec cannot happen; never break the driver
            produces = ()
        self._queue.append(FinishedAttempt(env.run_id, env.at, event, state.task, produces))
        if self._wake is not None:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Attempts queued and not yet recorded."""
        return len(self._queue)

    async def drain(self) -> None:
        """Record everything queued so far."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            while self._queue:
                item = self._queue[0]
                try:
                    await self.record(item)
                except Exception:  # one bad attempt must not stop the others
                    log.warning(
                        "run %s stage %s: recording knowledge failed",
                        item.run_id,
                        item.event.stage,
                        exc_info=True,
                    )
                # dropped only once handled: a cancelled record is done again (idempotent)
                self._queue.popleft()

    async def run(
        self, stop: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Record queued attempts as they come, until ``stop`` is set (then drain)."""
        self._wake = anyio.Event()
        task_status.started()
        try:
            while not stop.is_set():
                await self.drain()
                with anyio.move_on_after(1.0):  # ``stop`` has no callback: look now and then
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:  # also when cancelled: what was queued is still recorded (briefly)
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_DRAIN_S):
                await self.drain()

    async def record(self, item: FinishedAttempt) -> Path | None:
        """Index the attempt's artifacts; write its decision if it marked one. Returns the
        decision file, if any."""
        contents: dict[str, str] = {}
        for ref in item.event.artifacts:
            art = await self.store.get_artifact(
                item.run_id, item.event.stage, ref.name, ref.version
            )
            contents[ref.name] = art.content
            await self.index.index_artifact(
                run_id=item.run_id,
                stage=item.event.stage,
                name=ref.name,
                version=ref.version,
                content=art.content,
                task=item.task,
            )
        if item.event.outcome != "passed":
            return None
        decision = decision_of(item.event.outputs.get("decision"))
        chosen = _decision_artifact(item)
        if decision is None or chosen is None:
            return None
        body = contents[chosen.name]
        title = decision.title or first_heading(body) or _fallback_title(item)
        record = DecisionRecord(
            run_id=item.run_id,
            stage=item.event.stage,
            attempt=item.event.attempt,
            title=title,
            status=decision.status,
            date=datetime.fromtimestamp(item.at, tz=UTC).date().isoformat(),
            body=body,
            tags=decision.tags,
        )
        path = await anyio.to_thread.run_sync(write_decision, decisions_dir(self.settings), record)
        await self.index.update_paths([path])
        self.written.append(path)
        log.info("run %s stage %s: decision recorded in %s", item.run_id, item.event.stage, path)
        return path


def _fallback_title(item: FinishedAttempt) -> str:
    task = item.task.strip().splitlines()[0] if item.task.strip() else item.run_id
    return f"{item.event.stage}: {task[:80]}"


def compose_sinks(*sinks: EventSink | None) -> EventSink:
    """One ``EventSink`` calling each of ``sinks`` (``None`` entries skipped) in order."""
    live: Sequence[EventSink] = [s for s in sinks if s is not None]

    def sink(env: ev.Envelope, state: RunState) -> None:
        for s in live:
            s(env, state)

    return sink
