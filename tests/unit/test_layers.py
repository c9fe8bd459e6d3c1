"""The layering of DESIGN.md, checked on the source: who may import whom.

Activities, the bridge, the service layer and the CLI address workflows by name
through ``kafkaorg.contracts``; importing ``workflows/`` from them would pull workflow
code into every process and bring back the import cycle activities ↔ workflows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kafkaorg.contracts import AgentQuery, AgentSignal, OrgQuery, OrgSignal, OrgUpdate

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def _sources(*folders: str) -> list[Path]:
    return [p for f in folders for p in sorted((ROOT / f).rglob("*.py"))]


@pytest.mark.parametrize(
    "path",
    [
        *_sources("activities", "bridge", "kafkaorg/contracts", "kafkaorg/cli"),
        ROOT / "kafkaorg/client.py",
        ROOT / "kafkaorg/org_rules.py",
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_workflow_code_is_imported_outside_workflows(path: Path) -> None:
    bad = {m for m in _imports(path) if m == "workflows" or m.startswith("workflows.")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: use kafkaorg.contracts"


@pytest.mark.parametrize(
    "path", _sources("kafkaorg/contracts"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_contracts_do_not_import_the_workflow_sandbox_api(path: Path) -> None:
    assert "temporalio.workflow" not in _imports(path)


def test_the_workflows_register_the_handler_names_clients_use() -> None:
    from temporalio.workflow import _Definition

    from workflows.agent import AgentWorkflow
    from workflows.org import OrgWorkflow

    org = _Definition.must_from_class(OrgWorkflow)
    agent = _Definition.must_from_class(AgentWorkflow)
    assert set(org.updates) == {u.value for u in OrgUpdate}
    assert set(org.signals) == {s.value for s in OrgSignal}
    assert set(org.queries) == {q.value for q in OrgQuery}
    assert set(agent.signals) == {s.value for s in AgentSignal}
    assert set(agent.queries) == {q.value for q in AgentQuery}


@pytest.mark.parametrize(
    "path",
    [p for p in _sources("kafkaorg") if "cli" not in p.relative_to(ROOT / "kafkaorg").parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_shared_domain_code_imports_no_process_or_workflow_code(path: Path) -> None:
    """kafkaorg/ sits below workers/ and workflows/ (the CLI alone starts processes)."""
    bad = {m for m in _imports(path) if m.split(".")[0] in ("workers", "workflows")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
