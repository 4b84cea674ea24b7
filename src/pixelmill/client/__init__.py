"""The Python SDK: ``Client(base_url, api_key)`` and ``verify_webhook`` for receivers."""

from pixelmill.client.sync import APIError, Client, NeedsModal, TaskFailed, verify_webhook
from pixelmill.notify.signing import WebhookVerificationError

__all__ = ["APIError", "Client", "NeedsModal", "TaskFailed", "WebhookVerificationError", "verify_webhook"]
