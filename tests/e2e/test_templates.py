"""Versioned templates through the real server: immutable versions, sticky percentage rollouts,
rollback on the very next request, locked parameters, and evaluations with contact sheets."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.helpers import Server, download_image, wait_files, wait_for, wait_terminal

GEN = "/v1/midjourney/generations"
ADMIN_KEY = "pm_test_" + "t" * 32

SPEC_V1: dict[str, Any] = {
    "body": "studio photo of {subject}, {mood} light",
    "variables": {
        "subject": {"type": "text", "max_length": 40},
        "mood": {"type": "enum", "values": ["soft", "dramatic"], "default": "soft"},
    },
    "locked": {"aspect_ratio": "1:1", "stylize": 100, "raw": True},
    "overrides": ["seed", "chaos"],
    "negative_prompt": "text, watermark",
    "forbidden": ["rival"],
}
SPEC_V2 = SPEC_V1 | {"body": "studio photo of {subject}, {mood} light, warm colour grade"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    server = Server(tmp_path_factory.mktemp("templates"), ADMIN_KEY, rate_per_minute=0, max_concurrent_tasks=0).start()
    yield server
    server.stop()


def make_template(admin: httpx.Client, name: str, **owner: Any) -> None:
    """v1 and v2 published, stable → v1; owned by the admin's tenant unless ``owner`` says
    (``tenant="x"`` or ``shared=True``)."""
    assert admin.post("/v1/templates", json={"name": name, "note": "first cut", **SPEC_V1, **owner}).status_code == 200
    assert admin.post(f"/v1/templates/{name}/versions/1/publish").status_code == 200
    assert admin.post(f"/v1/templates/{name}/versions", json={"note": "warmer", **SPEC_V2}).json()["version"] == 2
    assert admin.post(f"/v1/templates/{name}/versions/2/publish").status_code == 200
    assert admin.put(f"/v1/templates/{name}/releases/stable", json={"version": 1}).json()["version"] == 1


def imagine(c: httpx.Client, **body: Any) -> httpx.Response:
    return c.post(f"{GEN}/imagine", json=body)


def test_a_published_version_is_immutable_and_every_version_has_author_note_and_hash(srv: Server) -> None:
    with srv.client() as admin:
        admin.post("/v1/templates", json={"name": "frozen", "note": "draft one", "author": "alice", **SPEC_V1})
        edited = admin.put("/v1/templates/frozen/versions/1", json={"note": "draft one, fixed", **SPEC_V2})
        assert edited.status_code == 200 and edited.json()["spec"]["body"] == SPEC_V2["body"]  # a draft may change
        published = admin.post("/v1/templates/frozen/versions/1/publish").json()
        assert published["state"] == "published" and published["author"] == "alice" and published["note"] == "draft one, fixed"
        assert re.fullmatch(r"[0-9a-f]{64}", published["content_hash"])
        again = admin.put("/v1/templates/frozen/versions/1", json={"note": "sneaky", **SPEC_V1})
        assert again.status_code == 409 and "published and cannot change" in again.json()["description"]
        assert admin.get("/v1/templates/frozen/versions/1").json() == published
        # The same content always has the same hash; other content another.
        v2 = admin.post("/v1/templates/frozen/versions", json=SPEC_V2).json()
        v3 = admin.post("/v1/templates/frozen/versions", json=SPEC_V1).json()
        assert v2["content_hash"] == published["content_hash"] != v3["content_hash"]
        with srv.client("pm_nobody_" + "x" * 30) as stranger:
            assert stranger.post("/v1/templates/frozen/versions/2/publish").status_code == 401


def test_a_ten_percent_rollout_is_ten_percent_of_callers_and_sticky(srv: Server) -> None:
    with srv.client() as admin:
        make_template(admin, "rolled")
        r = admin.post("/v1/templates/rolled/releases/stable/rollout", json={"version": 2, "percent": 10}).json()
        assert r["candidate"] == 2 and r["percent"] == 10 and r["version"] == 1

        def version_for(subject: str) -> int:
            return int(admin.get("/v1/templates/rolled/resolve", params={"subject_id": subject}).json()["version"])

        seen = {f"user-{i}": version_for(f"user-{i}") for i in range(2000)}
        share = sum(v == 2 for v in seen.values()) / len(seen)
        assert 0.08 <= share <= 0.12, share
        for subject in list(seen)[:300]:  # each caller always sees the same version
            assert version_for(subject) == seen[subject]
        # Raising the share keeps everyone already on the candidate there.
        admin.post("/v1/templates/rolled/releases/stable/rollout", json={"version": 2, "percent": 30})
        assert all(version_for(s) == 2 for s, v in list(seen.items())[:600] if v == 2)
        # Submits follow the same choice, and the task records it.
        on_candidate = next(s for s, v in seen.items() if v == 2)
        task = wait_terminal(admin, imagine(admin, template="rolled", variables={"subject": "a teapot"}, subject_id=on_candidate).json()["data"][0]["task_id"])
        assert task["template"]["version"] == 2 and task["template"]["rollout"] == "candidate" and task["template"]["release"] == "stable"
        assert task["prompt"] == "studio photo of a teapot, soft light, warm colour grade"


def test_rollback_takes_effect_for_the_very_next_request_and_is_audited(srv: Server) -> None:
    with srv.client() as admin:
        make_template(admin, "reverted")
        admin.post("/v1/templates/reverted/releases/stable/rollout", json={"version": 2, "percent": 100})
        first = imagine(admin, template="reverted", variables={"subject": "a kettle"}).json()["data"][0]["task_id"]
        assert admin.post("/v1/templates/reverted/releases/stable/rollback").json()["candidate"] is None
        second = imagine(admin, template="reverted", variables={"subject": "a kettle"}).json()["data"][0]["task_id"]
        assert wait_terminal(admin, first)["template"]["version"] == 2
        assert wait_terminal(admin, second)["template"]["version"] == 1
        # Promote, then roll the promotion back: the tag returns to the version it served before.
        admin.post("/v1/templates/reverted/releases/stable/rollout", json={"version": 2, "percent": 50})
        assert admin.post("/v1/templates/reverted/releases/stable/pause").json()["paused"] is True
        assert admin.post("/v1/templates/reverted/releases/stable/promote").json()["version"] == 2
        assert admin.post("/v1/templates/reverted/releases/stable/rollback").json()["version"] == 1
        third = imagine(admin, template="reverted", variables={"subject": "a kettle"}).json()["data"][0]["task_id"]
        assert wait_terminal(admin, third)["template"]["version"] == 1
        log = admin.get("/v1/admin/audit", params={"kind": "template", "subject": "reverted"}).json()
        actions = [e["action"] for e in reversed(log)]
        assert actions == ["created", "published", "drafted", "published", "released", "rollout", "rolled back",
                           "rollout", "paused", "promoted", "rolled back"]
        assert all(e["actor"] for e in log)


def test_locked_parameters_and_undeclared_overrides_are_refused_naming_the_parameter(srv: Server) -> None:
    with srv.client() as admin:
        make_template(admin, "branded")
        locked = imagine(admin, template="branded", variables={"subject": "a mug"}, aspect_ratio="16:9")
        assert locked.status_code == 400 and locked.json()["code"] == 4
        assert locked.json()["properties"]["field"] == "aspect_ratio" and "locked by template branded v1" in locked.json()["description"]
        other = imagine(admin, template="branded", variables={"subject": "a mug"}, weird=10)
        assert other.json()["properties"]["field"] == "weird" and "allowed: seed, chaos" in other.json()["description"]
        bad_enum = imagine(admin, template="branded", variables={"subject": "a mug", "mood": "neon"})
        assert bad_enum.json()["properties"]["field"] == "variables.mood"
        forbidden = imagine(admin, template="branded", variables={"subject": "a r1val mug"})
        assert forbidden.json()["properties"]["field"] == "variables.subject" and "forbidden: rival" in forbidden.json()["description"]
        flags = imagine(admin, template="branded", variables={"subject": "a mug --ar 4:1"})
        assert flags.json()["properties"]["field"] == "variables.subject"
        draft = admin.post("/v1/templates/branded/versions", json=SPEC_V1).json()["version"]
        pinned_draft = imagine(admin, template="branded", template_version=draft, variables={"subject": "a mug"})
        assert pinned_draft.json()["properties"]["field"] == "template_version"
        banned = imagine(admin, template="branded", variables={"subject": "a n.u.d.e mug"})
        assert banned.json()["code"] == 24  # the rendered text is moderated like any prompt

        ok = wait_terminal(admin, imagine(admin, template="branded", variables={"subject": "a mug"}, seed=7, chaos=5).json()["data"][0]["task_id"])
        assert ok["status"] == "SUCCESS"
        assert ok["final_prompt"].startswith("studio photo of a mug, soft light --style raw --s 100 --c 5 --no text, watermark --seed 7")
        assert ok["template"] | {"content_hash": ""} == {"name": "branded", "version": 1, "release": "stable", "rollout": "stable",
                                                         "content_hash": "", "variables": {"subject": "a mug"}}
        # Every stored output carries the template in its provenance record.
        record = admin.get(wait_files(admin, ok["task_id"])["renditions"][0]["metadata"]).json()
        assert record["template"]["name"] == "branded" and record["template"]["version"] == 1


def test_a_key_can_be_held_to_templates(srv: Server) -> None:
    out = srv.cli("keys", "create", "--tenant", "brand-app").stdout.split()
    key_id, key = out[1], out[-1]
    with srv.client() as admin, srv.client(key) as app:
        make_template(admin, "policy", tenant="brand-app")
        assert admin.put(f"/v1/admin/keys/{key_id}/template-policy", json={"require_template": True}).status_code == 200
        free = imagine(app, prompt="anything at all")
        assert free.status_code == 400 and "templates only" in free.json()["description"]
        assert imagine(app, template="policy", variables={"subject": "a lamp"}).status_code == 200
    from pixelmill.client import APIError, Client

    with Client(srv.url, key) as sdk:  # the SDK says the same, before sending anything it can check
        task = sdk.wait(sdk.imagine_template("policy", {"subject": "a desk lamp"}, seed=3))
        assert task["template"]["name"] == "policy" and task["seed"] == 3
        with pytest.raises(APIError, match="locked by template policy"):
            sdk.imagine_template("policy", {"subject": "a lamp"}, aspect_ratio="2:3")


def test_an_evaluation_makes_a_contact_sheet_with_reproducible_scores(srv: Server) -> None:
    with srv.client() as admin:
        make_template(admin, "evaluated")
        items = [{"subject": "a red chair"}, {"subject": "a glass vase", "mood": "dramatic"}, {"subject": "a leather boot"}]
        assert admin.put("/v1/templates/evaluated/sets/smoke", json={"items": items}).json()["items"] == items

        def run() -> dict[str, Any]:
            started = admin.post("/v1/templates/evaluated/evaluations", json={"set": "smoke", "baseline": 1, "candidate": 2, "seed": 42})
            assert started.status_code == 200, started.text
            ev_id = started.json()["id"]
            return wait_for(lambda: (e := admin.get(f"/v1/templates/evaluated/evaluations/{ev_id}").json())["state"] == "done" and e,
                            timeout=120, what="evaluation done")

        first = run()
        scores = [p["score"] for p in first["pairs"]]
        assert all(isinstance(s, float) and 0 < s < 1 for s in scores)
        assert first["summary"]["pairs"] == 3 and first["summary"]["scored"] == 3
        assert first["summary"]["mean"] == pytest.approx(sum(scores) / 3, abs=1e-4)
        tasks = [admin.get(f"/v1/midjourney/{p[side]}").json() for p in first["pairs"] for side in ("baseline_task", "candidate_task")]
        assert {t["lane"] for t in tasks} == {"batch"} and [t["template"]["version"] for t in tasks] == [1, 2] * 3
        assert tasks[0]["seed"] == tasks[1]["seed"] == 42 and tasks[2]["seed"] == 46

        # The page: served without a key by its signed link, every image on it decodes, the PNG too.
        link = first["links"]["sheet"]
        bare, query = link.split("?")
        for forged in (bare, link.replace("sig=", "sig=0"), f"{bare}?{query.replace('expires=', 'expires=1')}"):
            assert httpx.get(forged).status_code == 403  # no signature, a wrong one, another expiry
        page = httpx.get(link)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        images = re.findall(r'<img src="([^"]+)"', page.text)
        assert len(images) == 6 and all(download_image(admin, url).size[0] > 0 for url in images)
        assert f"{scores[0]:.4f}" in page.text
        sheet = download_image(admin, first["links"]["png"])
        assert sheet.width > 900 and sheet.height > 3 * 320

        second = run()  # the same evaluation again: the same scores, to the last digit
        assert second["id"] != first["id"] and [p["score"] for p in second["pairs"]] == scores


def test_promotion_can_require_a_finished_evaluation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = Server(tmp_path, ADMIN_KEY, template_promotion_needs_evaluation="true").start()
    try:
        with server.client() as admin:
            make_template(admin, "gated")
            admin.post("/v1/templates/gated/releases/stable/rollout", json={"version": 2, "percent": 10})
            refused = admin.post("/v1/templates/gated/releases/stable/promote")
            assert refused.status_code == 409 and "needs a finished evaluation" in refused.json()["description"]
            admin.put("/v1/templates/gated/sets/one", json={"items": [{"subject": "a cup"}]})
            ev_id = admin.post("/v1/templates/gated/evaluations", json={"set": "one", "baseline": 1, "candidate": 2}).json()["id"]
            wait_for(lambda: admin.get(f"/v1/templates/gated/evaluations/{ev_id}").json()["state"] == "done", timeout=60, what="evaluation")
            assert admin.post("/v1/templates/gated/releases/stable/promote").json()["version"] == 2
    finally:
        server.stop()


def test_the_cli_imports_yaml_from_git_releases_rolls_out_and_evaluates(srv: Server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "docs" / "templates" / "product-shot.yaml").read_text()
    path = tmp_path / "product-shot.yaml"
    path.write_text(source)
    auth = ["--url", srv.url, "--api-key", ADMIN_KEY]
    out = srv.cli("templates", "import", str(path), "--publish", "--release", "stable", *auth).stdout
    assert "product-shot v1: created" in out and "product-shot v1: published" in out and "product-shot/stable → v1" in out
    assert "set catalogue: 4 items" in out
    assert "product-shot v1: unchanged" in srv.cli("templates", "import", str(path), *auth).stdout
    path.write_text(source.replace("product photography", "product photography, warm grade").replace("First cut", "Warmer"))
    out = srv.cli("templates", "import", str(path), "--publish", *auth).stdout
    assert "product-shot v2: new version" in out and "v2: published" in out
    assert "rollout v2 at 25%" in srv.cli("templates", "rollout", "product-shot", "stable", "2", "25", *auth).stdout
    shown = srv.cli("templates", "show", "product-shot", *auth).stdout
    assert "release stable → v1  rollout v2 at 25%" in shown and "v2  published" in shown and "Warmer" in shown
    assert srv.cli("templates", "rollback", "product-shot", *auth).stdout.strip() == "product-shot/stable: v1"
    out = srv.cli("templates", "eval", "product-shot", "--set", "catalogue", "--baseline", "1", "--candidate", "2", *auth).stdout
    assert out.count("  #") == 4 and "/sheet" in out and " done: " in out
    bad = srv.cli("templates", "publish", "product-shot", "1", *auth, check=False)
    assert bad.returncode != 0 and "already published" in bad.stderr


def test_templates_belong_to_a_tenant_or_are_shared(srv: Server) -> None:
    north = srv.cli("keys", "create", "--tenant", "north").stdout.split()[-1]
    south = srv.cli("keys", "create", "--tenant", "south").stdout.split()[-1]
    with srv.client() as admin, srv.client(north) as n, srv.client(south) as s:
        make_template(admin, "north-only", tenant="north")
        make_template(admin, "house-style", shared=True)
        assert admin.put("/v1/templates/north-only/sets/smoke", json={"items": [{"subject": "a map"}]}).status_code == 200

        def names(c: httpx.Client) -> set[str]:
            return {t["name"] for t in c.get("/v1/templates").json()}

        assert {"north-only", "house-style"} <= names(n)
        assert "north-only" not in names(s) and "house-style" in names(s)
        assert imagine(n, template="north-only", variables={"subject": "a compass"}).status_code == 200
        assert imagine(s, template="house-style", variables={"subject": "a compass"}).status_code == 200
        # Another tenant's template is not there for south: not readable, not usable, nothing about it listed.
        for path in ("", "/versions/1", "/resolve", "/sets/smoke", "/evaluations"):
            r = s.get(f"/v1/templates/north-only{path}")
            assert (r.status_code, r.json()["description"]) == (404, "no template north-only"), path
        used = imagine(s, template="north-only", variables={"subject": "a compass"})
        assert used.status_code == 400 and used.json()["description"] == "template: no template north-only"
        both = admin.post("/v1/templates", json={"name": "odd", **SPEC_V1, "tenant": "north", "shared": True})
        assert both.status_code == 400 and both.json()["properties"]["field"] == "shared"
