"""The web console: see and steer an org in a browser (``kafkaorg console``)."""
