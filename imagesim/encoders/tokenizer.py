"""CLIP's BPE tokenizer without torch: open_clip's vocabulary run by Hugging Face `tokenizers` (Rust).

open_clip's `SimpleTokenizer` is pure Python, but importing it imports torch (it returns tensors). A text query
through the exported text tower needs only token ids, so this builds the same byte-level BPE (same merges, same
pre-split pattern, the same `</w>` end-of-word suffix) in `tokenizers`, saved once as tokenizer.json beside the
export and loaded in milliseconds. open_clip's cleaning (ftfy, HTML unescape twice, whitespace, lower case) runs
first in Python, as open_clip runs it. The export checks the ids against open_clip's on sample texts before it is
kept (`imagesim.encoders.towers`), and tests/test_towers_tokenizer.py on a wider set.
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SOT, EOT = "<start_of_text>", "<end_of_text>"
# open_clip's pattern (SimpleTokenizer.pat) without its special-token alternatives: those are added tokens here
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, as open_clip builds it (the vocab's first 256)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build(bpe_path: str | Path) -> str:
    """The tokenizers JSON for open_clip's vocabulary file (bpe_simple_vocab_16e6.txt.gz), ids as open_clip's."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]  # open_clip's slice
    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [SOT, EOT]
    ids = {token: i for i, token in enumerate(vocab)}
    bpe = models.BPE(vocab=ids, merges=[(a, b) for a, b in merges], end_of_word_suffix="</w>", fuse_unk=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.add_special_tokens([SOT, EOT])  # a literal "<start_of_text>" in a query is the special id, as in open_clip
    return str(tok.to_str())


def clean(text: str) -> str:
    """open_clip's default cleaning ("lower"): ftfy, HTML unescape twice, collapse whitespace, lower case."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """Texts -> an (n, context_length) int64 array of token ids, equal to open_clip's tokenizer output."""

    def __init__(self, tokenizer_json: str, context_length: int) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_str(tokenizer_json)
        self.context_length = int(context_length)
        sot, eot = self._tok.token_to_id(SOT), self._tok.token_to_id(EOT)
        if sot is None or eot is None:
            raise ValueError("tokenizer has no start/end of text tokens")
        self.sot, self.eot = int(sot), int(eot)

    @classmethod
    def load(cls, path: str | Path, context_length: int) -> ClipTokenizer:
        return cls(Path(path).read_text(encoding="utf-8"), context_length)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        encoded = self._tok.encode_batch([clean(t) for t in texts], add_special_tokens=False)
        for row, enc in enumerate(encoded):
            ids = [self.sot, *enc.ids, self.eot]
            if len(ids) > self.context_length:  # open_clip truncates and keeps the end token last
                ids = ids[:self.context_length]
                ids[-1] = self.eot
            out[row, :len(ids)] = ids
        return out
