"""A lean HTTP/1.1 load generator for benchmarks: keep-alive connections on raw asyncio streams.

httpx spends ~3 ms of CPU per request; on a 2-core box that caps any Python client near 300
requests/s and the benchmark would measure the client. This one parses only what it must
(status line, Content-Length), so the server is what gets measured.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit


async def _connection(host: str, port: int, requests: list[bytes], statuses: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while requests:
            writer.write(requests.pop())
            await writer.drain()
            status_line = await reader.readline()
            statuses.append(int(status_line.split()[1]))
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
    finally:
        writer.close()


def post_json(url: str, path: str, body: dict, api_key: str) -> bytes:
    host = urlsplit(url).netloc
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def run(url: str, requests: list[bytes], concurrency: int) -> tuple[float, list[int]]:
    """Send every request over ``concurrency`` keep-alive connections; returns (req/s, statuses)."""
    parts = urlsplit(url)
    statuses: list[int] = []
    total = len(requests)
    t = time.perf_counter()
    await asyncio.gather(*(_connection(parts.hostname or "127.0.0.1", parts.port or 80, requests, statuses) for _ in range(concurrency)))
    return total / (time.perf_counter() - t), statuses
