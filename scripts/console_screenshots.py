"""Screenshots of the console's main views for README, taken in Debian's chromium.

Starts the local stack with its workers (``kafkaorg dev up --workers``), runs the demo
org and sends it a few more tasks and one poison record, holds a few requests of a
second org's agent for approval, then photographs each view:

    .venv/bin/python scripts/console_screenshots.py [--out docs/screenshots]

Leaves the stack running (``kafkaorg dev down`` stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from kafkaorg import client as service
from kafkaorg.client import connect_temporal, launch_org
from kafkaorg.config import get_settings
from kafkaorg.contracts import ApprovalVerdict, CreateAgentRequest, OrgUpdate, PublishRequest
from kafkaorg.devstack import DevStack
from kafkaorg.envelope import new_record
from kafkaorg.kafka import Outgoing, create_producer, produce_and_wait
from kafkaorg.names import kafka_topic
from kafkaorg.schema_registry import store
from kafkaorg.schema_registry.compatibility import Compatibility
from kafkaorg.spec import AgentSpec, validate_spec
from tests.browser import CHROMIUM, CHROMIUM_ARGS

ORG = "demo"
DESK = "desk"
"""A second org whose ``policy.approvals`` holds its agent's requests (the approvals page)."""


def populate() -> None:
    """The demo org with its output, a few tasks more and one record for the DLQ."""
    subprocess.run([sys.executable, "-m", "kafkaorg.cli", "demo"], check=True)
    settings = get_settings()
    producer = create_producer(settings)
    titles = ["Rotate the TLS certificate", "Write the release notes", "Fix the outage runbook"]
    records = [
        new_record(
            org=ORG,
            type="task.request",
            source="user:screenshots",
            payload={"title": title, "priority": priority},
        )
        for title, priority in zip(titles, ["high", "low", "medium"], strict=True)
    ]
    produce_and_wait(producer, [Outgoing(kafka_topic(ORG, "tasks"), r) for r in records])
    producer.produce(kafka_topic(ORG, "tasks"), value=b"not json: a poison record")
    producer.flush(10)


TASK_V1: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "priority": {"enum": ["low", "medium", "high"]},
    },
    "required": ["title"],
}
TASK_V2 = {
    **TASK_V1,
    "properties": {**TASK_V1["properties"], "due": {"type": "string", "format": "date"}},
    "required": ["title", "priority"],
}


def register_schemas() -> None:
    """Two versions of the demo's task.request (the second FORWARD compatible only)."""
    settings = get_settings()
    store.register(settings, ORG, "task.request", TASK_V1)
    store.register(settings, ORG, "task.request", TASK_V2, Compatibility.FORWARD)


async def hold_requests() -> None:
    """Three requests of the desk's agent held for a person; one approved, with a reason."""
    settings = get_settings()
    io = {"subscribes": ["inbox"], "publishes": ["outbox", "ledger"]}
    spec = validate_spec(
        {
            "org": DESK,
            "topics": [{"name": "inbox"}, {"name": "outbox"}, {"name": "ledger", "class": "audit"}],
            "agents": [{"name": "clerk", "kind": "echo", "can_create_agents": True, **io}],
            "policy": {
                "approvals": {
                    "create_agent": {"timeout_s": 86_400},
                    "publish": {"timeout_s": 3600, "default": "approve"},
                }
            },
        }
    )
    await launch_org(settings, spec)
    client = await connect_temporal(settings)
    by = f"agent:{DESK}:clerk"
    held = []
    for name in ("auditor", "translator"):
        agent = AgentSpec.model_validate({"name": name, "kind": "echo", **io})
        change = await service.create_agent(
            client, DESK, CreateAgentRequest(agent=agent, requested_by=by)
        )
        held.append(change.pending_approval)
    entry = new_record(org=DESK, type="ledger.entry", source="agent:clerk", payload={"eur": 120})
    await service.send_update(
        client,
        DESK,
        OrgUpdate.HOLD_PUBLISH,
        PublishRequest(org=DESK, topic="ledger", record=entry, requested_by=by),
    )
    verdict = ApprovalVerdict(id=str(held[0]), approve=True, by="user:ana", reason="needed")
    await service.decide_org_approval(client, DESK, verdict)


async def shoot(page: Page, url: str, path: Path, wait_for: str | None = None) -> None:
    await page.goto(url)
    if wait_for:
        await page.wait_for_selector(wait_for, timeout=20_000)
    await page.wait_for_timeout(1500)
    await page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}")


async def main(out: Path) -> None:
    settings = get_settings()
    base = settings.console_url
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 860})
        await shoot(page, f"{base}/orgs/{ORG}", out / "agents.png", "#agents")
        await page.goto(f"{base}/orgs/{ORG}/records")
        await page.wait_for_selector("#records tbody tr", timeout=20_000)
        await page.wait_for_timeout(1500)
        await page.screenshot(path=str(out / "records.png"))
        print(f"wrote {out / 'records.png'}")
        await page.locator("#records tbody tr a").first.click()
        await page.wait_for_selector("#causes")
        await page.screenshot(path=str(out / "record.png"), full_page=True)
        print(f"wrote {out / 'record.png'}")
        await shoot(page, f"{base}/orgs/{ORG}/graph", out / "graph.png", "#graph svg")
        await shoot(page, f"{base}/orgs/{ORG}/tools/priority_score", out / "tool.png", "#runs")
        await shoot(page, f"{base}/orgs/{ORG}/dlq", out / "dlq.png", "#dlq")
        await shoot(page, f"{base}/orgs/{ORG}/audit", out / "audit.png", "#audit")
        await shoot(page, f"{base}/orgs/{DESK}/approvals", out / "approvals.png", "#waiting")
        await shoot(page, f"{base}/orgs/{ORG}/schemas/task.request", out / "schema.png", "#v2")
        await page.goto(f"{base}/apply?org={ORG}")
        text = await page.locator("#plan-form textarea").input_value()
        changed = text.replace("topics:\n", "topics:\n- {name: escalations, class: work}\n", 1)
        await page.fill("#plan-form textarea", changed)
        await page.click("#plan-form button")
        await page.wait_for_selector("#plan")
        await page.screenshot(path=str(out / "apply.png"), full_page=True)
        print(f"wrote {out / 'apply.png'}")
        await browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    DevStack(get_settings()).up(workers=True)
    populate()
    asyncio.run(hold_requests())
    register_schemas()
    asyncio.run(main(args.out))
