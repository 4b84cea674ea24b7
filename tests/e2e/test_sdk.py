"""The Python SDK against the real server: body fields go through the same request model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pixelmill.client import APIError, Client
from tests.helpers import Server
from tests.imageserver import png_bytes


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, server.api_key) as c:
        yield c


def test_imagine_with_body_fields(client: Client) -> None:
    task = client.wait(client.imagine("a girl", niji=True, version=7, seed=3), timeout=30, poll_interval=0.05)
    assert task["final_prompt"] == "a girl --niji 7 --seed 3"


def test_a_bad_field_raises_the_code_4_answer(client: Client, server: Server) -> None:
    with pytest.raises(APIError) as local:
        client.imagine("a cat", chaos=101)
    with server.client() as raw:
        remote = raw.post("/v1/midjourney/generations/imagine", json={"prompt": "a cat", "chaos": 101}).json()
    assert (local.value.code, local.value.description) == (remote["code"], remote["description"])


def test_upload_then_use_it(client: Client) -> None:
    url = client.upload(png_bytes((32, 32)), "image/png")["url"]
    [one, two] = client.imagine_all(f"{url} a cat --repeat 2 --iw 0.5")
    assert client.wait(two, timeout=30, poll_interval=0.05)["status"] == "SUCCESS"
    assert one != two
