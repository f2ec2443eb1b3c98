"""Decoded text never shows a broken byte: byte-level sequences that are not UTF-8 are dropped."""

import random

from sedlm.data.tokenizer import gpt2_tokenizer

TEXT = "naïve café — «ok» 日本語 ✓ 🎭 Ünïcödé"


def test_valid_text_round_trips_through_the_byte_path():
    tok = gpt2_tokenizer()
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok._decode_bytes(ids) == TEXT  # the byte map agrees with the tokenizer's own decoder


def test_a_cut_multibyte_character_is_dropped_not_shown():
    tok = gpt2_tokenizer()
    half = tok.tok.token_to_id("Ã")  # 0xC3: the first byte of a two-byte character, alone
    assert "\ufffd" in tok.tok.decode([half, tok.tok.token_to_id("Ġok")])  # what the raw decoder shows
    assert tok.decode([half, tok.tok.token_to_id("Ġok")]) == " ok"


def test_random_token_sequences_never_decode_to_a_replacement_character():
    tok = gpt2_tokenizer()
    rng = random.Random(0)
    byte_tokens = [i for i in range(tok.vocab_size) if len(tok.tok.id_to_token(i) or "") == 1]
    for _ in range(200):
        ids = [rng.choice(byte_tokens) if rng.random() < 0.5 else rng.randrange(tok.vocab_size) for _ in range(24)]
        assert "\ufffd" not in tok.decode(ids)


def test_word_level_tokenizer_round_trips_known_words_and_drops_unknown_ones():
    from sedlm.data.tokenizer import make_tokenizer

    docs = ["The king speaks, and the queen listens.", "A fool waits by the sea!"] * 5
    tok = make_tokenizer("word", 40, docs)
    assert tok.decode(tok.encode("The king speaks, and the fool waits!")) == "The king speaks, and the fool waits!"
    ids = tok.encode("The dragon speaks.")  # "dragon" was never seen
    assert tok.tok.token_to_id("<unk>") in ids and tok.decode(ids) == "The speaks."
    assert {tok.pad_id, tok.eos_id, tok.mask_id} <= set(range(tok.vocab_size))


def test_training_with_a_word_level_tokenizer(tmp_path, tiny_overrides):
    from sedlm import load_pretrained
    from sedlm.cli import main

    out = tmp_path / "word"
    assert main(["train", "--out", str(out), *tiny_overrides, "data.tokenizer=word", "data.vocab_size=200"]) == 0
    model = load_pretrained(out)
    assert model.tokenizer.vocab_size <= 200 + 4 and model.generate(n=1, steps=2)
