"""The Python SDK: ``Client(base_url, api_key)`` and ``verify_webhook`` for receivers."""

from pixelmill.client.sync import APIError, Client, TaskFailed, WebhookVerificationError, verify_webhook

__all__ = ["APIError", "Client", "TaskFailed", "WebhookVerificationError", "verify_webhook"]
