from __future__ import annotations

from pathlib import Path

import pytest

from kafkaorg.spec import SpecError, TopicClass, load_spec, parse_spec_text, spec_to_json

GOOD = """
org: acme
topics:
  - {name: tasks, class: work, partitions: 3}
  - {name: results, class: audit}
  - {name: state, class: state}
agents:
  - name: triage
    kind: rule
    subscribes: [tasks]
    publishes: [results]
    rules:
      - on: task.request
        emit: task.triaged
        to: results
        map: {title: $.payload.title}
  - {name: echo, kind: echo, subscribes: [results], publishes: [state]}
"""


def test_good_spec_loads_with_yaml_on_key_and_class_alias() -> None:
    spec = parse_spec_text(GOOD)
    assert spec.agents[0].rules[0].on == "task.request"  # YAML 1.1 would read `on` as True
    assert spec.topics[1].topic_class is TopicClass.AUDIT
    assert spec.topics[2].kafka_configs()["cleanup.policy"] == "compact"
    assert parse_spec_text(spec_to_json(spec)) == spec


def test_every_problem_is_listed_with_its_place() -> None:
    text = """
org: Acme
topics:
  - {name: sys}
  - {name: tasks, partitions: 0}
  - {name: tasks}
agents:
  - {name: a, kind: echo, subscribes: [tasks], publishes: [tasks], colour: red}
"""
    with pytest.raises(SpecError) as info:
        parse_spec_text(text, "acme.yaml")
    problems = info.value.problems
    assert any(p.startswith("org:") for p in problems)
    assert any(p.startswith("topics.0.name:") and "reserved" in p for p in problems)
    assert any(p.startswith("topics.1.partitions:") for p in problems)
    assert any(p.startswith("agents.0.colour:") for p in problems)
    assert len(problems) == 4


def test_cross_reference_problems_are_listed_together() -> None:
    text = """
org: acme
topics: [{name: tasks}, {name: tasks}]
agents:
  - {name: a, kind: rule, subscribes: [nope], publishes: [tasks],
     rules: [{on: "*", emit: x, to: elsewhere}]}
  - {name: a, kind: echo, subscribes: [tasks]}
  - {name: b, kind: llm, subscribes: [tasks]}
"""
    with pytest.raises(SpecError) as info:
        parse_spec_text(text)
    assert info.value.problems == [
        "topics.1.name: duplicate topic 'tasks'",
        "agents.0.subscribes.0: unknown topic 'nope'",
        "agents.0.rules.0.to: 'elsewhere' is not in this agent's publishes",
        "agents.1.name: duplicate agent 'a'",
        "agents.1.publishes: an echo agent needs a topic to publish to",
        "agents.2.instructions: an llm agent needs instructions",
    ]


def test_unparseable_and_missing_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("org: [oops\n")
    with pytest.raises(SpecError, match="line 2"):
        load_spec(broken)
    with pytest.raises(SpecError, match="cannot read file"):
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(SpecError, match="expected a mapping"):
        parse_spec_text("- just a list")


def test_on_text_reply_defaults_to_publish_and_takes_only_its_outcomes() -> None:
    base = "org: acme\ntopics: [{name: tasks}]\nagents:\n  - {name: a, kind: llm, "
    spec = parse_spec_text(base + "instructions: x, subscribes: [tasks]}\n")
    assert spec.agents[0].on_text_reply == "publish"
    spec = parse_spec_text(base + "instructions: x, subscribes: [tasks], on_text_reply: dlq}\n")
    assert spec.agents[0].on_text_reply == "dlq"
    with pytest.raises(SpecError) as info:
        parse_spec_text(base + "instructions: x, subscribes: [tasks], on_text_reply: shout}\n")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("agents.0.on_text_reply:")
