"""An OpenAI-compatible chat endpoint that answers with the scripted LLM, optionally slowly.

For service reliability runs (a worker killed mid-job needs jobs that take a while; "the LLM
endpoint is down" needs an endpoint to stop) without loading a model: the replies are the scripted
LLM's deterministic ones, served over real HTTP to the real ``openai`` LLM client.

    python bench/service_llm_stub.py --port 8765 --delay 0.5
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: StubServer

    def log_message(self, *_: Any) -> None:
        pass

    def _send(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client (a killed worker) is gone

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        from openscholar.llm.scripted import ScriptedLLM

        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": "not found"}})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        time.sleep(self.server.delay_s)
        completion = ScriptedLLM().complete(body.get("messages") or [])
        self.server.calls += 1
        text = completion.text if self.server.reply is None else self.server.reply
        self._send(200, {
            "id": f"chatcmpl-{self.server.calls}", "object": "chat.completion", "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens},
        })


class StubServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.delay_s = delay_s
        self.reply: str | None = None  # set: every completion is this text (empty or garbled answers)
        self.calls = 0
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> StubServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.0, help="Seconds each completion takes.")
    args = parser.parse_args()
    server = StubServer(args.port, args.delay)
    print(f"scripted OpenAI-compatible endpoint at {server.base_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
