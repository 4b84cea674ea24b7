"""A server on S3-compatible storage (a moto server on loopback): results land in the bucket and
clients fetch them by presigned URL; uploads and pixelmill's /files route read from the bucket."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import boto3
import httpx
from PIL import Image

from tests.conftest import TEST_KEY
from tests.helpers import Server, wait_files, wait_terminal


def test_results_live_in_the_bucket_and_are_served_by_signed_url(tmp_path: Path, s3_endpoint: str) -> None:
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="pixelmill-e2e")
    srv = Server(tmp_path, TEST_KEY, storage="s3", s3_bucket="pixelmill-e2e", s3_endpoint_url=s3_endpoint, s3_region="us-east-1",
                 s3_prefix="outputs/", s3_url_mode="presigned").start()
    try:
        with srv.client() as api:
            task = wait_terminal(api, api.post("/v1/midjourney/generations/imagine", json={"prompt": "a bucket of light", "seed": 1, "previews": True}).json()["data"][0]["task_id"])
            assert task["status"] == "SUCCESS"
            url = task["image_urls"][0]
            assert url.startswith(f"{s3_endpoint}/pixelmill-e2e/outputs/") and "X-Amz-Signature=" in url
            assert Image.open(io.BytesIO(httpx.get(url).content)).size == (task["params"]["width"], task["params"]["height"])
            wait_files(api, task["task_id"])
            names = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="pixelmill-e2e")["Contents"]]
            # The grid; per image its file, web and thumb renditions and provenance JSON; previews
            # (asked for; one per preview interval of the run: how many depends on the machine's speed).
            by_ext = Counter(n.rsplit(".", 1)[1] for n in names)
            assert (by_ext["png"], by_ext["webp"], by_ext["json"]) == (1 + 4, 4 * 2, 4) and by_ext["jpg"] >= 1
            assert set(by_ext) == {"png", "webp", "json", "jpg"} and all(n.startswith("outputs/") for n in names)
            key = url.split("/outputs/", 1)[1].split("?", 1)[0]
            served = api.get(f"/files/{key}")  # the /files route reads the bucket too
            assert served.status_code == 200 and served.content == httpx.get(url).content
            up = api.post("/v1/midjourney/generations/upscale", json={"task_id": task["task_id"], "index": 1})
            assert wait_terminal(api, up.json()["data"][0]["task_id"])["status"] == "SUCCESS"
            assert api.get("/readyz").json()["checks"]["storage"] == "ok"
    finally:
        srv.stop()
