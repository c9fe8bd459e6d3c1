"""The console's routes: each parses a request, calls the service layer, renders a page.

Reads go through ``kafkaorg.org_queries``, ``kafkaorg.org_overview``,
``kafkaorg.record_lookup`` and ``kafkaorg.dlq``; every change through ``kafkaorg.client``
(the OrgWorkflow's updates and validators, the same as the CLI's), and a refusal is shown
as the CLI prints it. Forms post and redirect back (no JavaScript needed to change
anything); the live views use server-sent events.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import yaml
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from sse_starlette.sse import EventSourceResponse
from temporalio.client import Client

from kafkaorg import client as service
from kafkaorg import dlq as dlq_service
from kafkaorg import org_queries as queries
from kafkaorg import payloads
from kafkaorg.config import Settings
from kafkaorg.console.access import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    AccessPolicy,
    Role,
    csrf_ok,
    new_csrf_token,
)
from kafkaorg.console.graph import graph_svg
from kafkaorg.console.live import record_view, stream_batches
from kafkaorg.contracts import (
    AgentAction,
    AgentCommand,
    ApprovalDecision,
    ApprovalStatus,
    ApprovalVerdict,
    ApproveToolRequest,
    ChangeResult,
    CreateAgentRequest,
    CreateTopicRequest,
    RollbackToolRequest,
)
from kafkaorg.edge_rates import ProcessRateMeter, edge_rates
from kafkaorg.errors import BadInputError, KafkaorgError, ServiceUnavailableError
from kafkaorg.llm.conversation import decision_turns
from kafkaorg.llm.models import require_llm_for
from kafkaorg.names import AUDIT_TOPIC, agent_workflow_id, org_workflow_id
from kafkaorg.org_overview import org_graph, org_overview
from kafkaorg.reconcile import diff_specs
from kafkaorg.record_lookup import (
    RecordFilter,
    causation_chain,
    pretty_json,
    read_record,
    recent_records,
)
from kafkaorg.schema_registry import confluent_api
from kafkaorg.schema_registry import store as schema_store
from kafkaorg.spec import (
    AgentSpec,
    SpecError,
    TopicClass,
    TopicSpec,
    parse_document,
    parse_spec_text,
)
from kafkaorg.temporal import connect_temporal
from kafkaorg.tracing import trace_id_of, trace_url

CONSOLE_USER = "user:console"
"""Who the console's changes are requested by, in the audit trail."""
AGENT_ACTIONS = {
    "pause": AgentAction.PAUSE,
    "resume": AgentAction.RESUME,
    "retire": AgentAction.RETIRE,
}

_HERE = files("kafkaorg.console")


class Console:
    """What every route needs: settings, the access policy, a Temporal client (connected
    on first use and again after a failure), the templates."""

    def __init__(self, settings: Settings, policy: AccessPolicy) -> None:
        self.settings = settings
        self.policy = policy
        self._client: Client | None = None
        self.rate_meter = ProcessRateMeter(settings)
        self._lock = asyncio.Lock()
        self.templates = Jinja2Templates(directory=str(Path(str(_HERE)) / "templates"))
        self.templates.env.filters["tojson_pretty"] = lambda v: json.dumps(
            v, indent=2, default=str, ensure_ascii=False
        )
        self.templates.env.globals["quote"] = lambda v: quote(str(v), safe="")

    async def temporal(self) -> Client:
        async with self._lock:
            if self._client is None:
                self._client = await connect_temporal(self.settings)
            return self._client

    async def temporal_or_none(self) -> Client | None:
        try:
            return await self.temporal()
        except KafkaorgError:
            return None


async def form_with_csrf(request: Request) -> dict[str, Any]:
    """The posted form, once its CSRF token checks out (its field left out)."""
    form = await request.form()
    if not csrf_ok(request, str(form.get(CSRF_FIELD) or "")):
        raise HTTPException(403, "the form's CSRF token is missing or stale; reload the page")
    return {k: v for k, v in form.items() if k != CSRF_FIELD}


Checked = Annotated[dict[str, Any], Depends(form_with_csrf)]


def create_app(settings: Settings, policy: AccessPolicy) -> FastAPI:
    console = Console(settings, policy)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(title="kafkaorg console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=str(Path(str(_HERE)) / "static")), name="static")
    app.state.console = console
    app.include_router(confluent_api.build_router(settings))
    app.add_exception_handler(confluent_api.ConfluentError, confluent_api.confluent_error_response)  # type: ignore[arg-type]

    # ---- access ---------------------------------------------------------------------------

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        role = policy.role_of(request)
        request.state.role = role
        public = path in ("/login", "/healthz") or path.startswith("/static/")
        if role == Role.ANONYMOUS and not public:
            if "text/html" in request.headers.get("accept", ""):
                page = console.templates.TemplateResponse(
                    request, "login.html", {**_base(request), "error": None}, status_code=401
                )
                _ensure_csrf(request, page)
                return page
            return JSONResponse({"error": "sign in: this console needs a token"}, status_code=401)
        changes = request.method == "POST" and path not in ("/login", "/logout")
        if changes and role != Role.OPERATOR:
            return _refuse(request, 403, "viewers cannot change anything; sign in as an operator")
        response = await call_next(request)
        _ensure_csrf(request, response)
        return response

    def page(request: Request, template: str, **context: Any) -> HTMLResponse:
        return console.templates.TemplateResponse(request, template, {**_base(request), **context})

    @app.exception_handler(KafkaorgError)
    async def kafkaorg_error(request: Request, exc: KafkaorgError) -> Response:
        status = 400 if isinstance(exc, BadInputError) else 503
        return _refuse(request, status, str(exc))

    @app.exception_handler(SpecError)
    async def spec_error(request: Request, exc: SpecError) -> Response:
        return _refuse(request, 400, f"{exc.source}: " + "; ".join(exc.problems))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _refuse(request, exc.status_code, str(exc.detail))

    def _refuse(request: Request, status: int, message: str) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return console.templates.TemplateResponse(
                request,
                "error.html",
                {**_base(request), "message": message, "status": status},
                status_code=status,
            )
        return JSONResponse({"error": message}, status_code=status)

    def _base(request: Request) -> dict[str, Any]:
        role = getattr(request.state, "role", Role.ANONYMOUS)
        return {
            "role": role.value,
            "operator": role == Role.OPERATOR,
            "csrf": getattr(request.state, "csrf", None) or request.cookies.get(CSRF_COOKIE, ""),
            "temporal_ui": settings.temporal_ui_url,
            "login_needed": not policy.open,
            "done": request.query_params.get("done"),
            "error": request.query_params.get("error"),
        }

    def _ensure_csrf(request: Request, response: Response) -> None:
        if not request.cookies.get(CSRF_COOKIE):
            token = getattr(request.state, "csrf", None) or new_csrf_token()
            response.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="strict")

    @app.middleware("http")
    async def csrf_seed(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Outermost: a first visit's forms carry the token its cookie will hold.
        if not request.cookies.get(CSRF_COOKIE):
            request.state.csrf = new_csrf_token()
        return await call_next(request)

    def back(url: str, result: ChangeResult | None = None, error: str | None = None) -> Response:
        params: dict[str, str] = {}
        if error:
            params["error"] = error
        elif result is not None:
            params["done"] = "; ".join(result.summary) or (
                "changed" if result.changed else "nothing to change"
            )
        sep = "&" if "?" in url else "?"
        return RedirectResponse(url + (sep + urlencode(params) if params else ""), status_code=303)

    async def change(url: str, call: Callable[[Client], Awaitable[ChangeResult]]) -> Response:
        """A change through the OrgWorkflow; a refusal comes back as the CLI's line."""
        try:
            result = await call(await console.temporal())
        except KafkaorgError as exc:
            return back(url, error=str(exc))
        return back(url, result)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html")

    @app.post("/login")
    async def login(request: Request, form: Checked) -> Response:
        role = policy.role_of_token(str(form.get("token", "")))
        if role == Role.ANONYMOUS:
            refused = page(request, "login.html", error="that token is not valid")
            refused.status_code = 401
            return refused
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, policy.session_value(role), httponly=True, samesite="strict"
        )
        return response

    @app.post("/logout")
    async def logout(form: Checked) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ---- orgs and agents --------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        orgs = await asyncio.to_thread(queries.list_orgs, settings)
        return page(request, "orgs.html", orgs=orgs)

    @app.get("/orgs/{org}", response_class=HTMLResponse)
    async def org_page(request: Request, org: str) -> HTMLResponse:
        overview = await org_overview(settings, await console.temporal_or_none(), org)
        return page(
            request,
            "org.html",
            org=org,
            overview=overview,
            workflow_url=settings.temporal_ui_workflow_url(org_workflow_id(org)),
            org_workflows_url=settings.temporal_ui_org_url(org),
            classes=[c.value for c in TopicClass],
        )

    @app.get("/orgs/{org}/agents/{agent}", response_class=HTMLResponse)
    async def agent_page(request: Request, org: str, agent: str) -> HTMLResponse:
        rows = await asyncio.to_thread(queries.list_agents, settings, org)
        row = next((r for r in rows if r.name == agent), None)
        if row is None:
            raise BadInputError(f"org {org!r} has no agent {agent!r}")
        spec = await asyncio.to_thread(queries.current_spec, settings, org)
        agent_spec = next((a for a in spec.agents if a.name == agent), None) if spec else None
        client = await console.temporal_or_none()
        report = conversation = None
        if client is not None:
            try:
                report = await service.agent_report(client, org, agent)
                if row.kind == "llm":
                    conversation = await service.agent_conversation(client, org, agent)
            except Exception:
                report = report or None
        archived = await asyncio.to_thread(queries.conversation_turns, settings, org, agent)
        turns = []
        for item in archived:
            turns += decision_turns(item.messages, first_turn=item.turn, archived=True)
        if conversation is not None:
            turns += decision_turns(
                conversation.messages, first_turn=conversation.archived_turns + 1
            )
        usage = await asyncio.to_thread(queries.org_usage, settings, org)
        spec_yaml = (
            yaml.safe_dump(
                agent_spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                sort_keys=False,
            )
            if agent_spec
            else ""
        )
        return page(
            request,
            "agent.html",
            org=org,
            row=row,
            report=report,
            turns=list(reversed(turns)),
            tokens=usage.agents.get(agent),
            spec_yaml=spec_yaml,
            workflow_url=settings.temporal_ui_workflow_url(agent_workflow_id(org, agent)),
        )

    @app.post("/orgs/{org}/agents/{agent}/{action}")
    async def agent_action(org: str, agent: str, action: str, form: Checked) -> Response:
        url = f"/orgs/{org}/agents/{agent}"
        if action == "spec":
            return await change_spec(org, agent, str(form.get("spec", "")), url)
        if action not in AGENT_ACTIONS:
            raise HTTPException(404, f"no agent action {action!r} (pause, resume, retire, spec)")
        request = AgentCommand(
            agent=agent,
            action=AGENT_ACTIONS[action],
            reason=str(form.get("reason", "")),
            requested_by=CONSOLE_USER,
        )
        return await change(url, lambda c: service.change_agent(c, org, request))

    async def change_spec(org: str, agent: str, text: str, url: str) -> Response:
        """A new spec for one agent: the org's spec with that agent replaced, applied."""
        try:
            agent_spec = _agent_spec_from_text(text)
        except BadInputError as exc:
            return back(url, error=str(exc))
        if agent_spec.name != agent:
            return back(url, error=f"the spec names agent {agent_spec.name!r}, not {agent!r}")
        current = await asyncio.to_thread(queries.current_spec, settings, org)
        if current is None:
            return back(url, error=f"org {org!r} has no spec recorded")
        agents = [agent_spec if a.name == agent else a for a in current.agents]
        desired = current.model_copy(update={"agents": agents})
        return await change(url, lambda c: service.apply_spec(c, desired))

    @app.post("/orgs/{org}/agents")
    async def create_agent(org: str, form: Checked) -> Response:
        url = f"/orgs/{org}"
        try:
            if str(form.get("spec", "")).strip():
                spec = _agent_spec_from_text(str(form["spec"]))
            else:
                spec = AgentSpec.model_validate(
                    {
                        "name": form.get("name"),
                        "kind": form.get("kind"),
                        "subscribes": _names(form.get("subscribes")),
                        "publishes": _names(form.get("publishes")),
                        **(
                            {"instructions": form["instructions"]}
                            if form.get("instructions")
                            else {}
                        ),
                    }
                )
        except ValidationError as exc:
            return back(url, error=_first_problem(exc))
        except BadInputError as exc:
            return back(url, error=str(exc))
        try:
            require_llm_for([spec], settings)
        except KafkaorgError as exc:
            return back(url, error=str(exc))
        request = CreateAgentRequest(agent=spec, requested_by=CONSOLE_USER)
        return await change(url, lambda c: service.create_agent(c, org, request))

    @app.post("/orgs/{org}/topics")
    async def create_topic(org: str, form: Checked) -> Response:
        url = f"/orgs/{org}"
        try:
            topic = TopicSpec.model_validate(
                {
                    "name": form.get("name"),
                    "class": form.get("class", "work"),
                    "partitions": int(form.get("partitions") or 1),
                }
            )
        except (ValidationError, ValueError) as exc:
            return back(url, error=_first_problem(exc))
        request = CreateTopicRequest(topic=topic, requested_by=CONSOLE_USER)
        return await change(url, lambda c: service.create_topic(c, org, request))

    # ---- apply a spec, plan first --------------------------------------------------------

    @app.get("/apply", response_class=HTMLResponse)
    async def apply_form(request: Request, org: str | None = None) -> HTMLResponse:
        text = ""
        if org:
            spec = await asyncio.to_thread(queries.current_spec, settings, org)
            if spec is not None:
                text = yaml.safe_dump(
                    spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                    sort_keys=False,
                )
        return page(request, "apply.html", spec_text=text, plan=None, problems=[])

    @app.post("/apply/plan", response_class=HTMLResponse)
    async def apply_plan(request: Request, form: Checked) -> HTMLResponse:
        text = str(form.get("spec", ""))
        try:
            spec = parse_spec_text(text, source="pasted spec")
        except SpecError as exc:
            return page(request, "apply.html", spec_text=text, plan=None, problems=exc.problems)
        diff = diff_specs(await asyncio.to_thread(queries.current_spec, settings, spec.org), spec)
        return page(
            request,
            "apply.html",
            spec_text=text,
            plan=diff.summary_lines(),
            problems=diff.problems,
            empty=diff.is_empty,
            org=spec.org,
        )

    @app.post("/apply")
    async def apply(form: Checked) -> Response:
        text = str(form.get("spec", ""))
        try:
            spec = parse_spec_text(text, source="pasted spec")
        except SpecError as exc:
            return back("/apply", error=f"{exc.source}: " + "; ".join(exc.problems))
        try:
            require_llm_for(spec.agents, settings)
        except KafkaorgError as exc:
            return back("/apply", error=str(exc))
        return await change(
            f"/orgs/{spec.org}", lambda c: service.apply_or_launch(settings, c, spec)
        )

    # ---- records ------------------------------------------------------------------------

    @app.get("/orgs/{org}/records", response_class=HTMLResponse)
    async def records_page(request: Request, org: str) -> HTMLResponse:
        topics = await asyncio.to_thread(queries.list_topics, settings, org)
        names = [t.name for t in topics] + [AUDIT_TOPIC, "sys.dlq"]
        return page(request, "records.html", org=org, topics=names, filters=request.query_params)

    @app.get("/orgs/{org}/records/stream")
    async def records_stream(
        request: Request,
        org: str,
        topic: str | None = None,
        type: str | None = None,
        source: str | None = None,
        correlation_id: str | None = None,
        text: str | None = None,
        backlog: Annotated[int, Query(ge=0, le=500)] = 20,
    ) -> EventSourceResponse:
        await asyncio.to_thread(queries.list_topics, settings, org)  # unknown org: 400
        wanted = RecordFilter(
            topic=topic or None,
            type=type or None,
            source=source or None,
            correlation_id=correlation_id or None,
            text=text or None,
        )

        async def events() -> AsyncIterator[dict[str, str]]:
            async for batch in stream_batches(
                settings, org, wanted, backlog, request.is_disconnected
            ):
                yield {"event": "records", "data": batch.model_dump_json()}

        return EventSourceResponse(events(), ping=10)

    @app.get("/orgs/{org}/records/{topic}/{partition}/{offset}", response_class=HTMLResponse)
    async def record_page(
        request: Request, org: str, topic: str, partition: int, offset: int
    ) -> HTMLResponse:
        item = await asyncio.to_thread(read_record, settings, org, topic, partition, offset)
        candidates = await asyncio.to_thread(recent_records, settings, org)
        chain = causation_chain(item, candidates)
        handlers = []
        if item.record is not None and not topic.startswith("sys."):
            agents = await asyncio.to_thread(queries.list_agents, settings, org, topic=topic)
            handlers = [
                (a.name, settings.temporal_ui_workflow_url(agent_workflow_id(org, a.name)))
                for a in agents
                if topic in a.subscribes
            ]
        producer = None
        if item.record is not None and item.record.source.startswith("agent:"):
            name = item.record.source.removeprefix("agent:")
            producer = (name, settings.temporal_ui_workflow_url(agent_workflow_id(org, name)))
        trace_id = trace_id_of(item.headers)
        stored = None
        if item.record is not None and item.record.payload_ref is not None:
            ref = item.record.payload_ref
            data = await asyncio.to_thread(payloads.stored, settings, org, ref.sha256)
            stored = StoredPayload(
                size=ref.size,
                url=f"/orgs/{quote(org)}/payloads/{ref.sha256}",
                preview=None if data is None else _payload_preview(data),
            )
        return page(
            request,
            "record.html",
            stored=stored,
            org=org,
            item=item,
            trace=(trace_id, trace_url(settings, trace_id)) if trace_id else None,
            view=record_view(item),
            value=pretty_json(item.raw),
            chain=chain,
            handlers=handlers,
            producer=producer,
        )

    @app.get("/orgs/{org}/payloads/{sha256}")
    async def stored_payload(org: str, sha256: str) -> Response:
        """A payload stored by reference, whole (its record carries only the hash)."""
        data = await asyncio.to_thread(payloads.stored, settings, org, sha256)
        if data is None:
            raise HTTPException(404, f"org {org!r} has no stored payload {sha256[:12]}…")
        return Response(data, media_type="application/json")

    # ---- graph --------------------------------------------------------------------------

    @app.get("/orgs/{org}/graph", response_class=HTMLResponse)
    async def graph_page(request: Request, org: str) -> HTMLResponse:
        graph = await asyncio.to_thread(org_graph, settings, org)
        svg = await asyncio.to_thread(graph_svg, graph)
        return page(request, "graph.html", org=org, graph=graph, svg=svg)

    @app.get("/orgs/{org}/graph/rates")
    async def graph_rates(org: str) -> JSONResponse:
        await asyncio.to_thread(queries.list_topics, settings, org)  # unknown org: 400
        rates = await asyncio.to_thread(edge_rates, settings, console.rate_meter, org)
        return JSONResponse(rates.model_dump())

    @app.get("/orgs/{org}/graph.json")
    async def graph_json(org: str) -> JSONResponse:
        graph = await asyncio.to_thread(org_graph, settings, org)
        return JSONResponse(graph.model_dump(mode="json"))

    # ---- record schemas -----------------------------------------------------------------

    @app.get("/orgs/{org}/schemas", response_class=HTMLResponse)
    async def schemas_page(request: Request, org: str) -> HTMLResponse:
        types = await asyncio.to_thread(schema_store.list_types, settings, org)
        return page(request, "schemas.html", org=org, types=types)

    @app.get("/orgs/{org}/schemas/{record_type}", response_class=HTMLResponse)
    async def schema_page(request: Request, org: str, record_type: str) -> HTMLResponse:
        detail = await asyncio.to_thread(schema_store.type_detail, settings, org, record_type)
        return page(request, "schema.html", org=org, detail=detail)

    # ---- tools --------------------------------------------------------------------------

    @app.get("/orgs/{org}/tools", response_class=HTMLResponse)
    async def tools_page(request: Request, org: str) -> HTMLResponse:
        tools = await asyncio.to_thread(queries.list_tools, settings, org)
        return page(request, "tools.html", org=org, tools=tools)

    @app.get("/orgs/{org}/tools/{tool}", response_class=HTMLResponse)
    async def tool_page(
        request: Request, org: str, tool: str, a: int | None = None, b: int | None = None
    ) -> HTMLResponse:
        detail = await asyncio.to_thread(queries.tool_detail, settings, org, tool)
        runs = await asyncio.to_thread(queries.tool_runs, settings, org, tool)
        by_version = {v.version: v for v in detail.versions}
        diff_html = None
        if len(by_version) > 1:
            newest = detail.versions[0].version
            b = b if b in by_version else newest
            a = a if a in by_version else max((v for v in by_version if v < b), default=b)
            if a != b:
                diff_html = difflib.HtmlDiff(wrapcolumn=90).make_table(
                    by_version[a].code.splitlines(),
                    by_version[b].code.splitlines(),
                    f"v{a}",
                    f"v{b}",
                    context=True,
                    numlines=3,
                )
        return page(
            request, "tool.html", org=org, detail=detail, diff_html=diff_html, a=a, b=b, runs=runs
        )

    @app.post("/orgs/{org}/tools/{tool}/{action}")
    async def tool_action(org: str, tool: str, action: str, form: Checked) -> Response:
        url = f"/orgs/{org}/tools/{tool}"
        try:
            version = int(form.get("version", ""))
        except ValueError:
            return back(url, error="version must be a number")
        if action == "approve":
            approve = ApproveToolRequest(tool=tool, version=version, approved_by=CONSOLE_USER)
            return await change(url, lambda c: service.approve_tool(c, org, approve))
        if action == "rollback":
            rollback = RollbackToolRequest(tool=tool, version=version, requested_by=CONSOLE_USER)
            return await change(url, lambda c: service.rollback_tool(c, org, rollback))
        raise HTTPException(404, f"no tool action {action!r} (approve, rollback)")

    # ---- flows --------------------------------------------------------------------------

    @app.get("/orgs/{org}/flows", response_class=HTMLResponse)
    async def flows_page(request: Request, org: str) -> HTMLResponse:
        client = await console.temporal()
        runs = await service.list_flows(client, org)
        current = await asyncio.to_thread(queries.current_spec, settings, org)
        flows = current.flows if current is not None else []
        return page(request, "flows.html", org=org, runs=runs, flows=flows)

    @app.post("/orgs/{org}/flows")
    async def flow_start(org: str, form: Checked) -> Response:
        url = f"/orgs/{org}/flows"
        flow = str(form.get("flow", "")).strip()
        try:
            data = json.loads(str(form.get("input", "") or "{}"))
        except json.JSONDecodeError as exc:
            return back(url, error=f"input is not JSON: {exc.msg} (line {exc.lineno})")
        if not isinstance(data, dict):
            return back(url, error="input must be a JSON object")
        try:
            handle = await service.start_flow(await console.temporal(), org, flow, data)
        except KafkaorgError as exc:
            return back(url, error=str(exc))
        run = handle.id.rsplit(":", 1)[-1]
        return back(f"/orgs/{org}/flows/{run}", ChangeResult(changed=True, summary=[
            f"started run {run} of flow {flow}"]))  # fmt: skip

    @app.get("/orgs/{org}/flows/{run}", response_class=HTMLResponse)
    async def flow_page(request: Request, org: str, run: str) -> HTMLResponse:
        report = await service.flow_status(await console.temporal(), org, run)
        waiting = [w.removeprefix("approval:") for w in report.waiting_for]
        approval = next(
            (s for w, s in zip(report.waiting_for, waiting, strict=True) if w != s), None
        )
        return page(
            request,
            "flow.html",
            org=org,
            report=report,
            approval_step=approval,
            state=report.state.model_dump(mode="json", exclude={"history", "decisions"}),
            temporal_url=settings.temporal_ui_workflow_url(report.workflow_id),
        )

    @app.post("/orgs/{org}/flows/{run}/decide")
    async def flow_decide(org: str, run: str, form: Checked) -> Response:
        url = f"/orgs/{org}/flows/{run}"
        verdict = str(form.get("verdict", ""))
        if verdict not in ("approve", "deny"):
            return back(url, error="choose approve or deny")
        decision = ApprovalDecision(
            step=str(form.get("step", "")),
            approve=verdict == "approve",
            by=CONSOLE_USER,
            reason=str(form.get("reason", "")).strip(),
        )
        try:
            decided = await service.decide_approval(await console.temporal(), org, run, decision)
        except KafkaorgError as exc:
            return back(url, error=str(exc))
        done = "approved" if decided.approve else "denied"
        return back(url, ChangeResult(changed=True, summary=[f"step {decided.step} {done}"]))

    # ---- approvals ----------------------------------------------------------------------

    @app.get("/orgs/{org}/approvals", response_class=HTMLResponse)
    async def approvals_page(request: Request, org: str) -> HTMLResponse:
        rows = await asyncio.to_thread(queries.list_approvals, settings, org, include_decided=True)
        waiting = [r for r in rows if r.status is ApprovalStatus.PENDING]
        decided = sorted(
            (r for r in rows if r.status is not ApprovalStatus.PENDING),
            key=lambda r: r.decided_at or r.requested_at,
            reverse=True,
        )
        return page(request, "approvals.html", org=org, waiting=waiting, decided=decided)

    @app.post("/orgs/{org}/approvals/{approval_id}")
    async def approval_decide(org: str, approval_id: str, form: Checked) -> Response:
        url = f"/orgs/{org}/approvals"
        verdict = str(form.get("verdict", ""))
        if verdict not in ("approve", "deny"):
            return back(url, error="choose approve or deny")
        try:
            approval = await asyncio.to_thread(queries.find_approval, settings, org, approval_id)
            decided = await service.decide(
                await console.temporal(),
                approval,
                ApprovalVerdict(
                    id=approval_id,
                    approve=verdict == "approve",
                    by=CONSOLE_USER,
                    reason=str(form.get("reason", "")).strip(),
                ),
            )
        except KafkaorgError as exc:
            return back(url, error=str(exc))
        word = "approved" if decided.approved else "denied"
        summary = [f"{decided.id} ({decided.kind.value} {decided.subject}) {word}"]
        if decided.outcome:
            summary.append(decided.outcome)
        return back(url, ChangeResult(changed=True, summary=summary))

    # ---- DLQ and audit ------------------------------------------------------------------

    @app.get("/orgs/{org}/dlq", response_class=HTMLResponse)
    async def dlq_page(request: Request, org: str) -> HTMLResponse:
        entries = await asyncio.to_thread(dlq_service.list_dlq, settings, org, 500)
        return page(request, "dlq.html", org=org, entries=list(reversed(entries)))

    @app.post("/orgs/{org}/dlq/redrive")
    async def dlq_redrive(org: str, form: Checked) -> Response:
        url = f"/orgs/{org}/dlq"
        ids = [i for i in str(form.get("ids", "")).split(",") if i]
        if not ids:
            return back(url, error="choose the entries to redrive")
        try:
            result = await asyncio.to_thread(dlq_service.redrive_dlq, settings, org, ids)
        except KafkaorgError as exc:
            return back(url, error=str(exc))
        summary = [f"redrove {o.id} to {o.topic}" for o in result.outcomes if o.redriven]
        summary += [f"{o.id} not redriven: {o.reason}" for o in result.refused]
        return back(url, ChangeResult(changed=bool(result.produced), summary=summary))

    @app.get("/orgs/{org}/audit", response_class=HTMLResponse)
    async def audit_page(request: Request, org: str) -> HTMLResponse:
        records = await asyncio.to_thread(recent_records, settings, org, 500)
        audit = sorted(
            (r for r in records if r.topic == AUDIT_TOPIC),
            key=lambda r: (r.record.timestamp.isoformat() if r.record else "", r.offset),
            reverse=True,
        )
        return page(request, "audit.html", org=org, records=[record_view(r) for r in audit])

    return app


PAYLOAD_PREVIEW_BYTES = 64_000
"""A stored payload's page shows this much of it; the link serves it whole."""


class StoredPayload(BaseModel):
    size: int
    url: str
    preview: str | None
    """None: not stored (collected after its retention)."""


def _payload_preview(data: bytes) -> str:
    if len(data) <= PAYLOAD_PREVIEW_BYTES:
        return pretty_json(data.decode("utf-8", errors="replace"))
    head = data[:PAYLOAD_PREVIEW_BYTES].decode("utf-8", errors="ignore")
    return f"{head}… ({len(data) - PAYLOAD_PREVIEW_BYTES:,} more bytes)"


def _names(value: object) -> list[str]:
    return [n.strip() for n in str(value or "").replace(",", " ").split() if n.strip()]


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg'].removeprefix('Value error, ')}" if where else first["msg"]
    return str(exc)


def _agent_spec_from_text(text: str) -> AgentSpec:
    try:
        data = parse_document(text, source="agent spec")
    except SpecError as exc:
        raise BadInputError(f"{exc.source}: {'; '.join(exc.problems)}") from None
    try:
        return AgentSpec.model_validate(data)
    except ValidationError as exc:
        raise BadInputError(f"agent spec: {_first_problem(exc)}") from None


__all__ = ["ServiceUnavailableError", "create_app"]
