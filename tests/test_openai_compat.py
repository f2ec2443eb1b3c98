"""The OpenAI-compatible /v1/completions, driven by the official openai client on loopback."""

from __future__ import annotations

import pytest
from openai import BadRequestError, OpenAI
from tiny_runs import tiny_checkpoint

from sedlm.serve import create_app, server_thread


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(tiny_checkpoint(tmp_path_factory.mktemp("oa") / "sed"))
    with server_thread(app) as url:
        yield OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_completion_continues_the_prompt(client):
    r = client.completions.create(model="sedlm", prompt="The king", max_tokens=6, n=2, seed=0, extra_body={"steps": 3})
    assert r.object == "text_completion" and len(r.choices) == 2 and [c.index for c in r.choices] == [0, 1]
    assert all(not c.text.startswith("The king") for c in r.choices)  # only what the model wrote
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens <= 2 * 6 + 2
    again = client.completions.create(
        model="sedlm", prompt="The king", max_tokens=6, n=2, seed=0, extra_body={"steps": 3}
    )
    assert [c.text for c in again.choices] == [c.text for c in r.choices]  # seeded


def test_streaming_and_infilling_through_suffix(client):
    chunks = list(
        client.completions.create(
            model="sedlm", prompt="The king", max_tokens=5, n=2, stream=True, extra_body={"steps": 3, "sampler": "ddim"}
        )
    )
    assert sorted(c.choices[0].index for c in chunks) == [0, 1]
    r = client.completions.create(
        model="sedlm", prompt="The king", suffix=" in the castle.", max_tokens=4, extra_body={"steps": 3}
    )
    assert "castle" not in r.choices[0].text  # the suffix is given text, not part of the completion


def test_stop_strings_and_errors(client):
    r = client.completions.create(model="sedlm", prompt="The", max_tokens=8, stop=["e"], extra_body={"steps": 3})
    assert "e" not in r.choices[0].text
    with pytest.raises(BadRequestError, match="top_p"):  # sed has no nucleus sampling: said, not ignored
        client.completions.create(model="sedlm", prompt="The", max_tokens=4, top_p=0.5)
    with pytest.raises(BadRequestError, match="one string"):
        client.completions.create(model="sedlm", prompt=["a", "b"], max_tokens=4)


def test_a_canvas_over_the_servers_limit_is_a_400(tmp_path_factory):
    """prompt + max_tokens beyond --max-seq-len answers OpenAI's 400, a documented status."""
    app = create_app(tiny_checkpoint(tmp_path_factory.mktemp("oa-limit") / "sed"))
    with server_thread(app) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(BadRequestError, match="max-seq-len"):
            client.completions.create(model="sedlm", prompt="The king", max_tokens=15, extra_body={"steps": 1})
