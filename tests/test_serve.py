"""The HTTP API: endpoints, limits, errors, server-sent events and cancellation when the client leaves."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from tiny_runs import slow_model, tiny_checkpoint, wait_idle

from sedlm.api import load_pretrained
from sedlm.errors import SedlmError
from sedlm.families import get_family
from sedlm.serve import Limits, create_app, server_thread

TEMPLATE = "The king [___] in the [___:2]."


@pytest.fixture(scope="module")
def sed_ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("serve") / "sed")


@pytest.fixture(scope="module")
def client(sed_ckpt):
    return TestClient(create_app(sed_ckpt, Limits(max_n=4, max_steps=50, max_body_bytes=2048, max_text_chars=200)))


def parse_sse(body: str) -> list[tuple[str, dict]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_health_model_page_and_schema(client):
    assert client.get("/healthz").json() == {"status": "ok", "pending": 0}
    info = client.get("/v1/model").json()
    assert info["family"] == "sed" and info["seq_len"] == 16 and "ddim" in info["samplers"]
    assert info["limits"]["max_n"] == 4 and info["limits"]["max_seq_len"] == 16
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/v1/generate/stream" in page.text and "http://" not in page.text and "https://" not in page.text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/generate", "/v1/infill", "/v1/generate/stream", "/v1/model", "/healthz"} <= set(paths)


def test_generate_prompt_and_unconditional(client):
    r = client.post("/v1/generate", json={"n": 2, "steps": 4, "sampler": "ddim", "seed": 3, "prompt": "The king"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["texts"]) == 2 and all(t.startswith("The king") for t in body["texts"])
    assert body["options"]["sampler"] == "ddim" and body["steps"] == 4 and body["tokens"] == 2 * 16
    again = client.post("/v1/generate", json={"n": 2, "steps": 4, "sampler": "ddim", "seed": 3, "prompt": "The king"})
    assert again.json()["texts"] == body["texts"]  # seeded: reproducible
    assert client.post("/v1/generate", json={"steps": 3}).status_code == 200


def test_infill_keeps_the_template_words(client):
    r = client.post("/v1/infill", json={"template": TEMPLATE, "steps": 4, "guidance": 2.0})
    assert r.status_code == 200, r.text
    text = r.json()["texts"][0]
    assert text.startswith("The king") and " in the" in text and text.endswith(".")


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"n": 5}, 422, "less than or equal to 4 (this server's limit, set by --max-n)"),
        ({"steps": 51}, 422, "set by --max-steps"),
        ({"seq_len": 64}, 422, "set by --max-seq-len"),
        ({"prompt": "The king", "max_tokens": 16}, 400, "ask for fewer max_tokens"),  # no schema bounds the sum
        ({"prompt": "x" * 201}, 422, "at most 200 characters (this server's limit, set by --max-text-chars)"),
        ({"guidance_mode": "bogus"}, 422, None),
        ({"sampler": "nope"}, 422, None),  # the schema lists the family's samplers
        ({"score_temp": 0}, 422, None),
        ({"seed": 2**70}, 422, None),
        ({"seed": False}, 422, None),
        ({"n": True}, 422, None),
        ({"steps": "3"}, 422, None),
        ({"guidance": "2"}, 422, None),
        ({"prompt": "a", "src": "b"}, 400, "not both"),
        ({"prompt": "the king speaks " * 10}, 400, "shorten the prompt"),
    ],
)
def test_generate_limits_and_user_errors(client, body, status, fragment):
    r = client.post("/v1/generate", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if status == 422:  # every 422 has the validation-error shape the schema publishes, naming the field
        assert detail[0]["loc"] == ["body", next(iter(body))] and (fragment or "") in detail[0]["msg"], r.text
    else:
        assert isinstance(detail, str) and fragment in detail, r.text


@pytest.mark.parametrize(
    "template, status, fragment",
    [
        ("no blanks here", 400, "no blanks"),
        ("the king [___:40]", 400, "sequence length"),
        ("[___] " + "y" * 200, 422, "set by --max-text-chars"),
    ],
)
def test_infill_errors(client, template, status, fragment):
    r = client.post("/v1/infill", json={"template": template, "steps": 2})
    detail = r.json()["detail"]
    assert r.status_code == status and fragment in (detail[0]["msg"] if status == 422 else detail), r.text


def test_body_size_unknown_fields_and_bad_json(client):
    r = client.post(
        "/v1/generate", content=b'{"prompt": "' + b"a" * 3000 + b'"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "2048 bytes" in r.json()["detail"]
    # the bytes count, not the header: a body streamed without Content-Length is measured as it arrives
    r = client.post(
        "/v1/generate",
        content=iter([b'{"prompt": "', b"a" * 3000, b'"}']),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    r = client.post("/v1/generate", json={"n": 1, "temperature": 0.5})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "extra_forbidden"
    r = client.post("/v1/infill", json={"steps": 2})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "template"]
    r = client.post("/v1/generate", content=b'{"n": 1,', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    assert client.post("/v1/generate", json={"n": 0}).status_code == 422


def test_stream_sends_every_step_then_the_result(client):
    r = client.post("/v1/generate/stream", json={"template": TEMPLATE, "steps": 6, "seed": 1})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    steps = [d for e, d in events if e == "step"]
    assert [d["step"] for d in steps] == [1, 2, 3, 4, 5, 6] and all(d["steps"] == 6 for d in steps)
    assert all(d["texts"][0].startswith("The king") for d in steps)  # given words shown from the first step
    kind, result = events[-1]
    assert kind == "result" and result["texts"] == steps[-1]["texts"]
    same = client.post("/v1/infill", json={"template": TEMPLATE, "steps": 6, "seed": 1}).json()
    assert same["texts"] == result["texts"]
    assert client.post("/v1/generate/stream", json={"template": "no blanks"}).status_code == 400


def test_stream_thins_long_runs(sed_ckpt):
    client = TestClient(create_app(sed_ckpt, Limits(stream_events=5)))
    events = parse_sse(client.post("/v1/generate/stream", json={"steps": 20}).text)
    assert [d["step"] for e, d in events if e == "step"] == [1, 5, 9, 13, 17, 20]


def test_disconnect_stops_the_work_and_full_queue_is_503(sed_ckpt):
    model, calls = slow_model(sed_ckpt)
    app = create_app(model, Limits(max_queue=1))
    with server_thread(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        with http.stream("POST", "/v1/generate/stream", json={"steps": 1000}) as r:
            lines = r.iter_lines()
            assert next(lines) == "event: step"
            busy = http.post("/v1/generate", json={"steps": 1})
            assert busy.status_code == 503 and "--max-queue" in busy.json()["detail"]
        # closing the response dropped the connection: the sampler must stop well before 1000 steps
        assert wait_idle(app.state.runner)
        stopped_at = len(calls)
        assert stopped_at < 500, f"{stopped_at} network calls ran after the client left"
        time.sleep(0.1)
        assert len(calls) == stopped_at
        assert http.post("/v1/generate", json={"steps": 2}).status_code == 200


def test_requests_queue_instead_of_running_together(sed_ckpt):
    model = load_pretrained(sed_ckpt)
    running, most = [0], [0]

    def enter(*_):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.002)
        running[0] -= 1

    model.model.register_forward_pre_hook(enter)
    client = TestClient(create_app(model, Limits(max_queue=8)))
    codes = []
    threads = [
        threading.Thread(target=lambda: codes.append(client.post("/v1/generate", json={"steps": 10}).status_code))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 4 and most[0] == 1


@pytest.fixture(scope="module", params=["ar", "mdlm"])
def baseline_client(request, tmp_path_factory):
    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("serve") / request.param, method=request.param)
    return request.param, TestClient(create_app(ckpt))


def test_baselines(baseline_client):
    method, client = baseline_client
    info = client.get("/v1/model").json()
    assert info["family"] == method and info["samplers"] == [] and info["d_embed"] is None
    r = client.post("/v1/generate", json={"n": 2, "steps": 4, "prompt": "The king"})
    assert r.status_code == 200 and all(t.startswith("The king") for t in r.json()["texts"]), r.text
    r = client.post("/v1/generate", json={"sampler": "ddim"})  # an option this family does not declare
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "extra_forbidden"
    assert [o["name"] for o in info["options"]] == [o.name for o in get_family(method).options if o.per_request]
    events = parse_sse(client.post("/v1/generate/stream", json={"steps": 4}).text)
    assert events[-1][0] == "result"
    infill = client.post("/v1/infill", json={"template": TEMPLATE, "steps": 4})
    if method == "ar":
        assert infill.status_code == 400 and "does not support infilling" in infill.json()["detail"]
        assert [e for e, _ in events] == ["result"]  # one network call per token: no denoising steps to show
    else:
        assert infill.status_code == 200 and infill.json()["texts"][0].startswith("The king")
        assert [e for e, _ in events].count("step") >= 1


def test_limits_are_checked():
    with pytest.raises(SedlmError, match="--max-queue must be positive"):
        Limits(max_queue=0)


def test_responses_mark_generated_spans(client):
    r = client.post("/v1/infill", json={"template": TEMPLATE, "steps": 3, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    for text, spans in zip(body["texts"], body["spans"]):
        assert "".join(s["text"] for s in spans) == text
        assert "".join(s["text"] for s in spans if not s["generated"]) == "The king in the."
        assert any(s["generated"] for s in spans)
    r = client.post("/v1/generate", json={"steps": 3})  # unconditional: everything is generated
    assert all(s["generated"] for s in r.json()["spans"][0])


def test_infinite_floats_docs_and_hosts(sed_ckpt):
    client = TestClient(create_app(sed_ckpt, allowed_hosts=["localhost", "testserver"]))
    r = client.post("/v1/generate", content=b'{"guidance": 1e400}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "guidance"]
    assert client.get("/docs").status_code == 404  # the CDN-backed page is off; the schema stays
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/v1/generate"]["post"]["responses"]
    assert {"200", "400", "413", "422", "503"} <= set(responses)
    assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/healthz").status_code == 200


def test_time_limit_is_a_503(sed_ckpt):
    model, _ = slow_model(sed_ckpt, seconds_per_call=0.01)
    client = TestClient(create_app(model, Limits(max_seconds=1)))
    start = time.monotonic()
    r = client.post("/v1/generate", json={"steps": 1000})
    assert r.status_code == 503 and "--max-seconds" in r.json()["detail"] and time.monotonic() - start < 5
    assert client.post("/v1/generate", json={"steps": 2}).status_code == 200  # the slot was freed


def test_a_client_that_leaves_a_plain_request_stops_the_work(sed_ckpt):
    model, calls = slow_model(sed_ckpt)
    app = create_app(model, Limits(max_queue=1))
    with server_thread(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/generate", json={"steps": 1000}, timeout=0.5)
        assert wait_idle(app.state.runner, timeout=3.0)  # the slot is free again well before 1000 steps
        stopped_at = len(calls)
        assert stopped_at < 600, f"{stopped_at} network calls ran after the client left"
        assert httpx.post(f"{url}/v1/generate", json={"steps": 2}, timeout=10).status_code == 200


SLOW_STARTS = {
    # the first request's headers, never finished
    "headers": b"POST /v1/generate HTTP/1.1\r\nHost: x\r\n",
    # one whole request on a kept-alive connection, then the next one's headers, never finished
    "keepalive": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a",
    # whole headers, then a body that never arrives in full
    "body": b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{",
}


@pytest.mark.parametrize("kind", list(SLOW_STARTS))
def test_slow_clients_are_dropped_and_do_not_block_others(sed_ckpt, kind):
    import socket

    with server_thread(create_app(sed_ckpt), read_timeout=1.0) as url:
        host, port = url.split("//")[1].split(":")
        held = []
        for _ in range(100 if kind == "headers" else 30):  # slowloris: a request started, never finished
            s = socket.create_connection((host, int(port)))
            s.sendall(SLOW_STARTS[kind])
            held.append(s)
        start = time.monotonic()
        assert httpx.post(f"{url}/v1/generate", json={"steps": 2}, timeout=10).status_code == 200
        assert time.monotonic() - start < 2.0
        time.sleep(2.0)
        closed = 0
        for s in held:
            s.settimeout(1.0)
            try:
                while chunk := s.recv(65536):  # a kept-alive connection first gets its finished request's answer
                    assert chunk.startswith(b"HTTP/1.1 200") and kind == "keepalive", chunk[:80]
                closed += 1
            except (TimeoutError, OSError):
                pass
            s.close()
        assert closed == len(held)  # every half-open connection was closed by the server
