#!/usr/bin/env python3
"""Serve the repository root over HTTP on 127.0.0.1 for the browser build.

Every response carries COOP/COEP headers, which make the page cross-origin
isolated (browsers require that for SharedArrayBuffer, so for the threaded
wasm build), and a Content-Security-Policy that allows same-origin scripts
plus WebAssembly compilation and nothing else. Workers may also start workers
from blob: URLs, as wasm-bindgen-rayon does for its thread pool.
Responses are sent with ``Cache-Control: no-cache`` so rebuilt files show up
on reload. Single byte ranges are supported, which lets the page fetch a
multi-megabyte GGUF file from ``/models/`` in parts.

Files outside the root and any path with a component starting with a dot
(``.git``, ``.ci``) are never served, including through symlinks.

Usage: PORT=8080 scripts/serve.py [--root DIR] [--no-isolation]
PORT=0 picks a free port. The first line printed on stdout is the URL.
--no-isolation leaves out COOP and COEP, to test the one-thread fallback.
"""

from __future__ import annotations

import argparse
import email.utils
import http.server
import logging
import os
import posixpath
import re
import signal
import sys
import urllib.parse
from pathlib import Path

LOG = logging.getLogger("serve")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        # blob: for the pool threads of wasm-bindgen-rayon (no-bundler), which
        # www/worker.js starts. The page's own meta CSP keeps worker-src
        # 'self', so the document itself cannot start blob: workers.
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "object-src 'none'",
        "base-uri 'none'",
    ]
)

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}

SECURITY_HEADERS = {
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".gguf": "application/octet-stream",
    ".bin": "application/octet-stream",
    ".yml": "text/plain; charset=utf-8",
    ".yaml": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

# bytes=START-END, bytes=START- or bytes=-SUFFIX_LENGTH (one range only).
SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

CHUNK_SIZE = 1 << 20


class ForbiddenPath(Exception):
    """Raised for a request path that resolves outside the served root."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a Range header into an inclusive (first, last) byte pair.

    Returns None when the header is not a single byte range, in which case the
    caller sends the whole file as RFC 9110 allows. Raises ValueError when the
    range cannot be satisfied for a file of `size` bytes.
    """
    match = SINGLE_RANGE.match(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if first_text == "" and last_text == "":
        return None

    if first_text == "":
        suffix_length = int(last_text)
        if suffix_length == 0:
            raise ValueError("zero-length suffix range")
        return max(0, size - suffix_length), size - 1

    first = int(first_text)
    last = size - 1 if last_text == "" else min(int(last_text), size - 1)
    if first >= size or first > last:
        raise ValueError(f"range {first}-{last_text} is outside a file of {size} bytes")
    return first, last


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static file handler with isolation headers, byte ranges and path checks."""

    server_version = "prunechat-serve"
    # Keep-alive connections: the page issues many range requests per model.
    protocol_version = "HTTP/1.1"
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}
    # Set to False by --no-isolation.
    cross_origin_isolated = True

    def end_headers(self) -> None:
        headers = {**ISOLATION_HEADERS, **SECURITY_HEADERS} if self.cross_origin_isolated else SECURITY_HEADERS
        for name, value in headers.items():
            self.send_header(name, value)
        super().end_headers()

    def guess_type(self, path: str) -> str:
        return CONTENT_TYPES.get(Path(path).suffix.lower()) or super().guess_type(path)

    def translate_path(self, path: str) -> str:
        """Map a URL path to a file under the root, or raise ForbiddenPath."""
        path = path.split("?", 1)[0].split("#", 1)[0]
        decoded = urllib.parse.unquote(path, errors="strict")
        if "\x00" in decoded or "\\" in decoded:
            raise ForbiddenPath(path)

        parts = [part for part in posixpath.normpath(decoded).split("/") if part]
        if any(part.startswith(".") for part in parts):
            raise ForbiddenPath(path)

        root = Path(self.directory).resolve()
        candidate = root.joinpath(*parts).resolve()
        if candidate != root and root not in candidate.parents:
            raise ForbiddenPath(path)

        result = str(candidate)
        if decoded.endswith("/") and candidate.is_dir():
            result += "/"
        return result

    def send_head(self):
        self._remaining = None
        try:
            path = self.translate_path(self.path)
        except (ForbiddenPath, UnicodeDecodeError):
            LOG.warning("rejected path outside the served files: %r", self.path)
            self.send_error(404, "File not found")
            return None

        if os.path.isdir(path):
            # Directories: redirect to the slash form, then serve index.html
            # or a listing, as SimpleHTTPRequestHandler does.
            return super().send_head()

        try:
            file = open(path, "rb")
        except OSError:
            self.send_error(404, "File not found")
            return None

        try:
            stat = os.fstat(file.fileno())
            size = stat.st_size
            last_modified = self.date_time_string(int(stat.st_mtime))

            if self._not_modified_since(stat.st_mtime):
                self.send_response(304)
                self.send_header("Last-Modified", last_modified)
                self.end_headers()
                file.close()
                return None

            byte_range = None
            range_header = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if range_header and (if_range is None or if_range == last_modified):
                try:
                    byte_range = parse_range(range_header, size)
                except ValueError:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    file.close()
                    return None

            if byte_range is None:
                first, last = 0, size - 1
                self.send_response(200)
            else:
                first, last = byte_range
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")

            self.send_header("Content-Type", self.guess_type(path))
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", last_modified)
            self.end_headers()

            file.seek(first)
            self._remaining = last - first + 1
            return file
        except Exception:
            file.close()
            raise

    def _not_modified_since(self, mtime: float) -> bool:
        header = self.headers.get("If-Modified-Since")
        if header is None or "If-None-Match" in self.headers:
            return False
        try:
            since = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(mtime) <= since.timestamp()

    def copyfile(self, source, outputfile) -> None:
        """Stream the selected byte range of `source` to the client."""
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            # Directory listings arrive as an in-memory buffer.
            super().copyfile(source, outputfile)
            return
        try:
            while remaining > 0:
                chunk = source.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    break
                outputfile.write(chunk)
                remaining -= len(chunk)
        except (BrokenPipeError, ConnectionResetError) as error:
            # Browsers abort range and media requests they no longer need.
            LOG.info("client closed %s before the end: %s", self.path, error)
        finally:
            self._remaining = None

    def log_message(self, format: str, *args) -> None:
        LOG.info("%s %s", self.address_string(), format % args)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (BrokenPipeError, ConnectionResetError)):
            LOG.info("connection from %s closed early: %s", client_address, error)
            return
        LOG.exception("request from %s failed", client_address)


def stop_on_sigterm(signum, frame) -> None:
    """Stop on SIGTERM from `kill` or a test harness, as on Ctrl-C."""
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    default_root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=default_root,
        help=f"directory to serve (default: the repository root, {default_root})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "8080")),
        help="TCP port on 127.0.0.1; 0 picks a free port (default: $PORT or 8080)",
    )
    parser.add_argument(
        "--no-isolation",
        action="store_true",
        help="leave out the COOP and COEP headers, so the page is not cross-origin isolated "
        "and the worker falls back to one thread",
    )
    return parser.parse_args()


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s serve: %(message)s",
        stream=sys.stderr,
    )
    args = parse_args()
    root = args.root.resolve()
    if not root.is_dir():
        LOG.error("root directory not found: %s", root)
        return 2

    Handler.cross_origin_isolated = not args.no_isolation

    def handler(*handler_args, **handler_kwargs):
        return Handler(*handler_args, directory=str(root), **handler_kwargs)

    try:
        server = Server(("127.0.0.1", args.port), handler)
    except OSError as error:
        LOG.error("cannot listen on 127.0.0.1:%d: %s; set PORT to a free port", args.port, error)
        return 1

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    host, port = server.server_address[:2]
    try:
        print(f"http://{host}:{port}/", flush=True)
        LOG.info("serving %s at http://%s:%d/ (Ctrl-C stops)", root, host, port)
        if args.no_isolation:
            LOG.info("COOP and COEP headers are off: pages are not cross-origin isolated")
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
