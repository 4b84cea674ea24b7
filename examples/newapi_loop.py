"""What a new-api "Midjourney Proxy" channel does with pixelmill as its upstream: submit with
mj-api-secret, poll list-by-condition, press buttons on the result. imagine → U2 → Vary (Strong)
→ Vary (Region) with a mask through /submit/modal. Run it against `make run`:

    PIXELMILL_URL=http://127.0.0.1:8080 PIXELMILL_KEY=pm_... python examples/newapi_loop.py
"""

from __future__ import annotations

import base64
import io
import os
import time
from typing import Any

import httpx
from PIL import Image

POLL_SECONDS = float(os.environ.get("POLL_SECONDS", "2"))  # new-api polls every 15 s
http = httpx.Client(base_url=os.environ.get("PIXELMILL_URL", "http://127.0.0.1:8080"),
                    headers={"mj-api-secret": os.environ["PIXELMILL_KEY"]}, timeout=30)


def submit(path: str, body: dict[str, Any]) -> str:
    answer = http.post(f"/mj/submit/{path}", json=body).json()
    print(f"submit/{path}: code {answer['code']} {answer['description']!r} → {answer['result']}")
    assert answer["code"] in (1, 21, 22), answer
    return str(answer["result"])


def finished(task_id: str) -> dict[str, Any]:
    while True:
        [task] = http.post("/mj/task/list-by-condition", json={"ids": [task_id]}).json()
        if task["progress"] == "100%":
            print(f"  {task['action']} {task['status']} {task['imageUrl']}")
            return dict(task)
        time.sleep(POLL_SECONDS)


def button(task: dict[str, Any], prefix: str) -> str:
    return str(next(b["customId"] for b in task["buttons"] if b["customId"].startswith(prefix)))


grid = finished(submit("imagine", {"prompt": "a lighthouse at dusk --ar 3:2", "base64Array": [], "botType": "MID_JOURNEY"}))
up = finished(submit("action", {"taskId": grid["id"], "customId": button(grid, "MJ::JOB::upsample::2::")}))
vary = finished(submit("action", {"taskId": up["id"], "customId": button(up, "MJ::JOB::high_variation::")}))
region = submit("action", {"taskId": up["id"], "customId": button(up, "MJ::Inpaint::")})  # code 21: MODAL
mask = Image.new("L", (up["width"], up["height"]), 0)
mask.paste(255, (up["width"] // 4, up["height"] // 4, 3 * up["width"] // 4, 3 * up["height"] // 4))
png = io.BytesIO()
mask.save(png, format="PNG")
submit("modal", {"taskId": region, "prompt": "a red door", "maskBase64": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()})
painted = finished(region)
print("done:", [t["action"] for t in (grid, up, vary, painted)], "all", {t["status"] for t in (grid, up, vary, painted)})
