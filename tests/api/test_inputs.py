"""Input images over HTTP: uploads, image prompts from pixelmill's own storage (no network) and
from an allowed host, and every SSRF refusal as a code-4 answer naming the URL and the reason."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import Server, wait_terminal
from tests.imageserver import ImageServer, body, endless, png_bomb, png_bytes, redirect

IMAGINE = "/v1/midjourney/generations/imagine"
GREEN = png_bytes((300, 200), (20, 230, 40))


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    """An image host on the allow-listed 127.0.0.2."""
    with ImageServer({"/green.png": body(GREEN)}, host="127.0.0.2") as srv:
        yield srv


def upload(api: httpx.Client, data: bytes, content_type: str = "image/png") -> httpx.Response:
    return api.post("/v1/uploads", content=data, headers={"Content-Type": content_type})


def refusal(api: httpx.Client, body: dict[str, Any]) -> str:
    r = api.post(IMAGINE, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 4
    return str(r.json()["description"])


def test_an_upload_answers_a_url_that_serves_the_same_bytes(api: httpx.Client) -> None:
    r = upload(api, GREEN)
    assert r.status_code == 200, r.text
    [item] = r.json()["data"]
    assert r.json()["code"] == 1
    assert (item["content_type"], item["width"], item["height"], item["bytes"]) == ("image/png", 300, 200, len(GREEN))
    assert api.get(item["url"]).content == GREEN


def test_multipart_upload_works_too(api: httpx.Client) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (50, 40), (1, 2, 3)).save(buf, "JPEG")
    r = api.post("/v1/uploads", files={"file": ("me.jpg", buf.getvalue(), "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["content_type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("data", "content_type", "description"),
    [
        (b"<svg/>", "image/png", "file: the upload: is not a PNG, JPEG or WebP image (judged by its bytes)"),
        (png_bomb(20_000), "image/png",
         "file: the upload: declares more than 25,000,000 pixels (a decompression bomb, or simply too large)"),
        (GREEN, "text/plain",
         ("Content-Type: send the image as the raw body (image/png, image/jpeg, image/webp, "
          "application/octet-stream) or as multipart/form-data with a field 'file', got 'text/plain'")),
        (b"\x00" * (12 * 1024 * 1024 + 1), "image/png", "file: is larger than 12,582,912 bytes (Content-Length 12,582,913)"),
    ],
)
def test_bad_uploads_are_code_4(api: httpx.Client, data: bytes, content_type: str, description: str) -> None:
    r = upload(api, data, content_type)
    assert r.status_code == 400
    assert (r.json()["code"], r.json()["description"]) == (4, description)


def test_an_oversize_chunked_upload_is_cut_off_while_streaming(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: only counting can stop it
        for _ in range(14):
            yield b"\x00" * (1024 * 1024)

    r = api.post("/v1/uploads", content=chunks(), headers={"Content-Type": "image/png"})
    assert r.status_code == 400
    assert r.json()["description"] == "file: is larger than 12,582,912 bytes"


def test_upload_needs_a_key(server: Server) -> None:
    r = httpx.post(f"{server.url}/v1/uploads", content=GREEN, headers={"Content-Type": "image/png"})
    assert r.status_code == 401


def _mean_green(api: httpx.Client, task: dict[str, Any]) -> float:
    with Image.open(io.BytesIO(api.get(task["image_urls"][0]).content)) as im:
        return float(np.asarray(im.convert("RGB"), dtype=np.float32)[..., 1].mean())


def test_an_uploaded_image_works_as_an_image_prompt_without_any_fetch(api: httpx.Client) -> None:
    # The upload URL points at 127.0.0.1, which the fetcher refuses: success proves it was read
    # from storage, with no outbound request.
    url = upload(api, GREEN).json()["data"][0]["url"]
    plain = api.post(IMAGINE, json={"prompt": "a dark night sky --seed 3"}).json()["data"][0]["task_id"]
    guided = api.post(IMAGINE, json={"prompt": f"{url} a dark night sky --iw 3 --seed 3"}).json()
    assert guided["code"] == 1, guided
    a, b = wait_terminal(api, plain), wait_terminal(api, guided["data"][0]["task_id"])
    assert b["status"] == "SUCCESS", b
    assert b["final_prompt"] == f"{url} a dark night sky --iw 3 --seed 3"
    assert b["params"]["inputs"]["image_urls"][0]["width"] == 300
    assert _mean_green(api, b) > _mean_green(api, a) + 40  # the green picture pulled it over


def test_a_relative_file_url_in_image_urls_is_spelled_out(api: httpx.Client, server: Server) -> None:
    url = upload(api, GREEN).json()["data"][0]["url"]
    relative = url[len(server.url):]
    r = api.post(IMAGINE, json={"prompt": "a cat --seed 1", "image_urls": [relative]})
    assert r.status_code == 200, r.text
    task = api.get(f"/v1/midjourney/{r.json()['data'][0]['task_id']}").json()
    assert task["final_prompt"] == f"{server.url}{relative} a cat --seed 1"


def test_an_image_from_an_allowed_host_is_fetched_and_rehosted(api: httpx.Client, images: ImageServer) -> None:
    r = api.post(IMAGINE, json={"prompt": "a cat", "image_urls": [images.url("/green.png")], "iw": 2})
    assert r.status_code == 200, r.text
    task = wait_terminal(api, r.json()["data"][0]["task_id"])
    assert task["status"] == "SUCCESS"
    stored = task["params"]["inputs"]["image_urls"][0]
    assert stored["url"] == images.url("/green.png")
    assert api.get(f"/files/{stored['key']}").content == GREEN  # our own copy: the worker never fetches


def test_a_missing_own_file_is_code_4(api: httpx.Client, server: Server) -> None:
    url = f"{server.url}/files/00/00/{'0' * 64}.png"
    assert refusal(api, {"prompt": "a cat", "image_urls": [url]}) == (
        f"image_urls[0]: {url}: no such file in pixelmill's storage"
    )


def test_a_redirect_to_loopback_is_code_4(api: httpx.Client, images: ImageServer) -> None:
    with ImageServer({"/secret.png": body(GREEN)}) as inside:
        images.routes["/jump.png"] = redirect(inside.url("/secret.png"))
        url = images.url("/jump.png")
        assert refusal(api, {"prompt": f"{url} a cat"}) == (
            f"prompt: {url}: 127.0.0.1 is a loopback address; only public hosts are fetched"
        )
        assert inside.hits == []


def test_a_host_resolving_to_a_private_address_is_code_4(api: httpx.Client) -> None:
    with ImageServer({"/a.png": body(GREEN)}) as inside:
        url = inside.url("/a.png", host="localhost")
        assert refusal(api, {"prompt": "a cat", "sref": [url]}) == (
            f"sref[0]: {url}: localhost resolves to 127.0.0.1, a loopback address; only public hosts are fetched"
        )
        assert inside.hits == []


def test_an_oversize_download_without_length_is_code_4(api: httpx.Client, images: ImageServer) -> None:
    images.routes["/huge.png"] = endless(total=64 * 1024 * 1024)
    url = images.url("/huge.png")
    assert refusal(api, {"prompt": "a cat", "image_urls": [url]}) == f"image_urls[0]: {url}: is larger than 12,582,912 bytes"


def test_a_png_bomb_is_code_4(api: httpx.Client, images: ImageServer) -> None:
    images.routes["/bomb.png"] = body(png_bomb(20_000))
    url = images.url("/bomb.png")
    assert refusal(api, {"prompt": f"{url} a cat"}) == (
        f"prompt: {url}: declares more than 25,000,000 pixels (a decompression bomb, or simply too large)"
    )
