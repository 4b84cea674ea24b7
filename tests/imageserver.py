"""A real HTTP server on loopback that serves test images, redirects, oversize and slow bodies:
the far side of every input-image fetch in the tests."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from PIL import Image

Route = Callable[[BaseHTTPRequestHandler], None]


def png_bytes(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(buf, "PNG")
    return buf.getvalue()


def png_bomb(side: int = 30_000) -> bytes:
    """A valid greyscale PNG of ``side`` x ``side`` zero pixels: a few hundred KiB that would
    decode to ``side``² bytes. Written by hand, streaming, so the test never holds the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def body(data: bytes, content_type: str = "image/png", status: int = 200) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return route


def redirect(location: str, status: int = 302) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def endless(chunk: int = 64 * 1024, total: int = 13 * 1024 * 1024) -> Route:
    """A body with no Content-Length, delimited by closing the connection: only counting while
    it streams can stop it."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Connection", "close")
        h.end_headers()
        sent = 0
        block = png_bytes()[:16] + b"\x00" * (chunk - 16)
        try:
            while sent < total:
                h.wfile.write(block)
                sent += len(block)
        except OSError:
            pass  # the client hung up, as it should

    return route


class ImageServer:
    """``with ImageServer({"/a.png": body(png_bytes())}, host="127.0.0.2") as srv: srv.url("/a.png")``"""

    def __init__(self, routes: dict[str, Route], host: str = "127.0.0.1") -> None:
        self.routes = routes
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                outer.hits.append(self.path)
                route = outer.routes.get(self.path)
                if route is None:
                    body(b"not found", "text/plain", 404)(self)
                else:
                    route(self)

            def log_message(self, *_: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
