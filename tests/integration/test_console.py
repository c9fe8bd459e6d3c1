"""The console against the real stack: access rules over HTTP, the views in a real browser.

Every change made from a page must land where the CLI's would: in PostgreSQL and on the
org's audit topic, through the OrgWorkflow.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.async_api import Browser, Page, async_playwright, expect

from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.config import Settings
from kafkaorg.contracts import CreateAgentRequest
from kafkaorg.examples import demo_spec, review_spec
from kafkaorg.kafka import Outgoing, produce_and_wait
from kafkaorg.names import dlq_topic
from kafkaorg.spec import AgentSpec
from tests.browser import CHROMIUM, CHROMIUM_ARGS, start_console
from tests.integration.test_tools import _audit
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import (
    Platform,
    assert_one_clear_line,
    echo_spec,
    run_cli,
    run_cli_async,
    task,
    unique_org,
)

pytestmark = pytest.mark.integration

OPEN_PORT = 18241
GUARDED_PORT = 18242
OPERATOR_TOKEN = "operator-token-for-tests"
VIEWER_TOKEN = "viewer-token-for-tests"


@pytest.fixture(scope="module")
def open_console(stack: Settings, log_dir: Path) -> Iterator[str]:
    """A console on loopback with no token: everyone who reaches it is an operator."""
    handle = start_console(log_dir, OPEN_PORT)
    yield f"http://127.0.0.1:{OPEN_PORT}"
    handle.stop()


@pytest.fixture(scope="module")
def guarded_console(stack: Settings, log_dir: Path) -> Iterator[str]:
    env = {
        "KAFKAORG_CONSOLE_TOKEN": OPERATOR_TOKEN,
        "KAFKAORG_CONSOLE_VIEWER_TOKEN": VIEWER_TOKEN,
    }
    handle = start_console(log_dir, GUARDED_PORT, env, name="guarded-console")
    yield f"http://127.0.0.1:{GUARDED_PORT}"
    handle.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    tab = await context.new_page()
    yield tab
    await context.close()


def _agent_status(settings: Settings, org: str, agent: str) -> str:
    return next(a.status for a in queries.list_agents(settings, org) if a.name == agent)


def _csrf(client: httpx.Client, url: str) -> str:
    client.get(url, headers={"accept": "text/html"})
    return client.cookies["kafkaorg_csrf"]


# ---- access --------------------------------------------------------------------------------


def test_the_console_refuses_to_serve_beyond_loopback_without_a_token(stack: Settings) -> None:
    result = run_cli("console", "--host", "0.0.0.0", "--port", "18243", timeout=30)
    assert_one_clear_line(result, 2, "KAFKAORG_CONSOLE_TOKEN", "0.0.0.0")


async def test_anonymous_requests_are_refused_and_a_viewer_cannot_pause(
    platform: Platform, guarded_console: str
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org))
    agent_url = f"{guarded_console}/orgs/{org}/agents/echo"

    with httpx.Client(base_url=guarded_console) as anonymous:
        assert anonymous.get(f"/orgs/{org}").status_code == 401
        page_ = anonymous.get(f"/orgs/{org}", headers={"accept": "text/html"})
        assert page_.status_code == 401 and "Sign in" in page_.text
        csrf = anonymous.cookies["kafkaorg_csrf"]
        paused = anonymous.post(f"{agent_url}/pause", data={"csrf": csrf})
        assert paused.status_code == 401
        wrong = anonymous.post("/login", data={"csrf": csrf, "token": "guess"})
        assert wrong.status_code == 401

    with httpx.Client(base_url=guarded_console) as viewer:
        csrf = _csrf(viewer, "/login")
        signed_in = viewer.post("/login", data={"csrf": csrf, "token": VIEWER_TOKEN})
        assert signed_in.status_code == 303
        assert viewer.get(f"/orgs/{org}").status_code == 200
        refused = viewer.post(f"{agent_url}/pause", data={"csrf": csrf})
        assert refused.status_code == 403
        assert "viewers cannot change anything" in refused.json()["error"]
    assert _agent_status(platform.settings, org, "echo") == "running"

    bearer = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
    with httpx.Client(base_url=guarded_console, headers=bearer) as operator:
        csrf = _csrf(operator, f"/orgs/{org}")
        forged = operator.post(f"{agent_url}/pause", data={"csrf": "not-the-cookie"})
        assert forged.status_code == 403
        other_site = operator.post(
            f"{agent_url}/pause", data={"csrf": csrf}, headers={"origin": "http://evil.example"}
        )
        assert other_site.status_code == 403
        assert _agent_status(platform.settings, org, "echo") == "running"
        done = operator.post(f"{agent_url}/pause", data={"csrf": csrf})
        assert done.status_code == 303 and "paused" in done.headers["location"]
    assert _agent_status(platform.settings, org, "echo") == "paused"
    audit = await _audit(platform, org, "agent.paused")
    assert audit[0].payload["by"] == "user:console"


# ---- views in a real browser -----------------------------------------------------------------


async def _send_with_cli(org: str, marker: str) -> None:
    """``kafkaorg send`` of one task to the org's inbox, as a user would."""
    payload = json.dumps({"m": marker})
    sent = await asyncio.to_thread(
        run_cli, "send", org, "inbox", "--type", "task.request", "--payload", payload
    )
    assert sent.returncode == 0, sent.stderr


async def test_a_record_sent_with_the_cli_appears_in_the_live_view(
    platform: Platform, open_console: str, page: Page
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org))
    await page.goto(f"{open_console}/orgs/{org}/records")
    await expect(page.locator("#stream-state")).to_have_text("live", timeout=15_000)

    marker = f"hello-{org}"
    await _send_with_cli(org, marker)
    rows = page.locator("#records tbody tr", has_text=marker)
    # The input on inbox and the echo agent's output on outbox, both live.
    await expect(rows).to_have_count(2, timeout=20_000)
    await expect(rows.filter(has_text="outbox")).to_have_count(1)

    # Pausing the view holds new records back until resume.
    await page.click("#pause")
    second = f"second-{org}"
    await _send_with_cli(org, second)
    await expect(page.locator("#stream-state")).to_contain_text("waiting", timeout=20_000)
    await expect(page.locator("#records tbody tr", has_text=second)).to_have_count(0)
    await page.click("#pause")
    await expect(page.locator("#records tbody tr", has_text=second)).to_have_count(
        2, timeout=10_000
    )

    # A filter narrows the stream on the server: only the agent's outputs.
    await page.select_option("select[name=topic]", "outbox")
    await page.fill("#filters input[name=source]", "agent:echo")
    await page.click("#filters button[type=submit]")
    await expect(page.locator("#stream-state")).to_have_text("live", timeout=15_000)
    await expect(page.locator("#records tbody tr", has_text=marker)).to_have_count(
        1, timeout=15_000
    )
    await expect(page.locator("#records tbody tr", has_text="inbox")).to_have_count(0)

    # The record's page: envelope, position, and what it caused.
    await page.locator("#records tbody tr", has_text=marker).locator("a").click()
    await expect(page.locator("h1")).to_contain_text("Record outbox/")
    await expect(page.locator("#causes")).to_contain_text("inbox/")
    await expect(page.locator("#record-value")).to_contain_text(marker)


async def test_pausing_an_agent_from_the_ui_reaches_postgres_and_the_audit_topic(
    platform: Platform, open_console: str, page: Page
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org))
    await page.goto(f"{open_console}/orgs/{org}/agents/echo")
    await page.click("#pause-agent")
    await expect(page.locator(".banner.done")).to_contain_text("paused")
    await expect(page.locator("#agent-status")).to_have_text("paused")
    assert _agent_status(platform.settings, org, "echo") == "paused"
    audit = await _audit(platform, org, "agent.paused")
    assert audit[0].payload["agent"] == "echo"

    await page.click("#resume-agent")
    await expect(page.locator("#agent-status")).to_have_text("running")
    assert _agent_status(platform.settings, org, "echo") == "running"


def _demo_spec(org: str) -> dict[str, Any]:
    return {**demo_spec().model_dump(mode="json", by_alias=True), "org": org}


async def test_the_demo_graph_shows_its_agents_topics_and_edges(
    platform: Platform, open_console: str, page: Page
) -> None:
    org = unique_org()
    await platform.start_org(_demo_spec(org))
    await page.goto(f"{open_console}/orgs/{org}/graph")
    svg = page.locator("#graph svg")
    await expect(svg).to_be_visible()
    for agent in ("triage", "scorer", "recorder"):
        await expect(svg.locator(f'[id="agent:{agent}"]')).to_have_count(1)
    for topic in ("tasks", "triaged", "scored", "results"):
        await expect(svg.locator(f'[id="topic:{topic}"]')).to_have_count(1)
    edges = await svg.locator('[id^="edge|"]').evaluate_all("els => els.map(e => e.id)")
    assert sorted(edges) == sorted(
        [
            "edge|subscribes|topic:tasks|agent:triage",
            "edge|publishes|agent:triage|topic:triaged",
            "edge|subscribes|topic:triaged|agent:scorer",
            "edge|publishes|agent:scorer|topic:scored",
            "edge|subscribes|topic:scored|agent:recorder",
            "edge|publishes|agent:recorder|topic:results",
        ]
    )
    await svg.locator('[id="agent:scorer"] a').first.click()
    await expect(page.locator("h1")).to_contain_text("Agent scorer")


async def test_a_tools_versions_code_and_sandbox_results_are_visible(
    platform: Platform, open_console: str, page: Page, tmp_path: Path
) -> None:
    org = unique_org()
    spec = _demo_spec(org)
    await platform.start_org(spec)
    tool = spec["tools"][0]
    changed = {**tool, "code": tool["code"] + "\n# a second version\n"}
    spec_file = tmp_path / "org.yaml"
    spec_file.write_text(yaml.safe_dump({**spec, "tools": [changed]}))
    assert run_cli("org", "apply", str(spec_file)).returncode == 0

    await page.goto(f"{open_console}/orgs/{org}/tools")
    await page.click(f"text={tool['name']}")
    await expect(page.locator("#current-version")).to_have_text("v2")
    for version in ("v1", "v2"):
        article = page.locator(f"#{version}")
        await expect(article.locator(".test-result")).to_contain_text("3 test(s): passed")
        await expect(article).to_contain_text("by ")
    await page.locator("#v1 summary", has_text="code").click()
    await expect(page.locator("#code-v1")).to_contain_text("def ")
    await page.locator("#v1 summary", has_text="tests").click()
    await expect(page.locator("#tests-v1")).to_contain_text("assert")
    await expect(page.locator("#diff")).to_contain_text("a second version")

    await page.click("#rollback-v1")
    await expect(page.locator(".banner.done")).to_contain_text("v1")
    await expect(page.locator("#current-version")).to_have_text("v1")
    await expect(page.locator("#runs")).to_contain_text("Not called yet")

    # A call of the tool lands in its run history: version, input, result, duration.
    request = task(org, 1)
    request.payload = {"title": "security outage", "priority": "high"}
    await platform.send(org, "tasks", [request])
    await platform.collect(org, "results", 1)
    await page.reload()
    run = page.locator("#runs tbody tr").first
    await expect(run).to_contain_text("v1")
    await expect(run).to_contain_text("scorer")
    await expect(run).to_contain_text('"score": 90')
    await expect(run).to_contain_text("security outage")
    await expect(run).to_contain_text(" ms")
    await expect(page.locator("#runs tbody tr")).to_have_count(1)


async def test_a_types_schema_versions_and_what_each_changed_are_shown(
    platform: Platform, open_console: str, page: Page, tmp_path: Path
) -> None:
    from kafkaorg.schema_registry import store
    from kafkaorg.schema_registry.compatibility import Compatibility

    org = unique_org("ui")
    order = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
    await platform.start_org(
        {
            "org": org,
            "schemas": [{"type": "order.created", "schema": order}],
            "topics": [{"name": "orders", "types": ["order.created"]}],
        }
    )
    # v2 adds a required field: only a FORWARD type takes it.
    v2 = {**order, "properties": {"id": {"type": "string"}, "sku": {"type": "string"}}}
    v2["required"] = ["id", "sku"]
    await asyncio.to_thread(
        store.register, platform.settings, org, "order.created", v2, Compatibility.FORWARD
    )

    await page.goto(f"{open_console}/orgs/{org}")
    await page.click("nav >> text=schemas")
    row = page.locator("#schemas tbody tr", has_text="order.created")
    await expect(row).to_contain_text("v2")
    await expect(row).to_contain_text("FORWARD")
    await row.locator("a").click()
    await expect(page.locator("#latest-version")).to_have_text("v2")
    await expect(page.locator("#compatibility")).to_have_text("FORWARD")
    await expect(page.locator("main")).to_contain_text("carried by orders")
    await expect(page.locator("#v2 .changes")).to_contain_text(
        "$.sku (backward): field made required"
    )
    await expect(page.locator("#schema-v1")).to_contain_text('"required": [')
    assert "sku" not in (await page.locator("#schema-v1").inner_text())


async def test_a_record_whose_payload_is_stored_by_reference_shows_the_payload(
    platform: Platform, open_console: str, page: Page, tmp_path: Path
) -> None:
    org = unique_org("ui")
    await platform.start_org({"org": org, "topics": [{"name": "bulk"}]})
    payload = {"rows": [{"n": i, "text": f"row {i} " * 8} for i in range(6000)]}  # ~480 kB
    source = tmp_path / "big.json"
    source.write_text(json.dumps(payload))
    sent = await run_cli_async(
        "send", org, "bulk", "--type", "bulk.rows", "--payload", f"@{source}"
    )
    assert sent.returncode == 0, sent.stderr

    await page.goto(f"{open_console}/orgs/{org}/records/bulk/0/0")
    await expect(page.locator("main h2", has_text="stored by reference")).to_be_visible()
    await expect(page.locator("#record-value")).to_contain_text('"payload_ref"')
    await expect(page.locator("#stored-payload")).to_contain_text('"text":"row 0 row 0')
    await expect(page.locator("#stored-payload")).to_contain_text("more bytes)")
    href = await page.locator("#payload-link").get_attribute("href")
    assert href is not None
    whole = await page.request.get(f"{open_console}{href}")
    assert whole.ok and json.loads(await whole.body()) == payload
    missing = await page.request.get(f"{open_console}/orgs/{org}/payloads/{'0' * 64}")
    assert missing.status == 404


async def test_a_dlq_entry_is_redriven_from_the_ui(
    platform: Platform, open_console: str, page: Page
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    failed = task(org, 7)
    headers = (
        ("dlq.reason", b"agent-step-failed"),
        ("dlq.error", b"boom: the step failed"),
        ("dlq.agent", b"echo"),
    )
    await asyncio.to_thread(
        produce_and_wait, platform.producer, [Outgoing(dlq_topic(org), failed, headers)]
    )
    await page.goto(f"{open_console}/orgs/{org}/dlq")
    row = page.locator(f'#dlq tr[data-id="{failed.id}"]')
    await expect(row).to_contain_text("agent-step-failed")
    await row.locator("input.pick").check()
    await page.click("#redrive")
    await expect(page.locator(".banner.done")).to_contain_text(f"redrove {failed.id}")
    out = await platform.collect(org, "outbox", 1)
    assert [c.record.causation_id for c in out] == [failed.id]


async def test_the_plan_of_a_changed_spec_is_shown_before_it_is_applied(
    platform: Platform, open_console: str, page: Page
) -> None:
    org = unique_org()
    spec = echo_spec(org)
    await platform.start_org(spec)
    await page.goto(f"{open_console}/apply?org={org}")
    text = await page.locator("#plan-form textarea").input_value()
    assert yaml.safe_load(text)["org"] == org
    changed = {**spec, "topics": [*spec["topics"], {"name": "extra", "class": "work"}]}
    await page.fill("#plan-form textarea", yaml.safe_dump(changed))
    await page.click("#plan-form button")
    await expect(page.locator("#plan")).to_contain_text("+ topic extra")
    topics = [t.name for t in queries.list_topics(platform.settings, org)]
    assert "extra" not in topics  # only planned

    await page.click("#apply-form button")
    await expect(page.locator(".banner.done")).to_contain_text("extra")
    topics = [t.name for t in queries.list_topics(platform.settings, org)]
    assert "extra" in topics

    # A bad spec is refused with its problems listed, nothing applied.
    await page.goto(f"{open_console}/apply")
    await page.fill("#plan-form textarea", "org: Not_An_Org\nagents: 3\n")
    await page.click("#plan-form button")
    await expect(page.locator("#problems")).to_contain_text("problem")


async def test_a_refused_change_is_shown_as_the_cli_shows_it(
    platform: Platform, open_console: str, page: Page, tmp_path: Path
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org))
    agent = {"name": "echo", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
    agent_file = tmp_path / "agent.yaml"
    agent_file.write_text(yaml.safe_dump(agent))
    cli = await asyncio.to_thread(run_cli, "agent", "create", org, str(agent_file))
    assert_one_clear_line(cli, 2, "already exists")

    await page.goto(f"{open_console}/orgs/{org}")
    await page.fill("#create-agent textarea[name=spec]", yaml.safe_dump(agent))
    await page.click("#create-agent button")
    await expect(page.locator(".banner.error")).to_have_text(cli.stderr.strip())


async def _send_steadily(platform: Platform, org: str, seconds: float, per_second: int) -> int:
    sent = 0
    for _ in range(int(seconds)):
        await platform.send(org, "inbox", [task(org, sent + i) for i in range(per_second)])
        sent += per_second
        await asyncio.sleep(1)
    return sent


def _two_agent_spec(org: str) -> dict[str, Any]:
    spec = echo_spec(org)
    spec["topics"].append({"name": "quiet", "class": "work"})
    spec["agents"].append(
        {"name": "idle", "kind": "echo", "subscribes": ["quiet"], "publishes": ["outbox"]}
    )
    return spec


async def test_graph_rates_follow_the_records_from_the_processes_and_from_prometheus(
    platform: Platform, open_console: str, log_dir: Path, page: Page
) -> None:
    org = unique_org()
    await platform.start_org(_two_agent_spec(org))
    busy_in = "edge|subscribes|topic:inbox|agent:echo"
    busy_out = "edge|publishes|agent:echo|topic:outbox"
    idle_in = "edge|subscribes|topic:quiet|agent:idle"
    sending = asyncio.create_task(_send_steadily(platform, org, 40, 20))
    try:
        await page.goto(f"{open_console}/orgs/{org}/graph")
        label = page.locator(f'[id="{busy_in}"] text')
        await expect(label).to_have_text(re.compile(r"^[1-9]\d*\.\d/s$"), timeout=20_000)
        await expect(page.locator("#rates-source")).to_have_text("rates from processes")
        await expect(page.locator(f'[id="{idle_in}"] text')).to_have_text("0.0/s")

        # With Prometheus (the stack's, scraping every process) the rates come from it.
        handle = start_console(
            log_dir,
            18244,
            {"KAFKAORG_PROMETHEUS_URL": f"http://127.0.0.1:{platform.settings.prometheus_port}"},
            name="prometheus-console",
        )
        try:
            async with httpx.AsyncClient(base_url="http://127.0.0.1:18244") as client:
                rates: dict[str, Any] = {}
                for _ in range(60):
                    rates = (await client.get(f"/orgs/{org}/graph/rates")).json()
                    found = rates["rates"]
                    if rates["source"] == "prometheus" and min(
                        found.get(busy_in, 0), found.get(busy_out, 0)
                    ):
                        break
                    await asyncio.sleep(1)
                assert rates["source"] == "prometheus", rates
                assert rates["rates"].get(busy_in, 0) > 0, rates
                assert rates["rates"].get(busy_out, 0) > 0, rates
                assert rates["rates"].get(idle_in, 0) == 0, rates
        finally:
            handle.stop()
    finally:
        sending.cancel()


async def test_an_llm_agents_decisions_are_shown_turn_by_turn(
    platform: Platform, scripted_llm: ScriptedLLM, open_console: str, page: Page
) -> None:
    org = unique_org()
    thinker = f"thinker-{org}"
    await platform.start_org(
        {
            "org": org,
            "topics": [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 1}],
            "agents": [
                {
                    "name": thinker,
                    "kind": "llm",
                    "instructions": "Answer each task on results.",
                    "subscribes": ["tasks"],
                    "publishes": ["results"],
                }
            ],
        }
    )
    scripted_llm.script(
        thinker,
        [
            ScriptedReply(
                tool_calls=[
                    ScriptedToolCall(
                        name="publish",
                        arguments={"topic": "results", "type": "answer", "payload": {"n": 42}},
                    )
                ]
            ),
            ScriptedReply(content="Published the answer to task 7."),
        ],
    )
    await platform.send(org, "tasks", [task(org, 7)])
    await platform.collect(org, "results", 1)
    # The turn joins the workflow's state when the step ends (after the second model call).
    done = await platform.agent_status(org, thinker, lambda s: s.processed >= 1, timeout=60)
    assert done.processed == 1, done

    await page.goto(f"{open_console}/orgs/{org}/agents/{thinker}")
    turn = page.locator("article.turn").first
    await expect(turn.locator("h3")).to_contain_text("turn 1")
    await expect(turn.locator(".input")).to_contain_text("task 7")
    call = turn.locator(".call")
    await expect(call).to_contain_text("publish")
    await expect(call).to_contain_text('"n": 42')
    await expect(call).to_contain_text("→")  # the platform's answer to the call
    await expect(turn.locator(".reply")).to_contain_text("Published the answer to task 7.")
    await expect(page.locator(".facts")).to_contain_text("tokens")


async def test_a_flow_run_is_started_followed_and_approved_from_the_ui(
    platform: Platform, open_console: str, page: Page
) -> None:
    """The review example: started from the flows page, its steps shown as they end, its
    sign-off approved with a reason; the run completes and publishes its result."""
    org = unique_org("conflow")
    await platform.start_org({**review_spec().model_dump(mode="json", by_alias=True), "org": org})
    await page.goto(f"{open_console}/orgs/{org}/flows")
    await expect(page.locator("#flow-runs")).to_contain_text("No runs yet")
    await page.fill("#start-flow textarea[name=input]", '{"topic": "console", "score": 9}')
    await page.click("#start-run")
    await expect(page.locator(".banner.done")).to_contain_text("started run")
    await expect(page.locator("h1")).to_contain_text("of flow review")
    for _ in range(60):  # the page is not live: reload until the run waits for a person
        if await page.locator("#approve").count():
            break
        await asyncio.sleep(0.5)
        await page.reload()
    await expect(page.locator("#waiting-for")).to_have_text("approval:sign-off")
    await expect(page.locator("#current-step")).to_have_text("sign-off")
    steps = page.locator("#steps tbody")
    for step in ("drafts", "verdict", "route"):
        await expect(steps).to_contain_text(step)
    await expect(page.locator("#decisions")).to_contain_text("sign-off")  # the switch's choice

    await page.fill("#decide input[name=reason]", "looks right")
    await page.click("#approve")
    await expect(page.locator(".banner.done")).to_contain_text("step sign-off approved")
    for _ in range(60):
        if (await page.locator("#run-status").inner_text()) == "completed":
            break
        await asyncio.sleep(0.5)
        await page.reload()
    await expect(page.locator("#run-status")).to_have_text("completed")
    decision = page.locator("#decisions tbody tr", has_text="looks right")
    await expect(decision).to_contain_text("user:console")
    await expect(decision).to_contain_text("approve")
    [published] = await platform.collect(org, "results", 1)
    assert published.record.type == "review.published"

    await page.goto(f"{open_console}/orgs/{org}/flows")
    await expect(page.locator("#flow-runs tbody tr")).to_have_count(1)
    await expect(page.locator("#flow-runs")).to_contain_text("completed")
    # A run's page for a run that does not exist says so, as the CLI does.
    await page.goto(f"{open_console}/orgs/{org}/flows/no-such-run")
    await expect(page.locator("body")).to_contain_text("has no flow run 'no-such-run'")


async def test_an_agents_held_request_is_approved_and_another_denied_from_the_approvals_page(
    platform: Platform, open_console: str, page: Page
) -> None:
    """Two agents' requests the org's policy holds: one approved on the page (the agent
    then exists), one denied with a reason; both listed as decided with who decided."""
    org = unique_org("conappr")
    io = {"subscribes": ["inbox"], "publishes": ["outbox"]}
    await platform.start_org(
        {
            "org": org,
            "topics": [{"name": "inbox"}, {"name": "outbox"}],
            "agents": [{"name": "boss", "kind": "echo", "can_create_agents": True, **io}],
            "policy": {"approvals": {"create_agent": {"timeout_s": 600}}},
        }
    )
    held = []
    for name in ("keeper", "dropper"):
        change = await service.create_agent(
            platform.client,
            org,
            CreateAgentRequest(
                agent=AgentSpec.model_validate({"name": name, "kind": "echo", **io}),
                requested_by=f"agent:{org}:boss",
            ),
        )
        assert change.pending_approval is not None
        held.append(change.pending_approval)
    await page.goto(f"{open_console}/orgs/{org}/approvals")
    await expect(page.locator("#waiting tbody tr")).to_have_count(2)
    keeper = page.locator(f"#approval-{held[0]}")
    await expect(keeper).to_contain_text(f"agent:{org}:boss")
    await keeper.locator(".approve").click()
    await expect(page.locator(".banner.done")).to_contain_text("approved")
    await expect(page.locator(".banner.done")).to_contain_text("+ agent keeper")
    dropper = page.locator(f"#approval-{held[1]}")
    await dropper.locator("input[name=reason]").fill("not needed")
    await dropper.locator(".deny").click()
    await expect(page.locator(".banner.done")).to_contain_text("denied")
    await expect(page.locator("#waiting")).to_contain_text("Nothing waits for approval")
    decided = page.locator("#decided tbody tr")
    await expect(decided).to_have_count(2)
    await expect(page.locator("#decided tr", has_text="dropper")).to_contain_text("not needed")
    await expect(page.locator("#decided tr", has_text="keeper")).to_contain_text("user:console")
    names = {a.name for a in await asyncio.to_thread(queries.list_agents, platform.settings, org)}
    assert "keeper" in names and "dropper" not in names
