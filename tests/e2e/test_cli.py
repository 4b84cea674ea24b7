"""The ``pixelmill`` command line, run as a user would."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.helpers import Server


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.load()  # decodes: the file is a real PNG, not just a header
        return im.size


def test_keys_create_list_revoke(server: Server) -> None:
    created = server.cli("keys", "create", "--tenant", "cli-team", "--name", "ci")
    key_id = created.stdout.split()[1]
    plaintext = created.stdout.strip().splitlines()[-1]
    assert plaintext.startswith("pm_")
    with server.client(plaintext) as c:
        assert c.get("/v1/midjourney/1").status_code == 404  # authenticated, task unknown

    listed = server.cli("keys", "list").stdout
    assert key_id in listed and "tenant=cli-team" in listed and plaintext not in listed

    assert "revoked" in server.cli("keys", "revoke", key_id).stdout
    with server.client(plaintext) as c:
        assert c.get("/v1/midjourney/1").status_code == 401
    again = server.cli("keys", "revoke", key_id, check=False)
    assert again.returncode != 0 and "no active key" in again.stderr


def test_keys_create_refuses_a_bad_tenant(server: Server) -> None:
    r = server.cli("keys", "create", "--tenant", "Bad Tenant!", check=False)
    assert r.returncode != 0 and "tenant: 'Bad Tenant!' must be 1-64" in r.stderr


def test_imagine_saves_grid_images_and_upscale(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = server.cli("imagine", "a lighthouse at dusk --ar 3:2", "--upscale", "2", "--out", str(out))
    paths = [Path(p) for p in r.stdout.split()]
    assert len(paths) == 6  # grid, 4 images, the upscale
    sizes = {p.name.rsplit("_", 1)[-1]: _size(p) for p in paths}
    assert sizes["grid.png"] == (2 * 624, 2 * 416)
    assert sizes["1.png"] == (624, 416)
    upscaled = next(p for p in paths if "_U2_" in p.name)
    image2 = next(p for p in paths if p.name.endswith("_2.png") and "_U2_" not in p.name)
    assert upscaled.read_bytes() == image2.read_bytes()


def test_imagine_reports_a_refusal_clearly(server: Server, tmp_path: Path) -> None:
    r = server.cli("imagine", "a cat --ar 9:1", "--out", str(tmp_path), check=False)
    assert r.returncode != 0 and "code 4" in r.stderr and "--ar" in r.stderr


def test_body_field_options_override_the_prompt(server: Server, tmp_path: Path) -> None:
    r = server.cli("imagine", "a lighthouse --ar 1:1", "--aspect-ratio", "2:3", "--seed", "9", "--no-tile",
                   "--out", str(tmp_path))
    grid = next(Path(p) for p in r.stdout.split() if p.endswith("_grid.png"))
    assert _size(grid) == (2 * 416, 2 * 624)


def test_a_bad_option_is_refused_in_the_words_of_the_api(server: Server, tmp_path: Path) -> None:
    r = server.cli("imagine", "a cat", "--stylize", "5000", "--out", str(tmp_path), check=False)
    assert r.returncode != 0
    assert "[400 / code 4] stylize: Input should be less than or equal to 1000" in r.stderr


def test_upload_prints_a_url_usable_as_an_image_prompt(server: Server, tmp_path: Path) -> None:
    picture = tmp_path / "in.png"
    Image.new("RGB", (80, 60), (250, 250, 0)).save(picture)
    url = server.cli("upload", str(picture)).stdout.strip()
    assert url.startswith(f"{server.url}/files/")
    r = server.cli("imagine", "a cat", "--image-urls", url, "--iw", "2", "--out", str(tmp_path / "out"))
    assert len(r.stdout.split()) == 5


def test_repeat_saves_every_run(server: Server, tmp_path: Path) -> None:
    r = server.cli("imagine", "a cat --repeat 2", "--out", str(tmp_path))
    assert len([p for p in r.stdout.split() if p.endswith("_grid.png")]) == 2


def test_op_commands_run_follow_ups_and_save_their_files(server: Server, tmp_path: Path) -> None:
    from pixelmill.client import Client

    with Client(server.url, server.api_key) as client:
        grid = client.wait(client.imagine("a lake at dawn", seed=11), timeout=30, poll_interval=0.05)
    panned = server.cli("op", "pan", "--task-id", grid["task_id"], "--index", "1", "--direction", "right", "--out", str(tmp_path))
    paths = [Path(p) for p in panned.stdout.split()]
    assert len(paths) == 5 and all(p.suffix == ".png" for p in paths)
    w, h = grid["params"]["width"], grid["params"]["height"]
    assert _size(paths[1]) == (w + w // 2, h)
    short = server.cli("op", "shorten", "--prompt", "a very old castle on a hill, highly detailed")
    assert short.stdout.startswith("1\ufe0f\u20e3 old castle hill")
    waiting = server.cli("op", "inpaint", "--task-id", grid["task_id"], "--index", "2")
    task_id = waiting.stdout.split()[0]
    assert waiting.stdout.strip() == f"{task_id} waits in MODAL: pixelmill op modal --task-id {task_id} ..."
    bad = server.cli("op", "zoom", "--task-id", grid["task_id"], "--index", "1", "--zoom", "3", check=False)
    assert bad.returncode != 0 and "zoom: Input should be less than or equal to 2" in bad.stderr


def test_migrate_brings_a_new_database_to_the_newest_schema_and_exits(tmp_path: Path) -> None:
    from pixelmill.migrations.versions import __path__ as versions

    newest = max(p.name.split("_", 1)[0] for p in Path(versions[0]).glob("0*.py"))
    out = Server(tmp_path, "pm_test_" + "m" * 32).cli("migrate")
    assert out.stdout.strip() == f"database schema at revision {newest}"
    assert (tmp_path / "pixelmill.db").exists()
