"""The shared embedding: shape, normalisation, async path, and that it ranks paraphrases first."""

from __future__ import annotations

import numpy as np

from gateway.embeddings import get_embedder


def test_embed_shape_dtype_and_norm() -> None:
    embedder = get_embedder()
    vectors = embedder.embed(["How do I reverse a list in Python?", "Bonjour", ""])
    assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert not np.any(vectors[2])  # no tokens -> zero vector
    assert embedder.embed([]).shape == (0, embedder.dim)


async def test_async_embedding_matches_sync_for_short_and_long_texts() -> None:
    embedder = get_embedder()
    texts = ["short question?", "a long document " * 200]
    assert np.allclose(await embedder.aembed(texts), embedder.embed(texts))


def test_paraphrase_is_nearer_than_a_different_topic() -> None:
    q, para, other = get_embedder().embed(
        [
            "How do I reverse a list in Python?",
            "What's the way to invert a Python list?",
            "Best pizza in Naples?",
        ]
    )
    assert q @ para > q @ other + 0.2


def test_word_sums_rebuild_the_embedding_of_any_bag_of_words() -> None:
    embedder = get_embedder()
    words = ["reverse", "don't", "3.5", "café", "pytorch", "zzqxj", "naïve"]
    sums, counts = embedder.word_sums(words)
    assert counts.tolist() == [len(embedder._model.tokenize([w])[0]) for w in words]
    for i, j in [(0, 1), (2, 3), (4, 5), (6, 0)]:
        total = sums[i] + sums[j]
        expected = embedder.embed([f"{words[i]} {words[j]}"])[0]
        assert np.allclose(total / np.linalg.norm(total), expected, atol=1e-6)
    again, _ = embedder.word_sums(["pytorch", "reverse"])  # from the cache, same values
    assert np.array_equal(again, sums[[4, 0]])


def test_whole_word_shortcut_agrees_with_the_tokeniser_on_every_vocabulary_word() -> None:
    embedder = get_embedder()
    words = [w for w in embedder._vocab if w.isascii() and w.isalpha() and w.islower()]
    encodings = embedder._model.tokenizer.encode_batch_fast(words, add_special_tokens=False)
    assert [e.ids for e in encodings] == [[embedder._vocab[w]] for w in words]


def test_fast_path_matches_model2vec_static_model_encode() -> None:
    """`embed` re-implements StaticModel.encode for speed; both must give the same vectors, including
    unknown tokens dropped, truncation at MAX_TOKENS and the zero vector for text without tokens."""
    embedder = get_embedder()
    texts = [
        "How do I reverse a list in Python?",
        "naïve café ☃ zzqxj 3.14 don't",
        "",
        "   ",
        "word " * 2000,  # truncated at MAX_TOKENS
        "The quick brown fox jumps over the lazy dog. " * 30,
    ]
    expected = embedder._model.encode(texts, use_multiprocessing=False)
    assert np.allclose(embedder.embed(texts), expected, atol=1e-6)
