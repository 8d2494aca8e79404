"""A minimal Hugging Face hub on 127.0.0.1, enough for `huggingface_hub.hf_hub_download`
(`HF_ENDPOINT=http://127.0.0.1:<port>`): HEAD and GET of `/<repo id>/resolve/<revision>/<file>`
with the headers the client reads (`X-Repo-Commit`, `ETag`, `Content-Length`). Counts downloads."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubServer:
    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = repos
        self.downloads = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _file(self) -> bytes | None:
                for repo, files in hub.repos.items():
                    prefix = f"/{repo}/resolve/"
                    if self.path.startswith(prefix):
                        _, _, name = self.path[len(prefix):].partition("/")
                        return files.get(name)
                return None

            def _headers(self, content: bytes | None) -> None:
                if content is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802 (http.server's names)
                self._headers(self._file())

            def do_GET(self) -> None:  # noqa: N802
                content = self._file()
                self._headers(content)
                if content is not None:
                    hub.downloads += 1
                    self.wfile.write(content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
