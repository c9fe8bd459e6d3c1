"""Record contracts: per org and record type, versioned JSON Schemas in PostgreSQL.

``compatibility`` says what a new version breaks; ``validation`` checks payloads on the
record path; ``store`` registers and reads versions (the service layer); ``confluent_api``
serves them over the Confluent Schema Registry REST API.
"""
