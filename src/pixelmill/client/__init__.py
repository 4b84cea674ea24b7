"""The Python SDK: ``Client(base_url, api_key)``."""

from pixelmill.client.sync import APIError, Client, TaskFailed

__all__ = ["APIError", "Client", "TaskFailed"]
