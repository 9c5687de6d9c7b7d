"""A stand-in for the LiteMaaS portal's model sync endpoint (``POST /api/v1/models/sync``), which the models role calls
after a change: it records each call (path, ``Authorization`` header, JSON body) and answers as the portal does
(``{"success": true}``, status 200). It does not copy models: the portal itself cannot run here."""

from __future__ import annotations

import http.server
import json
import threading


class PortalSyncRecorder:
    def __init__(self):
        self.calls: list = []  # (path, Authorization header, body)
        calls = self.calls

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                calls.append((self.path, self.headers.get("Authorization"), body))
                if self.path != "/api/v1/models/sync":
                    self._send(404, {"error": f"no route for POST {self.path}"})
                else:
                    self._send(200, {"success": True})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> PortalSyncRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
