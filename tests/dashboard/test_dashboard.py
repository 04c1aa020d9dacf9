"""The dashboard over HTTP (a real uvicorn on loopback, a real SQLite project): pages, live
change events, decisions through ``Service.decide``, and the attacks on each."""

from __future__ import annotations

import re
import time
from pathlib import Path

import anyio
import httpx
import pytest

from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import InvalidState
from stageflow.store.rows import RequestRow
from tests.dashboard.harness import GATED, Served, browser_session, csrf_of, served
from tests.engine.harness import Env, FakeRunner, engine_env, wait_until

pytestmark = pytest.mark.anyio


async def _waiting_run(env: Env) -> str:
    run = await env.service.start_run("gated", "build the cache")
    with anyio.fail_after(10):
        await env.scheduler.drive(run.run_id, until="idle")
    return run.run_id


async def _decide(
    client: httpx.AsyncClient, s: Served, run_id: str, **fields: str
) -> httpx.Response:
    page = await client.get(f"/runs/{run_id}")
    data = {"csrf": csrf_of(page.text), "stage": "architecture", **fields}
    return await client.post(
        f"/runs/{run_id}/decide",
        data={k: v for k, v in data.items() if v != "-"},
        headers={"origin": s.origin},
    )


async def test_the_run_list_shows_the_waiting_run_first_and_the_run_page_its_gate(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, GATED) as env:
        waiting = await _waiting_run(env)
        other = await env.service.start_run("gated", "another task")  # pending, created later
        async with served(env) as s, browser_session(s) as client:
            page = await client.get("/")
            assert page.status_code == 200
            html = page.text
            needs = html[html.index('id="needs-you"') : html.index('id="recent"')]
            assert waiting in needs and "approval of <b>architecture</b> (attempt 1)" in needs
            assert other.run_id not in needs and other.run_id in html
            assert page.headers["content-security-policy"].startswith("default-src 'none'")
            run = await client.get(f"/runs/{waiting}")
            assert run.status_code == 200
            assert 'data-stage="architecture" data-status="awaiting_approval"' in run.text
            assert 'name="attempt" value="1"' in run.text
            assert 'id="audit-ok"' in run.text  # the hash chain verifies
            assert "architecture/design attempt 1" in run.text  # the artifact, rendered


async def test_approving_in_the_dashboard_records_the_session_and_the_attempt(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run_id = await _waiting_run(env)
        async with served(env, user="ana") as s, browser_session(s) as client:
            r = await _decide(client, s, run_id, decision="approve", attempt="1")
            assert r.status_code == 303, r.text
            assert r.headers["location"] == f"/runs/{run_id}?done=approve"
            assert s.decided == [run_id]

            async def finished() -> bool:
                return (await env.service.state(run_id)).ended == "completed"

            await wait_until(finished, limit=10)
        events = await env.store.load_events(run_id)
        [decided] = [e.event for e in events if e.event.type == "approval_decided"]
        assert decided.approver == "ana"  # type: ignore[union-attr]
        assert decided.via == "dashboard"  # type: ignore[union-attr]
        assert decided.attempt == 1  # type: ignore[union-attr]


async def test_a_rejection_needs_feedback_and_reworks_the_stage(tmp_path: Path) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run_id = await _waiting_run(env)
        async with served(env) as s, browser_session(s) as client:
            empty = await _decide(client, s, run_id, decision="reject", attempt="1")
            assert empty.status_code == 400 and "a rejection needs feedback" in empty.text
            r = await _decide(
                client, s, run_id, decision="reject", attempt="1", feedback="split the cache"
            )
            assert r.status_code == 303

            async def reworked() -> bool:
                st = (await env.service.state(run_id)).stages["architecture"]
                return st.status == "awaiting_approval" and st.attempt == 2

            await wait_until(reworked, limit=10)
        assert env.runner.calls[-1].feedback == "split the cache"


async def test_a_stale_attempt_is_refused_and_the_gate_still_waits(tmp_path: Path) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run_id = await _waiting_run(env)
        await env.service.decide(
            run_id, stage="architecture", decision="reject", feedback="again", attempt=1
        )
        with anyio.fail_after(10):
            await env.scheduler.drive(run_id, until="idle")
        async with served(env) as s, browser_session(s) as client:
            r = await _decide(client, s, run_id, decision="approve", attempt="1")
            assert r.status_code == 409
            assert "attempt 1 was replaced" in r.text and "attempt 2 waits now" in r.text
            bad = await _decide(client, s, run_id, decision="approve", attempt="one")
            assert bad.status_code == 400 and "attempt must be a number" in bad.text
        st = (await env.service.state(run_id)).stages["architecture"]
        assert st.status == "awaiting_approval" and st.attempt == 2


async def test_a_post_without_the_sessions_csrf_token_is_refused(tmp_path: Path) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run_id = await _waiting_run(env)
        async with served(env) as s, browser_session(s) as client:
            for csrf in ("-", "forged", ""):
                r = await client.post(
                    f"/runs/{run_id}/decide",
                    data={"decision": "approve", "stage": "architecture", "attempt": "1"}
                    | ({} if csrf == "-" else {"csrf": csrf}),
                    headers={"origin": s.origin},
                )
                assert r.status_code == 403 and "CSRF" in r.text
            # a CSRF token of another session does not pass either
            async with browser_session(s) as other:
                theirs = csrf_of((await other.get(f"/runs/{run_id}")).text)
            r = await client.post(
                f"/runs/{run_id}/decide",
                data={"decision": "approve", "stage": "architecture", "csrf": theirs},
                headers={"origin": s.origin},
            )
            assert r.status_code == 403
        assert (await env.service.state(run_id)).stages["architecture"].status == (
            "awaiting_approval"
        )


async def test_wrong_token_missing_session_foreign_host_and_origin_are_refused(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run_id = await _waiting_run(env)
        async with served(env) as s:
            async with httpx.AsyncClient(base_url=s.base, timeout=10) as anon:
                assert (await anon.get("/?token=wrong")).status_code == 401
                assert "stageflow_dashboard" not in str(anon.cookies)
                for path in ("/", f"/runs/{run_id}", "/events", "/costs"):
                    r = await anon.get(path)
                    assert r.status_code == 401, path
                forged = "stageflow_dashboard_x=guess"
                assert (await anon.get("/", headers={"cookie": forged})).status_code == 401
                # DNS rebinding: a page on evil.example resolving to 127.0.0.1
                r = await anon.get(f"/?token={s.token}", headers={"host": "evil.example"})
                assert r.status_code == 421
            async with browser_session(s) as client:
                page = await client.get(f"/runs/{run_id}")
                data = {"csrf": csrf_of(page.text), "decision": "approve", "attempt": "1"}
                url = f"/runs/{run_id}/decide"
                foreign = await client.post(
                    url, data=data, headers={"origin": "http://evil.example"}
                )
                assert foreign.status_code == 403
                no_origin = await client.post(url, data=data)
                assert no_origin.status_code == 403 and "Origin" in no_origin.text
                r = await client.get("/", headers={"origin": "https://evil.example"})
                assert r.status_code == 403
        assert (await env.service.state(run_id)).stages["architecture"].status == (
            "awaiting_approval"
        )


XSS = """# Design <script>alert('h1')</script>

<img src=x onerror="alert(1)"> and <iframe src="https://evil.example"></iframe>

- [click](javascript:alert(document.cookie)) and [data](data:text/html,<script>x</script>)
- **bold "quote" attr** `<b>code</b>` [ok](https://example.com/a?b=1&c=2)

```html
<script>alert('fenced')</script>
```
"""


async def test_script_in_an_artifact_is_shown_as_text_never_run(tmp_path: Path) -> None:
    async def hostile(req: AttemptRequest) -> AttemptResult:
        return AttemptResult(
            status="passed",
            summary="<script>alert('summary')</script>",
            artifacts={"design": XSS},
            runner="fake",
            model="<img src=x onerror=alert(2)>",
        )

    runner = FakeRunner(behaviours={"architecture": hostile})
    async with engine_env(tmp_path, GATED, runner=runner) as env:
        run_id = await _waiting_run(env)
        async with served(env) as s, browser_session(s) as client:
            html = (await client.get(f"/runs/{run_id}")).text
        body = html[html.index("<main>") :]
        assert "<script" not in body and "<img" not in body and "<iframe" not in body
        # every real tag is the dashboard's own: none carries an event handler attribute
        assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", body, re.IGNORECASE)
        assert "&lt;img src=x onerror=alert(2)&gt;" in body  # shown, as text
        assert 'href="javascript' not in body and 'href="data' not in body
        assert "&lt;script&gt;alert(&#x27;h1&#x27;)&lt;/script&gt;" in body
        assert "<h1>Design" in body and "<strong>bold &quot;quote&quot; attr</strong>" in body
        assert "<code>&lt;b&gt;code&lt;/b&gt;</code>" in body
        assert '<a href="https://example.com/a?b=1&amp;c=2" rel=' in body
        # the only scripts the page loads are its own, and the policy forbids inline ones
        assert html.count("<script") == 1 and 'src="/static/dashboard.js"' in html


async def test_the_event_stream_announces_a_change_of_the_run(tmp_path: Path) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run_id = await _waiting_run(env)
        async with served(env, drive=False) as s, browser_session(s) as client:
            lines: list[str] = []
            async with client.stream("GET", f"/events?run={run_id}") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                it = stream.aiter_lines()
                with anyio.fail_after(5):
                    while ": connected" not in lines:
                        lines.append(await it.__anext__())
                await env.service.decide(
                    run_id, stage="architecture", decision="approve", attempt=1
                )
                with anyio.fail_after(5):
                    while "event: change" not in lines:
                        lines.append(await it.__anext__())
            missing = await client.get("/events?run=r-nope")
            assert missing.status_code == 404


async def test_the_costs_page_sums_the_ledger_and_refuses_bad_arguments(tmp_path: Path) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run_id = await _waiting_run(env)
        row = RequestRow(
            stage="architecture", attempt=1, model_requested="m", model="claude-x", cost_usd=0.25
        )
        await env.store.ledger.record(run_id, row, at=time.time())
        async with served(env) as s, browser_session(s) as client:
            page = await client.get("/costs?by=model&since=1d")
            assert page.status_code == 200
            assert '<b id="costs-total">$0.2500</b>' in page.text and "claude-x" in page.text
            for query in ("by=<script>", "since=forever"):
                bad = await client.get(f"/costs?{query}")
                assert bad.status_code == 400 and "<script>" not in bad.text


TWO_OF = """
name: twoof
stages:
  - id: architecture
    agent: worker
    produces: [design]
    approval: {by: human, approvers: [ana, bob, cy], min_approvals: 2}
  - {id: coding, agent: worker, depends_on: [architecture], produces: [patch]}
"""


async def test_two_of_three_one_person_counts_once_across_the_dashboard_and_the_cli(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, TWO_OF) as env:
        run = await env.service.start_run("twoof", "t")
        with anyio.fail_after(10):
            await env.scheduler.drive(run.run_id, until="idle")
        run_id = run.run_id
        async with served(env, user="ana", drive=False) as s, browser_session(s) as client:
            listed = (await client.get("/")).text
            assert "by one of ana, bob, cy (0 of 2 approvals)" in listed
            assert (
                await _decide(client, s, run_id, decision="approve", attempt="1")
            ).status_code == 303
            page = (await client.get(f"/runs/{run_id}")).text
            assert "only a person decides; 1 of 2 approvals (ana)" in page
            # ana again, now from the terminal: the same person, not a second approval
            with pytest.raises(InvalidState, match="ana has already approved attempt 1"):
                await env.service.decide(
                    run_id, stage="architecture", decision="approve", approver="ana",
                    attempt=1, via="cli",
                )  # fmt: skip
            again = await _decide(client, s, run_id, decision="approve", attempt="1")
            assert again.status_code == 409
        await env.service.decide(
            run_id, stage="architecture", decision="approve", approver="bob", attempt=1, via="cli"
        )
        st = (await env.service.state(run_id)).stages["architecture"]
        assert st.status == "succeeded"


async def test_a_dashboard_user_who_is_not_a_named_approver_is_refused(tmp_path: Path) -> None:
    async with engine_env(tmp_path, TWO_OF) as env:
        run = await env.service.start_run("twoof", "t")
        with anyio.fail_after(10):
            await env.scheduler.drive(run.run_id, until="idle")
        async with served(env, user="mallory") as s, browser_session(s) as client:
            r = await _decide(client, s, run.run_id, decision="approve", attempt="1")
            assert r.status_code == 400 and "is not an approver" in r.text
        st = (await env.service.state(run.run_id)).stages["architecture"]
        assert st.status == "awaiting_approval" and st.approvals == ()


async def test_the_workspace_diff_is_shown_live_and_escaped(tmp_path: Path) -> None:
    from stageflow.workspace.view import workspace_probe
    from stageflow.workspace.worktree import prepare_workspace

    async with engine_env(tmp_path, GATED) as env:
        project = env.settings.project
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
        (project / "app.py").write_text("print('old')\n", encoding="utf-8")
        for argv in (["init", "-q"], ["add", "app.py"], ["commit", "-qm", "base"]):
            await anyio.run_process([*git, *argv], cwd=project)
        run_id = await _waiting_run(env)
        ws = prepare_workspace(project, run_id, "worktree")
        (ws.root / "app.py").write_text("print('<script>new</script>')\n", encoding="utf-8")
        env.service.workspace_probe = workspace_probe(project)
        async with served(env) as s, browser_session(s) as client:
            html = (await client.get(f"/runs/{run_id}")).text
        section = html[html.index('id="workspace"') :]
        assert f"on branch <code>stageflow/{run_id}</code>" in section
        assert '<span class="del">-print(&#x27;old&#x27;)</span>' in section
        assert (
            '<span class="add">+print(&#x27;&lt;script&gt;new&lt;/script&gt;&#x27;)</span>'
            in section
        )
