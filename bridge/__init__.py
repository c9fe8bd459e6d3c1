"""The Kafka bridge: records on org topics become signals to the agents subscribed to them."""
