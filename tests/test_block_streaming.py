"""Block models write left to right, so their text can be delivered as each block is finished: ``max_tokens``
caps a request (the canvas rounded up to whole blocks), and the Python API, the CLI, the native stream and
the OpenAI-compatible stream hand out each finished block as soon as it exists."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from openai import OpenAI
from tiny_runs import tiny_checkpoint

from sedlm.api import load_pretrained
from sedlm.cli import main
from sedlm.serve import create_app, server_thread

BLOCK = ("diffusion.block_size=4",)  # rows of 16: four blocks
PROMPT = "The king"
OPTS = {"steps": 2, "seed": 3, "stop_at_eos": False}  # an untrained model may write end-of-text anywhere


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    return {"block": tiny_checkpoint(root / "block", overrides=BLOCK), "row": tiny_checkpoint(root / "row")}


def _generated_tokens(model, text: str) -> int:
    return len(model.tokenizer.encode(text)) - len(model.tokenizer.encode(PROMPT))


def _written(model, prompt: str, max_tokens: int, n: int, **kw) -> list[str]:
    """What the model writes after ``prompt`` on the ``max_tokens`` canvas, cut at ``max_tokens`` by hand."""
    layout, L, end = model.canvas(prompt, max_tokens=max_tokens)
    ids = model.generate_ids(n, seq_len=L, layout=layout, **kw).clone()
    ids[:, end:] = model.tokenizer.pad_id
    return ["".join(p["text"] for p in row if p["generated"]) for row in model.spans(ids, layout)]


def test_max_tokens_rounds_a_block_canvas_up_and_cuts_there(ckpts):
    block, row = load_pretrained(ckpts["block"]), load_pretrained(ckpts["row"])
    given = len(block.tokenizer.encode(PROMPT))
    m = next(m for m in (1, 2, 3) if (given + m) % 4)  # a cap inside the last block
    layout, L, end = block.canvas(PROMPT, max_tokens=m)
    assert (L, end) == (-(-(given + m) // 4) * 4, given + m) and int(layout.given.sum()) == given
    assert row.canvas(PROMPT, max_tokens=m)[1:] == (given + m, given + m)  # a whole-row model: exactly that
    (text,) = block.generate(1, prompt=PROMPT, max_tokens=m, **OPTS)
    full = block.generate_ids(1, seq_len=L, layout=layout, **OPTS)
    assert text == block.texts(full[:, :end])[0] != block.texts(full)[0]  # the tokens past the cap are gone
    with pytest.raises(Exception, match="max_tokens"):
        block.generate(1, prompt=PROMPT, max_tokens=3, seq_len=16)


def test_stream_yields_each_block_as_it_is_written_and_joins_to_generate(ckpts):
    block = load_pretrained(ckpts["block"])
    seen = []
    pieces = list(block.stream(PROMPT, callback=lambda info: seen.append(info["block"]), **OPTS))
    assert "".join(pieces) == block.generate(1, prompt=PROMPT, **OPTS)[0]
    assert len(pieces) >= 3 and (PROMPT.startswith(pieces[0]) or pieces[0].startswith(PROMPT))  # prompt's block first
    assert sorted(set(seen)) == [0, 1, 2, 3] or sorted(set(seen)) == [1, 2, 3]  # the user's callback still runs
    row = load_pretrained(ckpts["row"])
    assert list(row.stream(PROMPT, steps=2, seed=3)) == row.generate(1, prompt=PROMPT, steps=2, seed=3)  # once


def test_cli_streams_and_caps(ckpts, capsys):
    argv = ["sample", "--ckpt", str(ckpts["block"]), "--prompt", PROMPT, "--steps", "2", "--seed", "3"]
    assert main([*argv, "--no-stop-at-eos", "--stream"]) == 0
    streamed = capsys.readouterr().out.strip()
    assert main([*argv, "--no-stop-at-eos", "--json", "--n", "1"]) == 0
    assert streamed == json.loads(capsys.readouterr().out)["samples"][0].strip()
    assert main([*argv, "--no-stop-at-eos", "--json", "--max-tokens", "2"]) == 0
    capped = json.loads(capsys.readouterr().out)["samples"]
    assert all(_generated_tokens(load_pretrained(ckpts["block"]), t) <= 3 for t in capped)
    assert main([*argv, "--stream", "--n", "2"]) == 2
    assert "--stream prints one plain-text sample" in capsys.readouterr().err


def _text(spans: list[dict], generated: bool = False) -> str:
    return "".join(p["text"] for p in spans if p["generated"] or not generated)


def test_the_native_stream_sends_finished_blocks(ckpts):
    client = TestClient(create_app(ckpts["block"]))
    body = {"prompt": PROMPT, "n": 2, **OPTS}
    r = client.post("/v1/generate/stream", json=body)
    events = [
        (line.split(":", 1)[1].strip(), json.loads(data.split(":", 1)[1]))
        for line, data in (e.split("\n")[:2] for e in r.text.strip().split("\n\n"))
    ]
    blocks = [d for e, d in events if e == "block"]
    (result,) = [d for e, d in events if e == "result"]
    assert len(blocks) >= 2
    for b in blocks:  # every block event is a prefix of the final text, row by row
        for spans, final in zip(b["spans"], result["spans"]):
            assert _text(final).startswith(_text(spans))
    capped = client.post("/v1/generate", json={**body, "max_tokens": 9}).json()
    assert capped["seq_len"] == 16 and capped["texts"] != result["texts"]
    model = load_pretrained(ckpts["block"])
    assert [_text(r, generated=True) for r in capped["spans"]] == _written(model, PROMPT, 9, 2, **OPTS)


def test_openai_stream_sends_each_block_and_honours_max_tokens(ckpts):
    with server_thread(create_app(ckpts["block"])) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        kw = {"model": "sedlm", "prompt": PROMPT, "n": 2, "seed": 3, "max_tokens": 9}
        extra = {"extra_body": {"steps": 2, "stop_at_eos": False}}
        whole = client.completions.create(**kw, **extra)
        chunks = list(client.completions.create(**kw, stream=True, **extra))
    for i in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices[0].index == i]
        assert len(mine) >= 2  # block by block, not one chunk at the end
        assert "".join(c.text for c in mine) == whole.choices[i].text
        assert [c.finish_reason for c in mine][-1] == "length" and all(c.finish_reason is None for c in mine[:-1])
    assert [c.text for c in whole.choices] == _written(load_pretrained(ckpts["block"]), PROMPT, 9, 2, **OPTS)


def test_guidance_on_given_tokens_is_refused_by_a_block_model(ckpts):
    """The prompt of a block model sits in finished blocks read through the cache, never as given tokens of
    the block being written, so classifier-free guidance on them would silently do nothing."""
    block = load_pretrained(ckpts["block"])
    with pytest.raises(Exception, match="guidance-mode self_cond"):
        block.generate(1, prompt=PROMPT, guidance=2.5, **OPTS)
    assert block.generate(1, prompt=PROMPT, guidance=2.5, guidance_mode="self_cond", **OPTS)  # this one applies
