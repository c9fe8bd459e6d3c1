"""The console's access rules and its pure helpers, without a server."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from kafkaorg.console.access import AccessPolicy, Role, check_bind, csrf_ok
from kafkaorg.envelope import new_record
from kafkaorg.errors import BadInputError
from kafkaorg.llm.conversation import decision_turns
from kafkaorg.record_lookup import OrgRecord, RecordFilter, causation_chain

POLICY = AccessPolicy(operator_token="op", viewer_token="view")


def _request(
    headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None
) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if cookies:
        raw.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()))
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


def test_tokens_and_signed_sessions_name_the_role() -> None:
    assert POLICY.role_of(_request({"Authorization": "Bearer op"})) == Role.OPERATOR
    assert POLICY.role_of(_request({"Authorization": "Bearer view"})) == Role.VIEWER
    assert POLICY.role_of(_request({"Authorization": "Bearer nope"})) == Role.ANONYMOUS
    assert POLICY.role_of(_request()) == Role.ANONYMOUS
    viewer = POLICY.session_value(Role.VIEWER)
    assert POLICY.role_of(_request(cookies={"kafkaorg_session": viewer})) == Role.VIEWER
    forged = viewer.replace("viewer.", "operator.")
    assert POLICY.role_of(_request(cookies={"kafkaorg_session": forged})) == Role.ANONYMOUS
    # Another token pair signs differently: a changed token logs everyone out.
    other = AccessPolicy(operator_token="op2", viewer_token="view")
    assert other.role_of_session(POLICY.session_value(Role.OPERATOR)) == Role.ANONYMOUS


def test_an_open_console_is_loopback_only() -> None:
    open_policy = AccessPolicy()
    assert open_policy.role_of(_request()) == Role.OPERATOR
    check_bind("127.0.0.1", open_policy)
    check_bind("localhost", open_policy)
    check_bind("::1", open_policy)
    with pytest.raises(BadInputError, match="KAFKAORG_CONSOLE_TOKEN"):
        check_bind("0.0.0.0", open_policy)
    check_bind("0.0.0.0", POLICY)


def test_csrf_needs_the_cookie_s_token_and_our_origin() -> None:
    cookies = {"kafkaorg_csrf": "abc"}
    assert csrf_ok(_request({"Host": "h:1"}, cookies), "abc")
    assert not csrf_ok(_request({"Host": "h:1"}, cookies), "abd")
    assert not csrf_ok(_request({"Host": "h:1"}), "abc")
    assert not csrf_ok(_request({"Host": "h:1"}, cookies), None)
    assert csrf_ok(_request({"Host": "h:1", "Origin": "http://h:1"}, cookies), "abc")
    assert not csrf_ok(_request({"Host": "h:1", "Origin": "http://evil:1"}, cookies), "abc")


def test_decisions_pair_each_tool_call_with_its_result() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "task 1"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "function": {"name": "publish", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "published"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "task 2"},
    ]
    turns = decision_turns(messages, first_turn=5)
    assert [(t.turn, t.input) for t in turns] == [(5, "task 1"), (6, "task 2")]
    assert turns[0].steps[0].tool_calls[0].result == "published"
    assert turns[0].steps[1].reply == "done"
    assert turns[1].steps == []


def _item(topic: str, offset: int) -> OrgRecord:
    record = new_record(org="acme", type="t.x", source="user:a", payload={})
    return OrgRecord(
        topic=topic, partition=0, offset=offset, raw=record.model_dump_json(), record=record
    )


def test_filters_and_the_causation_chain() -> None:
    first = _item("tasks", 0)
    second = _item("triaged", 0)
    assert second.record is not None and first.record is not None
    second.record.causation_id = first.record.id
    third = _item("results", 0)
    assert third.record is not None
    third.record.causation_id = second.record.id
    chain = causation_chain(third, [first, second, third])
    assert [c.topic for c in chain.causes] == ["tasks", "triaged"] and chain.cause_missing is None
    assert [e.topic for e in causation_chain(first, [first, second, third]).effects] == ["triaged"]
    orphan = causation_chain(second, [second, third])
    assert orphan.cause_missing == first.record.id
    assert RecordFilter(topic="tasks").matches(first)
    assert not RecordFilter(topic="tasks", type="other").matches(first)
    assert RecordFilter(text=first.record.id.upper()).matches(first)
