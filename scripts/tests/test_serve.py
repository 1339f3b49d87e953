"""Tests for scripts/serve.py against a real server process on 127.0.0.1.

Run with: python3 -m unittest discover -s scripts/tests -v
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

SERVE_PY = Path(__file__).resolve().parent.parent / "serve.py"

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
    "connect-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'"
)


class ServeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.temp_dir = tempfile.TemporaryDirectory()
        base = Path(cls.temp_dir.name)
        root = base / "root"
        (root / "models").mkdir(parents=True)
        (root / "pkg").mkdir()
        (root / ".git").mkdir()
        (root / "index.html").write_text("<!doctype html><title>t</title>\n")
        (root / "pkg" / "module.wasm").write_bytes(b"\0asm\1\0\0\0")
        (root / "pkg" / "glue.js").write_text("export {};\n")
        (root / "pkg" / "worker.mjs").write_text("export {};\n")
        (root / "models" / "model.gguf").write_bytes(bytes(range(256)) * 4)
        (root / ".git" / "config").write_text("secret\n")
        (base / "outside.txt").write_text("outside\n")
        (root / "pkg" / "link.txt").symlink_to(base / "outside.txt")

        cls.server = subprocess.Popen(
            [sys.executable, str(SERVE_PY), "--root", str(root)],
            env={**os.environ, "PORT": "0"},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        url = cls.server.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            cls.server.kill()
            raise RuntimeError(f"serve.py printed {url!r} instead of its URL")
        cls.port = int(url.rstrip("/").rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.terminate()
        cls.server.wait(timeout=10)
        cls.server.stdout.close()
        cls.temp_dir.cleanup()

    def request(self, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.addCleanup(connection.close)
        # http.client sends the path unchanged, so "../" and percent escapes
        # reach the server as written.
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response, body

    def test_isolation_headers_on_every_response(self):
        for path in ["/", "/index.html", "/models/model.gguf", "/missing"]:
            response, _ = self.request(path)
            with self.subTest(path=path):
                self.assertEqual(response.getheader("Cross-Origin-Opener-Policy"), "same-origin")
                self.assertEqual(response.getheader("Cross-Origin-Embedder-Policy"), "require-corp")
                self.assertEqual(response.getheader("Content-Security-Policy"), EXPECTED_CSP)
                self.assertEqual(response.getheader("Cache-Control"), "no-cache")

    def test_content_types(self):
        cases = {
            "/pkg/module.wasm": "application/wasm",
            "/pkg/glue.js": "text/javascript; charset=utf-8",
            "/pkg/worker.mjs": "text/javascript; charset=utf-8",
            "/models/model.gguf": "application/octet-stream",
            "/index.html": "text/html; charset=utf-8",
        }
        for path, content_type in cases.items():
            response, _ = self.request(path)
            with self.subTest(path=path):
                self.assertEqual(response.status, 200)
                self.assertEqual(response.getheader("Content-Type"), content_type)

    def test_whole_file(self):
        response, body = self.request("/models/model.gguf")
        self.assertEqual(response.status, 200)
        self.assertEqual(body, bytes(range(256)) * 4)
        self.assertEqual(response.getheader("Content-Length"), "1024")
        self.assertEqual(response.getheader("Accept-Ranges"), "bytes")

    def test_byte_ranges(self):
        data = bytes(range(256)) * 4
        cases = {
            "bytes=0-3": (0, 3),
            "bytes=1000-": (1000, 1023),
            "bytes=-24": (1000, 1023),
            "bytes=1020-5000": (1020, 1023),
        }
        for range_header, (first, last) in cases.items():
            response, body = self.request("/models/model.gguf", {"Range": range_header})
            with self.subTest(range=range_header):
                self.assertEqual(response.status, 206)
                self.assertEqual(body, data[first : last + 1])
                self.assertEqual(response.getheader("Content-Range"), f"bytes {first}-{last}/1024")

    def test_unsatisfiable_range(self):
        for range_header in ["bytes=1024-", "bytes=10-5", "bytes=-0"]:
            response, _ = self.request("/models/model.gguf", {"Range": range_header})
            with self.subTest(range=range_header):
                self.assertEqual(response.status, 416)
                self.assertEqual(response.getheader("Content-Range"), "bytes */1024")

    def test_multiple_ranges_send_whole_file(self):
        response, body = self.request("/models/model.gguf", {"Range": "bytes=0-1,4-5"})
        self.assertEqual(response.status, 200)
        self.assertEqual(len(body), 1024)

    def test_head_has_no_body(self):
        response, body = self.request("/models/model.gguf", method="HEAD")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.getheader("Content-Length"), "1024")
        self.assertEqual(body, b"")

    def test_paths_outside_root_rejected(self):
        paths = [
            "/../outside.txt",
            "/pkg/../../outside.txt",
            "/%2e%2e/outside.txt",
            "/..%2foutside.txt",
            "/pkg/link.txt",
            "/.git/config",
            "/pkg/..%2f.git/config",
            "/%c0%ae%c0%ae/outside.txt",
            "/pkg/%00glue.js",
            "../outside.txt",
        ]
        for path in paths:
            response, body = self.request(path)
            with self.subTest(path=path):
                self.assertEqual(response.status, 404)
                self.assertNotIn(b"outside", body)
                self.assertNotIn(b"secret", body)

    def test_directory_redirects_to_slash(self):
        response, _ = self.request("/pkg")
        self.assertEqual(response.status, 301)
        self.assertTrue(response.getheader("Location").endswith("/pkg/"))

    def test_no_isolation_drops_coop_and_coep(self):
        process = subprocess.Popen(
            [
                sys.executable,
                str(SERVE_PY),
                "--port",
                "0",
                "--root",
                str(Path(self.temp_dir.name) / "root"),
                "--no-isolation",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            url = process.stdout.readline().strip()
            self.assertTrue(url.startswith("http://127.0.0.1:"), url)
            port = int(url.rstrip("/").rsplit(":", 1)[1])
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            self.addCleanup(connection.close)
            connection.request("GET", "/index.html")
            response = connection.getresponse()
            response.read()
            self.assertEqual(response.status, 200)
            self.assertIsNone(response.getheader("Cross-Origin-Opener-Policy"))
            self.assertIsNone(response.getheader("Cross-Origin-Embedder-Policy"))
            self.assertEqual(response.getheader("Content-Security-Policy"), EXPECTED_CSP)
            self.assertEqual(response.getheader("Cross-Origin-Resource-Policy"), "same-origin")
        finally:
            process.terminate()
            process.wait(timeout=10)
            process.stdout.close()

    def test_server_stops_on_sigterm(self):
        process = subprocess.Popen(
            [sys.executable, str(SERVE_PY), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            self.assertTrue(process.stdout.readline().startswith("http://127.0.0.1:"))
            process.terminate()
            self.assertEqual(process.wait(timeout=10), 0)
        finally:
            process.kill()
            process.stdout.close()


if __name__ == "__main__":
    unittest.main()
