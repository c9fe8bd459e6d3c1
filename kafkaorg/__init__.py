"""kafkaorg: organizations of AI agents on an event log.

Shared domain code: configuration, names, the record envelope, the org spec,
state models and the command line. Workflows, activities, workers and the
Kafka bridge live in the top-level packages beside this one.
"""

__version__ = "0.1.0"
