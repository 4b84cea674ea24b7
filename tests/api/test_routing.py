"""The app's route table: every router's path operations, copied flat (app.include_flat)."""

from __future__ import annotations

from pathlib import Path

from fastapi.routing import APIRoute

from pixelmill.api import midjourney, mjproxy, openai_images, tasks
from pixelmill.app import create_app
from pixelmill.settings import Settings


def test_every_route_is_in_one_flat_table_and_the_schema_lists_each_once(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    # Nested routers are walked on every request (FastAPI 0.16x); the table holds routes only.
    assert all(isinstance(r, APIRoute) for r in app.router.routes if getattr(r, "path", "").startswith(("/v1", "/mj")))
    table = {(r.path, m) for r in app.router.routes if isinstance(r, APIRoute) for m in r.methods}
    for router in (midjourney.router, openai_images.router, tasks.router):
        assert {(r.path, m) for r in router.routes if isinstance(r, APIRoute) for m in r.methods} <= table
    for prefix in mjproxy.PREFIXES:  # every speed prefix serves the same operations
        assert (f"{prefix}/submit/imagine", "POST") in table and (f"{prefix}/task/{{task_id}}/fetch", "GET") in table
    paths = app.openapi()["paths"]
    # The speed prefixes are documented once, under /mj; a route's own summary and answers stay.
    assert "/mj/submit/imagine" in paths and not any(p.startswith("/mj-") for p in paths)
    imagine = paths["/v1/midjourney/generations/imagine"]["post"]
    assert imagine["tags"] == ["midjourney"] and {"400", "401", "429"} <= set(imagine["responses"])
    assert paths["/v1/midjourney/generations/upscale"]["post"]["summary"] == "Upscale"
