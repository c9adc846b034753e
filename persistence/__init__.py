"""Schema, message store, read queries, the outbox and its relay."""
