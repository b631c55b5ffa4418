"""The edge every check-in service shares: auth, errors, logging, health, tracing."""
