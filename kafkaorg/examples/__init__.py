"""Example org specs (and the tools they use) shipped with the package."""

from __future__ import annotations

from importlib import resources

from kafkaorg.spec import OrgSpec, parse_spec_text


def demo_spec() -> OrgSpec:
    """The org ``kafkaorg demo`` runs: rule agent → tool agent → echo agent."""
    examples = resources.files("kafkaorg.examples")
    text = examples.joinpath("demo.yaml").read_text(encoding="utf-8")
    return parse_spec_text(text, "kafkaorg/examples/demo.yaml", examples)


def demo_llm_spec() -> OrgSpec:
    """The org ``kafkaorg demo --llm`` runs: one llm agent answering questions."""
    examples = resources.files("kafkaorg.examples")
    text = examples.joinpath("demo-llm.yaml").read_text(encoding="utf-8")
    return parse_spec_text(text, "kafkaorg/examples/demo-llm.yaml", examples)


def review_spec() -> OrgSpec:
    """An org with a ``review`` flow over echo and rule agents (no model needed)."""
    examples = resources.files("kafkaorg.examples")
    text = examples.joinpath("review.yaml").read_text(encoding="utf-8")
    return parse_spec_text(text, "kafkaorg/examples/review.yaml", examples)
