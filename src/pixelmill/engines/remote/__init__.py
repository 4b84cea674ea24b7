"""The remote engine: operations run by Midjourney-style upstreams, one account or a pool.

- ``config.py``: the settings, accounts and their limits;
- ``http.py``: one account over HTTP (seed 004's retry table, downloads);
- ``pool.py``: which account a task goes to;
- ``contracts.py``: the upstream's API: seed 004's, midjourney-proxy's, OpenAI Images' answers;
- ``engine.py``: submit, follow, re-host;
- ``openai.py``: the OpenAI Images API, which answers with pictures (no task to follow).

The pool's shared state lives in ``queue/accounts.py``, the task's upstream record in
``queue/upstream.py``, and the poller that follows waiting tasks in ``work/upstream.py``.
"""

from pixelmill.engines.remote.config import AccountConfig, RemoteConfig
from pixelmill.engines.remote.engine import RemoteEngine, upstream_progress, upstream_running
from pixelmill.engines.remote.http import SubmitBudget, Upstream

__all__ = ["AccountConfig", "RemoteConfig", "RemoteEngine", "SubmitBudget", "Upstream", "upstream_progress", "upstream_running"]
