"""The remote engine against a real upstream: server B runs engine "mj", whose upstream is server A
(procedural) behind a proxy that can fail requests on purpose."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from pixelmill.media.video import probe_mp4
from pixelmill.testing import FaultyProxy
from tests.helpers import Server, png_chunks, upload_image, wait_for, wait_terminal

KEY_A = "pm_upstream_" + "a" * 32
KEY_B = "pm_frontend_" + "b" * 32
GEN = "/v1/midjourney/generations"


def _remote(proxy_url: str, **knobs: Any) -> str:
    spec = {"kind": "remote", "base_url": proxy_url, "api_key": KEY_A, "poll_seconds": 0.1,
            "backoff_seconds": [0.05, 0.1, 0.2], "max_tries": 6, "submit_per_minute": 6000, **knobs}
    return json.dumps({"procedural": {"kind": "procedural"}, "mj": spec})


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A fetches B's files (masks) from loopback, as an upstream fetches a customer's image store.
    srv = Server(tmp_path_factory.mktemp("a"), KEY_A, fetch_allow='["127.0.0.1/32"]', rate_per_minute=0,
                 max_concurrent_tasks=0, video_seconds=1, video_fps=8).start()
    yield srv
    srv.stop()


def _frontend(path: Path, proxy: FaultyProxy, **env: Any) -> Server:
    # A's result URLs name A itself, not the proxy B calls it through: another origin, so B fetches
    # them without its key and under its address rules, which allow loopback here.
    srv = Server(path, KEY_B, engines=_remote(proxy.url), rate_per_minute=0, max_concurrent_tasks=0, workers=4,
                 fetch_allow='["127.0.0.1/32"]', **env)
    srv.env["PUBLIC_URL"] = srv.url  # A fetches masks from B's public file URLs
    return srv.start()


def _png(api: httpx.Client, url: str) -> np.ndarray:
    r = api.get(url)
    assert r.status_code == 200
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))


def test_every_operation_runs_upstream_and_is_rehosted(upstream: Server, tmp_path: Path) -> None:
    with FaultyProxy(upstream.url, rate=0) as proxy:
        front = _frontend(tmp_path, proxy)
        try:
            with front.client() as b, upstream.client() as a:
                grid = wait_terminal(b, b.post(f"{GEN}/imagine", json={"prompt": "a lake at dawn --ar 3:2", "seed": 5, "engine": "mj"}).json()["data"][0]["task_id"])
                assert grid["status"] == "SUCCESS" and grid["engine"] == "mj", grid
                up_id = grid["engine_meta"]["upstream_task_id"]
                there = a.get(f"/v1/midjourney/{up_id}").json()
                assert there["final_prompt"] == "a lake at dawn --ar 3:2 --seed 5" and grid["engine_meta"]["upstream_quota"] == there["quota"]
                # Re-hosted: B serves the same pixels from its own storage.
                assert grid["image_urls"][0].startswith(front.url) and np.array_equal(_png(b, grid["image_urls"][0]), _png(a, there["image_urls"][0]))
                # ...as A's image data under B's own record of the task. (Both write the same
                # deflate here, so this does not tell a kept file from one written again:
                # tests/media/test_output.py shows the upstream's data is kept.)
                ours, theirs = b.get(grid["image_urls"][0]).content, a.get(there["image_urls"][0]).content
                assert [c for c in png_chunks(ours) if c[0] == "IDAT"] == [c for c in png_chunks(theirs) if c[0] == "IDAT"]
                assert Image.open(io.BytesIO(ours)).info["task_id"] == grid["task_id"]

                pick = wait_terminal(b, b.post(f"{GEN}/upscale", json={"task_id": grid["task_id"], "index": 2}).json()["data"][0]["task_id"])
                assert a.get(f"/v1/midjourney/{pick['engine_meta']['upstream_task_id']}").json()["parent_task_id"] == up_id
                vary = wait_terminal(b, b.post(f"{GEN}/variation", json={"task_id": pick["task_id"], "mode": "subtle"}).json()["data"][0]["task_id"])
                pan = wait_terminal(b, b.post(f"{GEN}/pan", json={"task_id": pick["task_id"], "direction": "left"}).json()["data"][0]["task_id"])
                assert vary["status"] == pan["status"] == "SUCCESS"
                assert _png(b, pan["image_urls"][0]).shape[1] == pick["params"]["width"] * 3 // 2

                mask = Image.new("L", (pick["params"]["width"], pick["params"]["height"]), 0)
                mask.paste(255, (0, 0, 100, 100))
                mask_url = upload_image(b, mask)
                inpaint_id = b.post(f"{GEN}/inpaint", json={"task_id": pick["task_id"]}).json()["data"][0]["task_id"]
                b.post(f"{GEN}/modal", json={"task_id": inpaint_id, "prompt": "a red sun", "mask_url": mask_url})
                inpaint = wait_terminal(b, inpaint_id)
                upstream_inpaint = a.get(f"/v1/midjourney/{inpaint['engine_meta']['upstream_task_id']}").json()
                assert inpaint["status"] == "SUCCESS" and upstream_inpaint["action"] == "INPAINT" and upstream_inpaint["prompt"] == "a red sun"

                clip = wait_terminal(b, b.post(f"{GEN}/video", json={"task_id": grid["task_id"], "index": 1}).json()["data"][0]["task_id"])
                assert clip["status"] == "SUCCESS", clip
                assert probe_mp4(b.get(clip["video_urls"][0]).content).frames == 8
                wrong = b.post(f"{GEN}/variation", json={"task_id": pick["task_id"], "engine": "procedural"})
                assert wrong.status_code == 400 and wrong.json()["description"] == "engine: a follow-up runs on its parent's engine (mj), not on procedural"
                unknown = b.post(f"{GEN}/imagine", json={"prompt": "a cat", "engine": "dalle"})
                assert unknown.status_code == 400 and unknown.json()["description"] == "engine: 'dalle' is not one of this deployment's engines: procedural, mj"
        finally:
            front.stop()


def test_upstream_faults_end_in_success_or_a_refunded_failure(upstream: Server, tmp_path: Path) -> None:
    """30 tasks through a proxy failing 30 % of requests (every kind): each task ends SUCCESS,
    or FAILURE with its charge refunded; nothing is left waiting; no upstream task is made twice
    for one attempt (submits carry an Idempotency-Key)."""
    with FaultyProxy(upstream.url, rate=0.3, slow_seconds=0.3, seed=7) as proxy:
        front = _frontend(tmp_path, proxy)
        try:
            with front.client() as b:
                ids = [b.post(f"{GEN}/imagine", json={"prompt": f"a storm over hill {i}", "engine": "mj"}).json()["data"][0]["task_id"] for i in range(30)]
                tasks = [wait_terminal(b, t, timeout=120) for t in ids]
        finally:
            front.stop()
    assert sum(proxy.injected.values()) > 20 and len(proxy.injected) == 6  # every kind of fault happened
    for task in tasks:
        assert task["status"] in ("SUCCESS", "FAILURE"), task
        if task["status"] == "FAILURE":
            assert task["quota"] == 0 and task["fail_reason"]
    upstream_ids = [t["engine_meta"]["upstream_task_id"] for t in tasks if t["status"] == "SUCCESS"]
    assert len(set(upstream_ids)) == len(upstream_ids) and len(upstream_ids) >= 25


def test_readiness_reports_an_unreachable_upstream(tmp_path: Path) -> None:
    engines = json.dumps({"procedural": {"kind": "procedural"}, "mj": {"kind": "remote", "base_url": "http://127.0.0.1:9", "api_key": "k"}})
    srv = Server(tmp_path, KEY_B, engines=engines).start()
    try:
        with srv.client() as b:
            def unready() -> httpx.Response | None:
                r = b.get("/readyz")
                return r if r.status_code == 503 else None

            r = wait_for(unready, timeout=10, what="readyz")
            assert "engine:mj" in r.text and "ConnectError" in r.text
    finally:
        srv.stop()


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_a_killed_server_follows_its_upstream_tasks_after_the_restart_and_submits_none_again(tmp_path: Path) -> None:
    """B is killed (SIGKILL) while its tasks wait upstream. After the restart every task ends
    SUCCESS with the upstream task it started, and the upstream saw one submit per task. (Before
    issue 21 the retries after the restart submitted every task again, under new keys; a
    pixelmill upstream's request cache hid it, a Midjourney-style one would bill it.)"""
    # A accepts tasks but has no workers: they wait upstream until its worker process starts.
    a = Server(tmp_path / "a", KEY_A, workers=0, rate_per_minute=0, max_concurrent_tasks=0).start()
    with FaultyProxy(a.url, rate=0) as proxy:
        b = Server(tmp_path / "b", KEY_B, engines=_remote(proxy.url), rate_per_minute=0, max_concurrent_tasks=0, workers=4,
                   fetch_allow='["127.0.0.1/32"]', lease_seconds=2, sweep_interval_seconds=0.2)
        try:
            b.start()
            with b.client() as api:
                ids = [api.post(f"{GEN}/imagine", json={"prompt": f"a lighthouse in fog {i}", "engine": "mj"}).json()["data"][0]["task_id"]
                       for i in range(4)]
            accepted = "SELECT count(*) FROM upstream_tasks WHERE upstream_id IS NOT NULL"
            wait_for(lambda: _count(b.data_dir / "pixelmill.db", accepted) == 4, timeout=30, what="the upstream to accept the 4 tasks")
            b.kill()
            b.start()
            with a.worker(), b.client() as api:
                done = [wait_terminal(api, t, timeout=60) for t in ids]
        finally:
            b.stop()
            a.stop()
    assert [t["status"] for t in done] == ["SUCCESS"] * 4, [t.get("fail_reason") for t in done]
    assert sorted(proxy.submits) == sorted(f"{t}-1" for t in ids)  # one submit each, under the first attempt's key
    assert len({t["engine_meta"]["upstream_task_id"] for t in done}) == 4


def test_waiting_upstream_holds_no_worker_and_a_cancel_reaches_the_upstream(tmp_path: Path) -> None:
    """With one worker, ten tasks wait upstream at once: a task waiting upstream is parked, and
    the poller follows it. A cancel of a parked task cancels its upstream task too."""
    a = Server(tmp_path / "a", KEY_A, workers=0, rate_per_minute=0, max_concurrent_tasks=0).start()
    with FaultyProxy(a.url, rate=0) as proxy:
        b = Server(tmp_path / "b", KEY_B, engines=_remote(proxy.url), rate_per_minute=0, max_concurrent_tasks=0, workers=1,
                   fetch_allow='["127.0.0.1/32"]')
        try:
            b.start()
            with b.client() as api, a.client() as up:
                ids = [api.post(f"{GEN}/imagine", json={"prompt": f"a kite over dunes {i}", "engine": "mj"}).json()["data"][0]["task_id"]
                       for i in range(11)]
                wait_for(lambda: len(proxy.submits) == 11, timeout=30, what="all 11 tasks to be submitted upstream")
                assert {api.get(f"/v1/midjourney/{t}").json()["status"] for t in ids} == {"IN_PROGRESS"}

                cancelled = ids.pop()
                assert api.post(f"/v1/midjourney/{cancelled}/cancel").json()["code"] == 1
                # Forwarded by the proxy is not yet recorded by B: wait for B's record of the upstream task.
                up_id = wait_for(lambda: dict(_rows(b.data_dir / "pixelmill.db", "SELECT task_id, upstream_id FROM upstream_tasks")).get(cancelled),
                                 timeout=30, what="B to record the upstream task")
                wait_for(lambda: up.get(f"/v1/midjourney/{up_id}").json()["status"] == "CANCEL", timeout=30, what="the upstream cancel")

                with a.worker():
                    done = [wait_terminal(api, t, timeout=60) for t in ids]
        finally:
            b.stop()
            a.stop()
    assert [t["status"] for t in done] == ["SUCCESS"] * 10, [t.get("fail_reason") for t in done]
    assert all(t["image_urls"] for t in done)
    # Another pixelmill answers many tasks at once: the poller asks after them in batches.
    assert "POST /v1/midjourney/list-by-ids" in proxy.requests
    reads = [r for r in proxy.requests if r.startswith("GET /v1/midjourney/")]
    assert len(reads) == 10, reads  # one each, when a finished task is handed back to be stored


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=30) as conn:
        return list(conn.execute(sql).fetchall())


@pytest.mark.parametrize("how", ["fails upstream", "outlives timeout_seconds"])
def test_an_upstream_task_that_ends_without_a_result_is_submitted_anew_by_the_next_attempt(tmp_path: Path, how: str) -> None:
    """Only an upstream task that ended without a result (or that was given up, and cancelled
    upstream) lets a retry submit again: one submit per attempt, each under its own key, and the
    task ends FAILURE, refunded."""
    failing = how == "fails upstream"
    rules = json.dumps([{"match": "doomed", "retryable": False, "error": "model refused the input"}])
    a = Server(tmp_path / "a", KEY_A, workers=1 if failing else 0, rate_per_minute=0, max_concurrent_tasks=0,
               **({"fault_injection": rules} if failing else {})).start()
    with FaultyProxy(a.url, rate=0) as proxy:
        knobs = {} if failing else {"timeout_seconds": 0.5}
        b = Server(tmp_path / "b", KEY_B, engines=_remote(proxy.url, **knobs), rate_per_minute=0, max_concurrent_tasks=0,
                   retry_backoff_seconds="[0.05]", fetch_allow='["127.0.0.1/32"]').start()
        try:
            with b.client() as api, a.client() as up:
                task_id = api.post(f"{GEN}/imagine", json={"prompt": "a doomed ship", "engine": "mj"}).json()["data"][0]["task_id"]
                task = wait_terminal(api, task_id, timeout=60)
                upstream_ids = [r[0] for r in _rows(a.data_dir / "pixelmill.db", "SELECT id FROM tasks ORDER BY submit_time")]
                ends = [wait_terminal(up, u)["status"] for u in upstream_ids]
        finally:
            b.stop()
            a.stop()
    assert task["status"] == "FAILURE" and task["quota"] == 0, task
    assert proxy.submits == [f"{task_id}-{n}" for n in (1, 2, 3)]
    assert ends == (["FAILURE"] * 3 if failing else ["CANCEL"] * 3)


def test_an_upstream_that_calls_back_ends_the_task_without_polling_and_a_forged_call_changes_nothing(tmp_path: Path) -> None:
    """With ``callbacks``, B gives the upstream a signed callback URL with each submit; the
    upstream's webhook makes B ask at once, though B's own poll would come only in 10 minutes.
    A call with another token is refused; a replayed one changes nothing."""
    a = Server(tmp_path / "a", KEY_A, workers=0, rate_per_minute=0, max_concurrent_tasks=0, fetch_allow='["127.0.0.1/32"]').start()
    b = Server(tmp_path / "b", KEY_B, engines=_remote(a.url, callbacks=True, callback_poll_seconds=600), rate_per_minute=0,
               max_concurrent_tasks=0, fetch_allow='["127.0.0.1/32"]')
    b.env["PUBLIC_URL"] = b.url
    try:
        b.start()
        with b.client() as api:
            task_id = api.post(f"{GEN}/imagine", json={"prompt": "a heron at dusk", "engine": "mj"}).json()["data"][0]["task_id"]
            parked = "SELECT count(*) FROM tasks WHERE lease_owner = 'upstream'"
            wait_for(lambda: _count(b.data_dir / "pixelmill.db", parked) == 1, timeout=30, what="the task to wait upstream")
            with a.worker():
                done = wait_terminal(api, task_id, timeout=60)
            assert done["status"] == "SUCCESS" and done["image_urls"], done
            polls = sum(float(line.rsplit(" ", 1)[1]) for line in api.get("/metrics").text.splitlines()
                        if line.startswith("pixelmill_upstream_polls_total{"))
            assert polls == 1  # the one the callback asked for

            hook = json.loads(_rows(a.data_dir / "pixelmill.db", "SELECT webhook FROM tasks")[0][0])["url"]
            assert hook.startswith(f"{b.url}/v1/upstream/callbacks/{task_id}?token=")
            forged = httpx.post(hook.split("?")[0] + "?token=" + "0" * 40)
            assert forged.status_code == 404 and forged.json()["code"] == 3
            assert httpx.post(hook).status_code == 204  # a replay: the task stays as it is
            after = api.get(f"/v1/midjourney/{task_id}").json()
            assert [after[k] for k in ("status", "image_urls", "engine_meta", "finish_time")] == [done[k] for k in ("status", "image_urls", "engine_meta", "finish_time")]
    finally:
        b.stop()
        a.stop()
