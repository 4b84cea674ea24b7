"""Telling callers what happened: webhooks (signed, from a durable outbox)."""
