"""The kafkaorg worker: hosts OrgWorkflow, AgentWorkflow and their activities.

Clients (Kafka producer and admin, SQLAlchemy engine, Temporal client) are built
once here and handed to the activity classes that use them.
"""

from __future__ import annotations

import asyncio
import compileall
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

import workflows
from activities.agent_feed import AgentStatusFeed
from activities.agent_step import AgentStepActivities, PayloadStore
from activities.approvals import ApprovalActivities
from activities.archive import ArchiveActivities
from activities.conversation import ConversationActivities
from activities.directory import DirectoryActivities
from activities.kafka import KafkaActivities
from activities.lifecycle import LifecycleActivities
from activities.mcp_client import McpActivities
from activities.org_requests import OrgRequestActivities
from activities.state import StateActivities
from activities.tool_registry import ToolActivities
from kafkaorg import tracing
from kafkaorg.archive.writer import ArchiveWriter
from kafkaorg.config import Settings
from kafkaorg.db import create_engine, create_sessionmaker
from kafkaorg.kafka import (
    TransactionalProducers,
    check_kafka,
    create_admin,
    create_producer,
)
from kafkaorg.metrics import process_metrics
from kafkaorg.names import TASK_QUEUE
from kafkaorg.schema_registry.cache import SchemaCache
from kafkaorg.temporal import connect_temporal
from kafkaorg.worker_slots import process_worker_id
from workflows.agent import AgentWorkflow
from workflows.archive import ArchiveWorkflow
from workflows.flow import FlowWorkflow
from workflows.llm_graph import langgraph_plugin
from workflows.org import OrgWorkflow

log = logging.getLogger(__name__)

WORKFLOWS = [OrgWorkflow, AgentWorkflow, FlowWorkflow, ArchiveWorkflow]


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    producer = create_producer(settings)
    admin = create_admin(settings)
    engine = create_engine(settings.database_url, pool_size=8)
    sessions = create_sessionmaker(engine)
    kafka = KafkaActivities(producer, admin, settings)
    state = StateActivities(sessions, AgentStatusFeed(producer, admin, settings))
    approvals = ApprovalActivities(sessions)
    transactions: TransactionalProducers | None = None
    if settings.step_transactions:
        prefix = f"kafkaorg-{process_worker_id(settings)}"
        transactions = TransactionalProducers(settings, prefix=prefix)
        # Before polling: a transaction a killed predecessor left open is aborted now.
        transactions.fence_all()
    steps = AgentStepActivities(
        producer,
        settings.max_record_bytes,
        transactions,
        SchemaCache(sessions, ttl_s=settings.schema_cache_ttl_s),
        PayloadStore(sessions, settings.payload_ref_bytes),
    )
    lifecycle = LifecycleActivities(client, settings.agent_lifecycle_concurrency)
    tools = ToolActivities(sessions)
    directory = DirectoryActivities(sessions)
    conversations = ConversationActivities(sessions)
    org_requests = OrgRequestActivities(client)
    mcp = McpActivities(sessions)
    archive = ArchiveActivities(
        client,
        ArchiveWriter(settings, engine, sessions, admin, producer),
        settings.archive_interval_s,
    )
    return Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=WORKFLOWS,
        # llm agents' graphs: model calls become activities (registered by the plugin).
        plugins=[langgraph_plugin()],
        activities=[
            kafka.publish,
            kafka.ensure_topics,
            kafka.delete_topics,
            kafka.missing_topics,
            state.save_org,
            state.save_topic,
            state.register_agent,
            state.set_agent_status,
            state.set_org_status,
            state.load_agent,
            state.flow_run_tokens,
            approvals.record_approval_request,
            approvals.record_approval_verdict,
            approvals.publish_rule,
            steps.run_agent_step,
            steps.publish_emissions,
            tools.propose_version,
            tools.record_test_result,
            tools.load_current,
            tools.record_runs,
            tools.approve,
            tools.rollback,
            lifecycle.start_agents,
            lifecycle.stop_agents,
            lifecycle.stopped_agents,
            lifecycle.command_agent,
            directory.find_tools,
            directory.find_agents,
            directory.find_schemas,
            conversations.archive_turns,
            conversations.recall_turns,
            org_requests.request_create_agent,
            org_requests.request_create_tool,
            mcp.discover_mcp_tools,
            mcp.call_mcp_tool,
            org_requests.request_start_flow,
            org_requests.request_publish,
            archive.archive_org,
            archive.ensure_archive_schedule,
            archive.delete_archive_schedule,
        ],
        activity_executor=executor,
        max_concurrent_activities=16,
        # Idle agents beyond this are evicted: they cost memory again only when a record
        # replays them (their histories stay short: continue-as-new at 1,000 events).
        max_cached_workflows=settings.worker_max_cached_workflows,
        # How soon a killed worker's agents may take their next step on another worker.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.worker_sticky_timeout_s),
    )


def cache_workflow_bytecode() -> None:
    """Write the workflow modules' bytecode even where PYTHONDONTWRITEBYTECODE is set.

    Temporal's sandbox imports a workflow's modules afresh for every workflow instance
    it creates. With no bytecode cached, every new FlowWorkflow run compiled
    ``workflows/flow.py`` from source: in a burst of 60 runs that was most of the
    worker's CPU (py-spy, bench_flows). Stale bytecode is never used (Python checks the
    source's mtime); a read-only tree (an image built without it) is left as it is.
    """
    if sys.dont_write_bytecode:
        compileall.compile_dir(workflows.__path__[0], quiet=2)


async def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then finish in-flight tasks and exit."""
    log.info("worker id %s", process_worker_id(settings))
    cache_workflow_bytecode()
    check_kafka(settings)
    with (
        tracing.process_tracing(settings, tracing.SERVICE_WORKER),
        process_metrics(settings, "worker") as runtime,
    ):
        await _serve(settings, await connect_temporal(settings, runtime))


async def _serve(settings: Settings, client: Client) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity") as executor:
        worker = build_worker(client, settings, executor)
        async with worker:
            log.info("worker polling task queue %r on %s", TASK_QUEUE, settings.temporal_address)
            await stop.wait()
