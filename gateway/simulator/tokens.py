"""Token counting with tiktoken, working offline.

litellm ships the `cl100k_base` and `o200k_base` BPE files; when no tiktoken cache is configured we
point tiktoken at that directory (found without importing litellm, which is slow to import).
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path

import tiktoken


def _use_bundled_bpe_files() -> None:
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return
    bundled = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
    if bundled.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)


_use_bundled_bpe_files()


@cache
def encoding(name: str) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


def encode(text: str, encoding_name: str) -> list[int]:
    return encoding(encoding_name).encode_ordinary(text)


def count(text: str, encoding_name: str) -> int:
    return len(encoding(encoding_name).encode_ordinary(text))


# Words that are exactly one token, with and without a leading space, in both encodings: generated
# text built from them has as many tokens as words, so streamed deltas are real tokens.
_CANDIDATE_WORDS_TEXT = """
the of and to in is that for it as was with be by on not he this are or his from at which but have
an they you were her she there been one all we their has would when if more will out so up said what
its about than into them can only other time new some could these two may first then do any like my
now over such our man me even most made after also did many before must through back years where
much your way well down should because each just those people how too little state good very make
world still own see men work long get here between both life being under never day same another
know while last might us great old year off come since against go came right used take three
system data model cloud light river stone green quick brown fox lazy dog answer question result
value signal number simple clear open close start end point line field plan place test case note
"""


@cache
def vocabulary() -> tuple[str, ...]:
    """Single-token words (in o200k_base and cl100k_base, with and without a leading space)."""
    encodings = [encoding("o200k_base"), encoding("cl100k_base")]
    return tuple(
        word
        for word in dict.fromkeys(_CANDIDATE_WORDS_TEXT.split())
        if all(len(enc.encode_ordinary(form)) == 1 for enc in encodings for form in (word, " " + word))
    )
