"""The web console at ``/console``: server-rendered pages for people who never call the API.

Sign-in exchanges an API key for a server-side session (``auth/sessions.py``) behind an HttpOnly,
SameSite=Strict cookie scoped to ``/console``: the key never reaches the browser's storage, and the
cookie never authenticates ``/v1``. Pages talk to the service layer, never to the database.
"""
