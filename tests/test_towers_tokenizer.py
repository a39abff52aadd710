"""The torch-free tokenizer (imagesim.encoders.tokenizer) gives open_clip's token ids."""

from __future__ import annotations

import random

import numpy as np
import pytest

from imagesim.encoders.tokenizer import ClipTokenizer, build

SAMPLES = ["a red flower", "A RED Flower!!", "  two   spaces\tand\ttabs \n", "it's John's dog, isn't it?",
           "café naïve résumé", "日本語のテキスト", "emoji 🌸🌼 flowers", "&amp;lt;b&amp;gt; html",
           "<start_of_text> literal", "numbers 12345 3.14", "don't we'll they're I'm you've he'd", "ÀÉÎÕÜ", "a" * 300,
           " ".join(["word"] * 100), "",
           "!!!???...", "hello-world_foo/bar", "Straße", "mojibake Ã©", "ﬁ ligature", "x\u0301y", "Привет мир", "مرحبا",
           "\u200bzero width", "tab\u00a0nbsp"]


@pytest.fixture(scope="module")
def tokenizers():
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    return build(default_bpe()), SimpleTokenizer()


@pytest.mark.parametrize("context", [77, 16])
def test_tokens_equal_open_clips(tokenizers, context: int) -> None:
    js, ref = tokenizers
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,!?'-&;éüñ日本🌸\t"
    texts = SAMPLES + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(500)]
    ours = ClipTokenizer(js, context)(texts)
    theirs = ref(texts, context_length=context).numpy()
    assert ours.dtype == np.int64 and ours.shape == theirs.shape == (len(texts), context)
    assert [t for t, a, b in zip(texts, ours, theirs, strict=True) if (a != b).any()] == []
    assert (ours[:, 0] == ref.sot_token_id).all()
