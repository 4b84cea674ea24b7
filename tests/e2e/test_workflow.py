"""The production workflow against real server processes: idempotency, the request cache,
rate and concurrency caps, cancel, timeouts, long-poll and Server-Sent Events."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_for, wait_terminal

IMAGINE = "/v1/midjourney/generations/imagine"


def submit(api: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return api.post(IMAGINE, json=body, headers=headers)


def task_of(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return str(r.json()["data"][0]["task_id"])


# --- idempotency ---------------------------------------------------------------------------------


def test_fifty_concurrent_idempotent_submits_make_one_task(server: Server) -> None:
    body = {"prompt": "a red kite over dunes", "seed": 731_902_114}

    def once(_: int) -> httpx.Response:
        with server.client() as api:
            return submit(api, body, **{"Idempotency-Key": "order-7-" + str(body["seed"])})

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(once, range(50)))
    ok = {task_of(r) for r in answers if r.status_code == 200}
    assert len(ok) == 1
    # The rest were told to retry (409, still being accepted) or got the same answer.
    assert all(r.status_code in (200, 409) for r in answers)
    assert all(r.headers.get("Retry-After") == "1" for r in answers if r.status_code == 409)
    with server.client() as api:
        again = submit(api, body, **{"Idempotency-Key": "order-7-" + str(body["seed"])})
        assert task_of(again) in ok and again.json() == next(r.json() for r in answers if r.status_code == 200)


def test_same_idempotency_key_with_another_body_is_422(api: httpx.Client) -> None:
    task_of(submit(api, {"prompt": "a cat"}, **{"Idempotency-Key": "k-422"}))
    r = submit(api, {"prompt": "a dog"}, **{"Idempotency-Key": "k-422"})
    assert r.status_code == 422 and r.json()["code"] == 4
    assert r.json()["description"] == "Idempotency-Key: 'k-422' was already used with a different request; use a new key"


def test_a_refused_request_frees_its_idempotency_key(api: httpx.Client) -> None:
    assert submit(api, {"prompt": "a cat --s 5000"}, **{"Idempotency-Key": "k-free"}).status_code == 400
    task_of(submit(api, {"prompt": "a cat --s 50"}, **{"Idempotency-Key": "k-free"}))


# --- request cache -------------------------------------------------------------------------------


def test_a_seeded_repeat_is_answered_from_cache_without_the_engine(api: httpx.Client) -> None:
    body = {"prompt": "a misty harbor at dawn", "seed": 2_024_117}
    first = wait_terminal(api, task_of(submit(api, body)))
    r = submit(api, body)
    hit = api.get(f"/v1/midjourney/{task_of(r)}").json()
    # Born finished: no queue, no worker, no engine call; the same files.
    assert hit["status"] == "SUCCESS" and hit["task_id"] != first["task_id"]
    assert hit["params"]["cache_hit"] == first["task_id"]
    assert hit["submit_time"] == hit["start_time"] == hit["finish_time"]
    assert hit["image_urls"] == first["image_urls"] and hit["grid_image_url"] == first["grid_image_url"]
    assert hit["quota"] == 0  # the default rule: cache hits are free


def test_an_identical_running_request_is_coalesced(tmp_path: Path) -> None:
    slow = Server(tmp_path, TEST_KEY, procedural_delay_ms=400).start()
    try:
        with slow.client() as api:
            body = {"prompt": "a lighthouse", "seed": 5}
            a, b = task_of(submit(api, body)), task_of(submit(api, body))
            assert a == b
    finally:
        slow.stop()


def test_without_a_seed_the_cache_is_used_only_when_allowed(api: httpx.Client) -> None:
    prompt = "a quiet pond number 86"
    first = wait_terminal(api, task_of(submit(api, {"prompt": prompt})))
    fresh = api.get(f"/v1/midjourney/{task_of(submit(api, {'prompt': prompt}))}").json()
    assert "cache_hit" not in fresh["params"] and fresh["seed"] != first["seed"]
    allowed = api.get(f"/v1/midjourney/{task_of(submit(api, {'prompt': prompt, 'cache': True}))}").json()
    assert allowed["status"] == "SUCCESS" and allowed["params"]["cache_hit"] in (first["task_id"], fresh["task_id"])
    by_header = api.get(f"/v1/midjourney/{task_of(submit(api, {'prompt': prompt}, **{'Pixelmill-Cache': 'allow'}))}").json()
    assert by_header["status"] == "SUCCESS" and "cache_hit" in by_header["params"]


# --- caps ----------------------------------------------------------------------------------------


def test_over_the_rate_cap_is_429_with_retry_after(tmp_path: Path) -> None:
    # No workers: submits stay cheap on a busy machine. 7 submits cannot spread over more than
    # two 10-second windows, so one window holds 4 or more.
    capped = Server(tmp_path, TEST_KEY, rate_per_minute=3, rate_window_seconds=10, workers=0).start()
    try:
        with capped.client() as api:
            answers = [submit(api, {"prompt": f"a cat {i}"}) for i in range(7)]
    finally:
        capped.stop()
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    body = limited[0].json()
    assert body["code"] == 429 and 1 <= int(limited[0].headers["Retry-After"]) <= 10
    assert "cap" in body["description"]


def test_over_the_concurrency_cap_is_429(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, max_concurrent_tasks=2, procedural_delay_ms=1000, workers=1).start()
    try:
        with srv.client() as api:
            codes = [submit(api, {"prompt": f"a cat {i}"}).status_code for i in range(3)]
            third = submit(api, {"prompt": "a cat 9"})
        assert codes[:2] == [200, 200] and codes[2] == 429
        assert third.json()["code"] == 429 and "queued or running" in third.json()["description"]
    finally:
        srv.stop()


# --- cancel, timeouts ----------------------------------------------------------------------------


def test_cancel_queued_work_refunds_it(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, procedural_delay_ms=2000, workers=1).start()
    try:
        with srv.client() as api:
            running, queued = task_of(submit(api, {"prompt": "a"})), task_of(submit(api, {"prompt": "b"}))
            for task_id in (queued, running):
                r = api.post(f"/v1/midjourney/{task_id}/cancel")
                assert r.status_code == 200 and r.json()["description"] == "cancelled"
                task = api.get(f"/v1/midjourney/{task_id}").json()
                assert (task["status"], task["quota"]) == ("CANCEL", 0)
            again = api.post(f"/v1/midjourney/{queued}/cancel")
            assert again.status_code == 400 and again.json()["code"] == 4 and "already CANCEL" in again.json()["description"]
            assert api.post("/v1/midjourney/123/cancel").status_code == 404
    finally:
        srv.stop()


def test_a_task_running_too_long_fails_with_a_refund(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, procedural_delay_ms=5000, run_timeout_seconds=0.5, sweep_interval_seconds=0.1).start()
    try:
        with srv.client() as api:
            task = wait_terminal(api, task_of(submit(api, {"prompt": "a slow cat"})), timeout=30)
        assert task["status"] == "FAILURE" and task["quota"] == 0
        assert task["fail_reason"] == "timed out after 0.5s running; refunded"
    finally:
        srv.stop()


# --- waiting without polling ----------------------------------------------------------------------


def test_long_poll_returns_when_the_task_is_final(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, procedural_delay_ms=100).start()
    try:
        with srv.client() as api:
            task_id = task_of(submit(api, {"prompt": "a cat"}))
            assert api.get(f"/v1/midjourney/{task_id}", params={"wait": 20}).json()["status"] == "SUCCESS"
            other = task_of(submit(api, {"prompt": "a dog"}))
            assert api.get(f"/v1/midjourney/{other}", headers={"Prefer": "wait=20"}).json()["status"] == "SUCCESS"
            bad = api.get(f"/v1/midjourney/{other}", headers={"Prefer": "wait=soon"})
            assert bad.status_code == 400 and bad.json()["description"] == "Prefer: wait needs seconds, got 'soon'"
    finally:
        srv.stop()


def test_events_stream_progress_until_success(tmp_path: Path) -> None:
    # 2 s of rendering: the stream attaches long before the end, however slow the machine.
    srv = Server(tmp_path, TEST_KEY, procedural_delay_ms=500).start()
    try:
        with srv.client() as api:
            task_id = task_of(submit(api, {"prompt": "a cat"}))
            events = []
            with api.stream("GET", f"/v1/midjourney/{task_id}/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
        statuses = [e["status"] for e in events]
        assert statuses[-1] == "SUCCESS" and "IN_PROGRESS" in statuses
        progress = [int(e["progress"].rstrip("%")) for e in events]
        assert progress == sorted(progress) and len(set(progress)) >= 3
    finally:
        srv.stop()


def test_a_key_can_have_its_own_rate_cap(server: Server) -> None:
    created = server.cli("keys", "create", "--tenant", "limited", "--name", "tight")
    key_id, plaintext = created.stdout.split()[1], created.stdout.strip().splitlines()[-1]
    assert "rate_per_minute=1" in server.cli("keys", "limits", key_id, "--rate-per-minute", "1").stdout
    with server.client(plaintext) as api:
        task_of(submit(api, {"prompt": "one"}))
        r = submit(api, {"prompt": "two"})
        # The window may just have turned over: then the next one is refused.
        r = r if r.status_code == 429 else submit(api, {"prompt": "three"})
    assert r.status_code == 429 and r.json()["code"] == 429
    bad = server.cli("keys", "limits", key_id, "--max-concurrent", "-1", check=False)
    assert bad.returncode != 0 and "max_concurrent: must be 0 (no cap) or more, got -1" in bad.stderr


def test_a_process_holds_a_bounded_number_of_streams(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, workers=0, max_streams=1).start()
    try:
        with srv.client() as api:
            task_id = api.post(IMAGINE, json={"prompt": "a quiet harbour"}).json()["data"][0]["task_id"]
            with api.stream("GET", f"/v1/midjourney/{task_id}/events") as stream:
                lines = stream.iter_lines()  # kept: dropping the iterator would close the stream
                assert next(lines).startswith("id: ")
                # The one place is taken: a second stream and a long-poll are refused, a plain poll is not.
                for path in (f"/v1/midjourney/{task_id}/events", f"/v1/midjourney/{task_id}?wait=5"):
                    r = api.get(path)
                    assert (r.status_code, r.headers.get("retry-after")) == (503, "1"), r.text
                assert api.get(f"/v1/midjourney/{task_id}").status_code == 200
            wait_for(lambda: api.get(f"/v1/midjourney/{task_id}?wait=0.1").status_code == 200, timeout=10,
                     what="the place to be given back")
    finally:
        srv.stop()
