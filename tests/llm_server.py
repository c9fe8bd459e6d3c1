"""A local OpenAI-compatible chat-completions server with scripted replies.

The only stand-in the test suite allows: these machines reach no model
provider. It is a real HTTP server, so the worker's real LangChain client, its
timeouts and its retries are exercised. Replies are scripted per agent, told
apart by the first line of the system prompt (``You are agent <name> of org <org>.``).

A scripted reply can also be what goes wrong with real providers: an error status
with an OpenAI-style error body (429, 500, 503), a delay before answering (for the
client's timeout), malformed tool calls (arguments that are not JSON, a tool that
does not exist, arguments that fail validation) and a reply with neither content
nor tool calls.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from pydantic import BaseModel, Field

AGENT_LINE = re.compile(r"^You are agent (\S+) of org (\S+)\.", re.MULTILINE)

Messages = list[dict[str, Any]]


ERROR_TYPES = {400: "invalid_request_error", 429: "rate_limit_error", 404: "not_found"}
"""OpenAI's ``error.type`` per status; any other status is a ``server_error``."""


class ScriptedToolCall(BaseModel):
    """One tool call; ``name`` need not be a tool the agent has (an unknown tool)."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str | None = None
    """Sent verbatim instead of ``arguments`` (e.g. text that is not JSON)."""
    id: str | None = None
    """Generated (``call_<n>``) when not given."""


class ScriptedReply(BaseModel):
    """What the "model" answers to one request.

    Without content and tool calls it is the empty reply a weak model sometimes gives.
    """

    content: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    prompt_tokens: int = 11
    completion_tokens: int = 7
    status: int = 200
    """Anything but 200 answers with an OpenAI-style error body instead of a completion."""
    error: str | None = None
    """The error body's message (a default names the status)."""
    delay_s: float = 0.0
    """Seconds to wait before answering (past the client's timeout, the client gives up)."""
    retry_after_s: int | None = None
    """Sent as a ``Retry-After`` header (with an error status: how long a provider asks
    its clients to wait)."""

    @classmethod
    def failure(cls, status: int, message: str | None = None, **fields: Any) -> ScriptedReply:
        """An error status (429, 500, 503, ...) with an OpenAI-style error body."""
        return cls(status=status, error=message, **fields)


ReplyFactory = Callable[[Messages], ScriptedReply]


def tool_call(tool: str, /, **arguments: Any) -> ScriptedReply:
    """A reply that calls one tool with these arguments."""
    return ScriptedReply(tool_calls=[ScriptedToolCall(name=tool, arguments=arguments)])


def tool_results(messages: Messages) -> list[dict[str, Any]]:
    """The JSON answers of the tool messages the platform sent the model, in order."""
    return [json.loads(m["content"]) for m in messages if m.get("role") == "tool"]


class _Rule(BaseModel):
    when: Callable[[Messages], bool]
    reply: ScriptedReply | ReplyFactory
    times: int | None = 1
    """How often it may still fire; ``None``: every time ``when`` holds."""

    def fires(self, messages: Messages) -> bool:
        if self.times == 0 or not self.when(messages):
            return False
        if self.times is not None:
            self.times -= 1
        return True


class _Answer(BaseModel):
    status: int
    body: dict[str, Any]
    delay_s: float = 0.0
    retry_after_s: int | None = None


class ScriptedLLM:
    """Replies per agent, in order; conditional rules are checked first (once each, or as
    often as told)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[ScriptedReply | ReplyFactory]] = {}
        self._rules: dict[str, list[_Rule]] = {}
        self._ids = itertools.count(1)
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        """``time.monotonic()`` of each request, in the order of ``requests``."""
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        """Per org: the most requests it had open at once (answered or not)."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- scripting -----------------------------------------------------------------

    def script(self, agent: str, replies: list[ScriptedReply | ReplyFactory]) -> None:
        """Append replies for ``agent``; each request takes the next one."""
        with self._lock:
            self._queues.setdefault(agent, []).extend(replies)

    def add_rule(
        self,
        agent: str,
        when: Callable[[Messages], bool],
        reply: ScriptedReply | ReplyFactory,
        times: int | None = 1,
    ) -> None:
        """Answer the first ``times`` requests of ``agent`` whose messages satisfy ``when``
        with ``reply`` (``times=None``: all of them, e.g. a provider that stays down)."""
        with self._lock:
            self._rules.setdefault(agent, []).append(_Rule(when=when, reply=reply, times=times))

    def requests_for(self, agent: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if _agent_of(r) == agent]

    async def wait_for_requests(
        self, agent: str, count: int, timeout: float = 60
    ) -> list[dict[str, Any]]:
        """The first ``count`` requests of ``agent``, once they have come."""
        deadline = time.monotonic() + timeout
        while len(self.requests_for(agent)) < count:
            assert time.monotonic() < deadline, self.requests_for(agent)
            await asyncio.sleep(0.2)
        return self.requests_for(agent)[:count]

    def arrivals_for(self, agent: str) -> list[float]:
        """When each of ``agent``'s requests came in (``time.monotonic()``)."""
        with self._lock:
            return [t for r, t in zip(self.requests, self.arrivals, strict=True)
                    if _agent_of(r) == agent]  # fmt: skip

    def _opened(self, org: str | None, delta: int) -> None:
        if org is None:
            return
        with self._lock:
            now = self._in_flight[org] = self._in_flight.get(org, 0) + delta
            self.max_in_flight[org] = max(self.max_in_flight.get(org, 0), now)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    # ---- serving -------------------------------------------------------------------

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="scripted-llm")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ScriptedLLM:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for one chat-completions request (without its delay)."""
        answer = self._answer(body)
        return answer.status, answer.body

    def _answer(self, body: dict[str, Any]) -> _Answer:
        if body.get("stream"):
            return _Answer(status=400, body=_error("streaming is not scripted", 400))
        messages: Messages = list(body.get("messages") or [])
        with self._lock:
            self.requests.append(body)
            self.arrivals.append(time.monotonic())
            agent = _agent_of(body)
            if agent is None:
                return _Answer(
                    status=500, body=_error("no 'You are agent <name> of org <org>.' line", 500)
                )
            chosen: ScriptedReply | ReplyFactory | None = None
            for rule in self._rules.get(agent, []):
                if rule.fires(messages):
                    chosen = rule.reply
                    break
            if chosen is None:
                queue = self._queues.get(agent) or []
                if not queue:
                    return _Answer(status=500, body=_error(f"script exhausted for agent {agent}"))
                chosen = queue.pop(0)
        reply = chosen if isinstance(chosen, ScriptedReply) else chosen(messages)
        if reply.status != 200:
            message = reply.error or f"scripted error status {reply.status}"
            return _Answer(
                status=reply.status,
                body=_error(message, reply.status),
                delay_s=reply.delay_s,
                retry_after_s=reply.retry_after_s,
            )
        return _Answer(status=200, body=self._completion(body, reply), delay_s=reply.delay_s)

    def _completion(self, body: dict[str, Any], reply: ScriptedReply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.raw_arguments
                        if call.raw_arguments is not None
                        else json.dumps(call.arguments),
                    },
                }
                for call in reply.tool_calls
            ]
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            },
        }


def _agent_of(body: dict[str, Any]) -> str | None:
    match = _agent_line(body)
    return match.group(1) if match else None


def _org_of(body: dict[str, Any]) -> str | None:
    match = _agent_line(body)
    return match.group(2) if match else None


def _agent_line(body: dict[str, Any]) -> re.Match[str] | None:
    for message in body.get("messages") or []:
        if message.get("role") == "system":
            return AGENT_LINE.search(str(message.get("content") or ""))
    return None


def _error(message: str, status: int = 500) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _handler(llm: ScriptedLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                models = {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
                self._send(200, models)
            else:
                self._send(404, _error(f"no route {self.path}", 404))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._send(400, _error("body is not JSON", 400))
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, _error(f"no route {self.path}", 404))
                return
            org = _org_of(body)
            llm._opened(org, +1)
            try:
                try:
                    answer = llm._answer(body)
                except Exception as exc:  # a broken script: fail the test loudly, not the socket
                    answer = _Answer(status=500, body=_error(f"script raised {exc!r}"))
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                self._send(answer.status, answer.body, retry_after_s=answer.retry_after_s)
            finally:
                llm._opened(org, -1)

        def _send(
            self, status: int, payload: dict[str, Any], retry_after_s: int | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                if retry_after_s is not None:
                    self.send_header("Retry-After", str(retry_after_s))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out before a delayed answer: that was the point

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: pytest shows failures, not every request."""

    return Handler
