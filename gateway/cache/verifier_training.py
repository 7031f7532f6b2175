"""Train and evaluate the semantic-hit verifier on ``../shared/data/cache/``.

Pairs are split by question: every question text belongs to one connected component of the pair
graph, and whole components go to train, calibration or test, so no text seen in training (nor one
paired with it) is ever scored in evaluation. The operating threshold is chosen on the calibration
split (the lowest threshold whose served hits are at most ``max_wrong_rate`` wrong) and reported on
the test split, together with plain cosine thresholds for comparison.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupShuffleSplit

from gateway.cache import perturb
from gateway.cache.forest import Forest
from gateway.cache.verifier import (
    _STOP,
    ARTIFACT,
    MONOTONIC,
    ROLE,
    SECOND_STAGE_FLOOR,
    VETOES,
    Featuriser,
    Verifier,
    get_verifier,
    learn_idf,
    save_artifact,
)
from gateway.embeddings import Embedder, get_embedder

DATA_FILES = ("qqp_pairs_dev.jsonl", "paraphrase_pairs.jsonl")
SEED = 20261121
# Hard families (``gateway.cache.perturb``) trained on, and their weight per pair. The operator and person
# families are left to the vetoes (training on them lowered the calibrated threshold and cost QQP precision).
HARD_TRAIN_FAMILIES = ("direction", "narrow", "widen", "front", "symmetric", "polite")
HARD_WEIGHT = 0.01


def data_dir() -> Path:
    """``$TIERGATE_DATA_DIR`` or ``../shared/data`` next to the repository root."""
    env = os.environ.get("TIERGATE_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass
class Pairs:
    a: list[str]
    b: list[str]
    label: np.ndarray  # 1 = same question
    source: list[str]

    def subset(self, idx: np.ndarray) -> Pairs:
        return Pairs([self.a[i] for i in idx], [self.b[i] for i in idx], self.label[idx],
                     [self.source[i] for i in idx])  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def load_pairs(files: Iterable[Path]) -> Pairs:
    a, b, label, source = [], [], [], []
    for path in files:
        for row in read_jsonl(path):
            a.append(row["a"])
            b.append(row["b"])
            label.append(int(row.get("duplicate", 1)))
            source.append(path.stem)
    return Pairs(a, b, np.array(label, dtype=np.int8), source)


def question_groups(pairs: Pairs) -> np.ndarray:
    """Connected-component id per pair over the graph whose nodes are normalised question texts."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    keys = [(a.strip().lower(), b.strip().lower()) for a, b in zip(pairs.a, pairs.b, strict=True)]
    for a, b in keys:
        parent[find(a)] = find(b)
    roots: dict[str, int] = {}
    return np.array([roots.setdefault(find(a), len(roots)) for a, _ in keys])


def split(pairs: Pairs, seed: int = SEED) -> tuple[Pairs, Pairs, Pairs]:
    """60 / 20 / 20 train / calibration / test split by question component."""
    groups = question_groups(pairs)
    idx = np.arange(len(pairs.label))
    outer = GroupShuffleSplit(n_splits=1, test_size=0.4, random_state=seed)
    train, rest = next(outer.split(idx, groups=groups))
    inner = GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=seed + 1)
    calib, test = next(inner.split(rest, groups=groups[rest]))
    return pairs.subset(train), pairs.subset(rest[calib]), pairs.subset(rest[test])


_NEGATABLE = [(" is ", " is not "), (" are ", " are not "), (" can ", " cannot "), (" does ", " doesn't "),
              (" do ", " don't "), (" should ", " shouldn't "), (" will ", " won't "), (" was ", " wasn't ")]  # fmt: skip
_FLIPS = [("best", "worst"), ("advantages", "disadvantages"), ("pros", "cons"), ("before", "after"),
          ("increase", "decrease"), ("most", "least"), ("buy", "sell"), ("start", "stop"),
          ("more", "less"), ("first", "last"), ("enable", "disable"), ("install", "uninstall")]  # fmt: skip
_NUMBER = re.compile(r"\b\d+\b")
_NAME = re.compile(r"(?<=\s)[A-Z][a-z]{2,}\b")


def _swap_roles(q: str) -> str | None:
    """``q`` with the two content words around its first directional connector swapped, if any."""
    for m in ROLE.finditer(q):
        x, y = m.group(1), m.group(4)
        if x.lower() in _STOP or y.lower() in _STOP or x.lower() == y.lower():
            continue
        article = f"{m.group(3)} " if m.group(3) else ""
        return q[: m.start()] + f"{y} {m.group(2)} {article}{x}" + q[m.end() :]
    return None


def _variants(q: str, names: list[str], rng: random.Random) -> list[tuple[str, int]]:
    """Pairs constructed from one question whose label is known by construction."""
    positives = [q.lower(), q.rstrip("?.! ") if q.rstrip()[-1:] in "?.!" else q + "?",
                 rng.choice(["Please answer: ", "Quick question: ", "Can you tell me: "]) + q]  # fmt: skip
    out = [(rng.choice(positives), 1)]
    if numbers := _NUMBER.findall(q):
        n = rng.choice(numbers)
        out.append((re.sub(rf"\b{n}\b", str(int(n) + rng.choice([1, 2, 5, 10])), q, count=1), 0))
    for old, new in rng.sample(_NEGATABLE, len(_NEGATABLE)):
        if old in q:
            out.append((q.replace(old, new, 1), 0))
            break
    for old, new in _FLIPS:
        if re.search(rf"\b{old}\b", q):
            out.append((re.sub(rf"\b{old}\b", new, q, count=1), 0))
            break
    if (swapped := _swap_roles(q)) is not None:
        out.append((swapped, 0))
    if (match := _NAME.search(q)) and names:
        other = rng.choice(names)
        if other.lower() != match.group().lower():
            out.append((q[: match.start()] + other + q[match.end() :], 0))
    return out


def augment(pairs: Pairs, seed: int = SEED) -> Pairs:
    """Pairs made from ``pairs``' own questions: case/punctuation/prefix variants (same request) and
    changed numbers, inserted negations, flipped comparatives, swapped names (different request).

    QQP has few such near-identical pairs, so without them the model would not learn that a swapped
    name or number is decisive, nor that a lower-cased copy is the same request.
    """
    rng = random.Random(seed)
    questions = sorted({q for q in pairs.a + pairs.b if q.strip()})
    names = sorted({m for q in questions for m in _NAME.findall(q)})
    a, b, label = [], [], []
    for q in questions:
        for variant, y in _variants(q.strip(), names, rng):
            a.append(q)
            b.append(variant)
            label.append(y)
    return Pairs(a, b, np.array(label, dtype=np.int8), ["augmented"] * len(a))


def hard_augment(pairs: Pairs, seed: int = SEED, families: Iterable[str] | None = None) -> Pairs:
    """Hard near-misses and rewordings (``gateway.cache.perturb``) made from ``pairs``' own questions, one
    per applicable family and question; ``source`` is ``hard:<family>``."""
    chosen = {k: v for k, v in perturb.FAMILIES.items() if families is None or k in set(families)}
    rng = random.Random(seed)
    a, b, label, source = [], [], [], []
    for q in sorted({q for q in pairs.a + pairs.b if q.strip()}):
        for variant, y, family in perturb.hard_variants(q.strip(), rng, chosen):
            a.append(q)
            b.append(variant)
            label.append(y)
            source.append(f"hard:{family}")
    return Pairs(a, b, np.array(label, dtype=np.int8), source)


def veto_mask(pairs: Pairs, featuriser: Featuriser, vetoes: Sequence[str]) -> np.ndarray:
    """Whether each pair trips one of ``vetoes`` (as ``Verifier.first_stage_many`` checks them)."""
    if not vetoes:
        return np.zeros(len(pairs.a), dtype=bool)
    return np.array(
        [featuriser.vetoed_many([a], b, vetoes)[0] for a, b in zip(pairs.a, pairs.b, strict=True)]
    )


_PUNCTUATION = re.compile(r"[^\w\s]")


def normalised(text: str) -> str:
    """Lower-cased, punctuation dropped, whitespace collapsed."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def without_label_noise(pairs: Pairs) -> Pairs:
    """``pairs`` less those whose texts are identical after ``normalised`` yet labelled "not duplicate"
    (QQP label noise: no reader could tell such a pair apart). For a second, clearly separate report
    only; the headline numbers keep every pair."""
    keep = [i for i, (a, b, y) in enumerate(zip(pairs.a, pairs.b, pairs.label, strict=True))
            if y == 1 or normalised(a) != normalised(b)]  # fmt: skip
    return pairs.subset(np.array(keep, dtype=np.int64))


def concat(*parts: Pairs) -> Pairs:
    return Pairs([x for p in parts for x in p.a], [x for p in parts for x in p.b],
                 np.concatenate([p.label for p in parts]), [x for p in parts for x in p.source])  # fmt: skip


def featurise(pairs: Pairs, featuriser: Featuriser | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features, cosine) for every pair, with the production embedding and feature code (and the
    shipped artifact's IDF unless ``featuriser`` is given)."""
    featuriser = featuriser or get_verifier().featuriser
    embedder = featuriser.embedder
    cosine = np.einsum("ij,ij->i", embedder.embed(pairs.a), embedder.embed(pairs.b))
    feats = np.concatenate(
        [featuriser.many([a], b, [float(c)]) for a, b, c in zip(pairs.a, pairs.b, cosine, strict=True)]
    )
    return feats, cosine


def served_stats(scores: np.ndarray, label: np.ndarray, threshold: float) -> dict[str, float]:
    served = scores >= threshold
    n_served, wrong = int(served.sum()), int((served & (label == 0)).sum())
    positives = max(int(label.sum()), 1)
    return {
        "threshold": float(threshold),
        "served": n_served,
        "wrong": wrong,
        "wrong_rate": wrong / n_served if n_served else 0.0,
        "recall": int((served & (label == 1)).sum()) / positives,
    }


def pick_threshold(
    scores: np.ndarray, label: np.ndarray, max_wrong_rate: float, min_served: int = 50
) -> float:
    """Lowest threshold whose served hits are at most ``max_wrong_rate`` wrong (at least ``min_served``)."""
    for t in np.unique(scores):
        st = served_stats(scores, label, t)
        if st["served"] >= min_served and st["wrong_rate"] <= max_wrong_rate:
            return float(t)
    return 1.01  # nothing qualifies: serve no semantic hits


def curve(scores: np.ndarray, label: np.ndarray, thresholds: Sequence[float]) -> list[dict[str, float]]:
    return [served_stats(scores, label, t) for t in thresholds]


@dataclass
class TrainResult:
    threshold: float
    min_cosine: float
    sizes: dict[str, int]
    test: dict[str, dict[str, float]]  # set name -> stats at the threshold
    curves: dict[str, list[dict[str, float]]]  # set name -> stats over a threshold grid
    augmented_weight: float = 0.1
    idf_words: int = 0
    # Real (not augmented) calibration pairs: stats at the threshold, and the lowest threshold at
    # which they are at most 1% wrong (1.01 when none is).
    calibration_real: dict[str, float] = field(default_factory=dict)
    calibration_real_1pct: dict[str, float] = field(default_factory=dict)
    # Second stage (MiniLM transformer cosine): its calibrated minimum, the share of the first stage's
    # correct calibration hits it must keep, and the first stage's own numbers for comparison.
    second_stage_min_cosine: float | None = None
    second_stage_keep: float = 0.9
    calibration_real_first_stage: dict[str, float] = field(default_factory=dict)
    hard_weight: float = 0.0
    hard_families: tuple[str, ...] = ()
    vetoes: tuple[str, ...] = ()
    # Rule-made held-out pairs by family: label and share served at the threshold (with the second stage).
    families: dict[str, dict[str, float]] = field(default_factory=dict)
    # Real held-out pairs each veto zeroes, and how many of them are true duplicates.
    veto_counts: dict[str, dict[str, int]] = field(default_factory=dict)


def pick_second_stage(
    first: np.ndarray, transformer: np.ndarray, label: np.ndarray, threshold: float, keep: float
) -> float:
    """The highest transformer-cosine minimum that keeps at least ``keep`` of the correct hits the
    first stage serves at ``threshold`` (on calibration pairs)."""
    served = first >= threshold
    correct = np.sort(transformer[served & (label == 1)])
    if len(correct) == 0:
        return 0.0
    # Keeping the top ``keep`` share of the correct hits' cosines: the minimum is the cosine at that rank.
    return float(correct[int(np.floor((1.0 - keep) * len(correct)))])


def second_stage(
    pairs: Pairs,
    first: np.ndarray,
    min_transformer: float,
    encoder: object,
    floor: float = SECOND_STAGE_FLOOR,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores after the second stage, transformer cosines (NaN where not asked)) for ``pairs`` whose
    first-stage scores are ``first``: as ``Verifier.score_many`` does, candidates at ``floor`` or
    more whose transformer cosine is under ``min_transformer`` score 0."""
    asked = np.flatnonzero(first >= floor)
    transformer = np.full(len(first), np.nan)
    transformer[asked] = encoder.pair_cosines([pairs.a[i] for i in asked], [pairs.b[i] for i in asked])  # type: ignore[attr-defined]
    out = first.copy()
    out[asked[transformer[asked] < min_transformer]] = 0.0
    return out, transformer


def require_encoder() -> object:
    """The local MiniLM export, built first if it is missing (needs the ``ml`` extra)."""
    from gateway.cache import minilm_onnx

    encoder = minilm_onnx.get_encoder()
    if encoder is None:
        minilm_onnx.export()
        minilm_onnx.get_encoder.cache_clear()
        encoder = minilm_onnx.get_encoder()
    if encoder is None:
        raise RuntimeError("no MiniLM export: run `python -m gateway.cache.cli export-minilm`")
    return encoder


def train(
    pairs: Pairs,
    out: Path = ARTIFACT,
    calibration_wrong_rate: float = 0.005,
    min_cosine: float = 0.5,
    augmented_weight: float = 0.03,
    embedder: Embedder | None = None,
    encoder: object | None = None,
    second_stage_keep: float = 0.9,
    hard_families: Sequence[str] = HARD_TRAIN_FAMILIES,
    hard_weight: float = HARD_WEIGHT,
    vetoes: Sequence[str] = tuple(VETOES),
) -> TrainResult:
    """Fit on the train split (plus pairs augmented from its questions), pick the threshold on the
    calibration split, report on the test split, save ``out``.

    The threshold is the lowest whose served hits on the calibration split (real pairs plus pairs
    augmented from its questions) are at most ``calibration_wrong_rate`` wrong, stricter than the 1%
    target so that calibration noise does not push test error over it. The hard families
    (``hard_augment``, weight ``hard_weight``) are trained on but kept out of that pool: their mix of
    near-misses and rewordings is whatever the rules produce, and it would set the threshold alone.
    Candidates that trip one of ``vetoes`` score 0, in calibration as in serving.
    Pairs below ``min_cosine`` never reach the verifier: the vector search does not return them.
    The second stage's minimum transformer cosine is the highest that keeps ``second_stage_keep`` of
    the first stage's correct hits on the real calibration pairs at that threshold.
    """
    train_p, calib_p, test_p = split(pairs)
    vetoes = tuple(vetoes)
    train_all = concat(train_p, augment(train_p), hard_augment(train_p, SEED + 100, hard_families))
    featuriser = Featuriser(*learn_idf([*train_p.a, *train_p.b]), embedder)
    x_tr, c_tr = featurise(train_all, featuriser)
    keep = c_tr >= min_cosine
    source = np.array(train_all.source)
    weight = np.where(np.char.startswith(source, "hard:"), hard_weight, np.where(source == "augmented",
                      augmented_weight, 1.0))  # fmt: skip
    model = HistGradientBoostingClassifier(
        max_iter=400, learning_rate=0.05, max_leaf_nodes=31, l2_regularization=1.0,
        monotonic_cst=MONOTONIC, random_state=SEED,
    ).fit(x_tr[keep], train_all.label[keep], sample_weight=weight[keep])  # fmt: skip

    forest = Forest.from_sklearn(model)
    sample = x_tr[keep][:2000]
    if not np.allclose(forest.predict_proba(sample), model.predict_proba(sample)[:, 1], atol=1e-9):
        raise AssertionError("numpy tree evaluation disagrees with scikit-learn")

    def scores(p: Pairs) -> np.ndarray:
        x, c = featurise(p, featuriser)
        return np.where((c >= min_cosine) & ~veto_mask(p, featuriser, vetoes), forest.predict_proba(x), 0.0)

    calib_all = concat(calib_p, augment(calib_p, seed=SEED + 3))
    calib_scores = scores(calib_all)
    threshold = pick_threshold(calib_scores, calib_all.label, calibration_wrong_rate)
    real = np.array(calib_all.source) != "augmented"
    calibration_real = served_stats(calib_scores[real], calib_all.label[real], threshold)
    at_1pct = pick_threshold(calib_scores[real], calib_all.label[real], 0.01)
    calibration_real_1pct = served_stats(calib_scores[real], calib_all.label[real], at_1pct)
    encoder = encoder or require_encoder()
    calib_real = calib_all.subset(np.flatnonzero(real))
    _, calib_transformer = second_stage(calib_real, calib_scores[real], 0.0, encoder, floor=threshold)
    second_min = pick_second_stage(
        calib_scores[real], np.nan_to_num(calib_transformer, nan=-1.0), calib_real.label, threshold,
        second_stage_keep,
    )  # fmt: skip
    calib_gated, _ = second_stage(calib_real, calib_scores[real], second_min, encoder, floor=threshold)
    calibration_real_first = calibration_real
    calibration_real = served_stats(calib_gated, calib_real.label, threshold)
    save_artifact(out, forest, threshold, min_cosine, featuriser, second_min, vetoes)
    hard_test = hard_augment(test_p, seed=SEED + 107)
    evaluation = {
        "held-out": test_p,
        "held-out, label noise removed": without_label_noise(test_p),
        "held-out augmented": augment(test_p, seed=SEED + 7),
        "held-out hard (rule-made near-misses and rewordings)": hard_test,
    }
    families: dict[str, dict[str, float]] = {}
    grid = sorted({*np.round(np.arange(0.5, 1.0, 0.05), 2), 0.97, 0.98, 0.99, round(threshold, 4)})
    test, curves = {}, {}
    for name, p in evaluation.items():
        first = scores(p)
        s, _ = second_stage(p, first, second_min, encoder)
        test[name] = served_stats(s, p.label, threshold)
        curves[name] = curve(s, p.label, grid)
        if name == "held-out":
            test["held-out, first stage alone (no MiniLM export)"] = served_stats(first, p.label, threshold)
            curves["held-out, first stage alone (no MiniLM export)"] = curve(first, p.label, grid)
        if p is hard_test:
            fam = np.array(p.source)
            for f in sorted(set(fam)):
                m = fam == f
                families[f.removeprefix("hard:")] = {"label": int(p.label[m][0]), "pairs": int(m.sum()),
                                                     "served": float(np.mean(s[m] >= threshold))}  # fmt: skip
    # What each veto costs: the held-out duplicates it zeroes that the trees alone would have served.
    x_te, c_te = featurise(test_p, featuriser)
    trees = np.where(c_te >= min_cosine, forest.predict_proba(x_te), 0.0)
    duplicate = test_p.label == 1
    veto_counts = {}
    for v in vetoes:
        fired = veto_mask(test_p, featuriser, [v])
        veto_counts[v] = {"pairs": int(fired.sum()), "duplicates": int((fired & duplicate).sum()),
                          "served duplicates": int((fired & duplicate & (trees >= threshold)).sum()),
                          "served non-duplicates": int((fired & ~duplicate & (trees >= threshold)).sum())}  # fmt: skip
    curves["held-out, plain cosine"] = curve(c_te, test_p.label, [0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99])
    sizes = {"train": len(train_p.label), "train augmented": len(train_all.label) - len(train_p.label),
             "calibration": len(calib_p.label), "calibration augmented": len(calib_all.label) - len(calib_p.label),
             "test": len(test_p.label)}  # fmt: skip
    sizes["held-out pairs removed as label noise"] = len(test_p.label) - len(
        evaluation["held-out, label noise removed"].label
    )
    sizes["train hard"] = int(np.char.startswith(source, "hard:").sum())
    sizes["held-out hard"] = len(hard_test.label)
    return TrainResult(threshold, min_cosine, sizes, test, curves, augmented_weight, len(featuriser.idf),
                       calibration_real, calibration_real_1pct, second_min, second_stage_keep,
                       calibration_real_first, hard_weight, tuple(hard_families), vetoes, families,
                       veto_counts)  # fmt: skip


def verifier_scores(pairs: Pairs, verifier: Verifier, embedder: Embedder | None = None) -> np.ndarray:
    """Scores through the production path: ``Verifier.score`` on the production embedding's cosine."""
    embedder = embedder or get_embedder()
    cosine = np.einsum("ij,ij->i", embedder.embed(pairs.a), embedder.embed(pairs.b))
    return np.array(
        [verifier.score(a, b, float(c)) for a, b, c in zip(pairs.a, pairs.b, cosine, strict=True)]
    )


def handwritten_pairs() -> Path:
    """The hand-written adversarial pairs kept beside the cache tests (not derived from shared data)."""
    return Path(__file__).resolve().parents[2] / "tests" / "cache" / "data" / "handwritten_pairs.jsonl"


def blind_pairs() -> Path:
    """Pairs written by someone who never saw the verifier, its features or its data (see BLIND_PAIRS.md):
    the independent held-out set. Never train, tune or pick a threshold on it."""
    return Path(__file__).resolve().parents[2] / "tests" / "cache" / "data" / "blind_pairs.jsonl"
