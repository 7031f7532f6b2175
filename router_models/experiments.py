"""Generalisation experiments: can the router do better on a source it never trained on?

    python -m router_models.experiments [--bootstrap 200] [--json OUT]

Issue 3 asks for a router that beats RouteLLM on held-out sources (MMLU: APGR > 0.60). The shipped
structural logistic regression reaches 0.595 on MMLU when trained on ``llmrouter`` only. This module
runs the alternatives tried against it under the same protocol, so the model card's table can be
reproduced:

* fold ``mmlu``: train on ``llmrouter`` (plus ``arena`` where a candidate says so), test on all of MMLU;
* fold ``llmrouter``: train on ``mmlu`` (plus ``arena``), test on all of ``llmrouter``.

No candidate sees a label of its test source, and none is tuned on it: where a candidate selects a
hyper-parameter it does so on ``arena`` (AUC against its difficulty label), a source that is neither
trained on nor tested in these two folds. Every row reports APGR, CPT(50%), CPT(80%), AUC and the
paired-bootstrap difference in APGR against the shipped approach on the same rows (mean and sd over
resamples), because on 14,042 MMLU rows one sd of APGR is about 0.01.

The candidate features below (``candidate_features``) are experimental and live here, not in
``gateway.routing.features``: the serving path only carries features the shipped artifact uses.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from gateway.routing import features as F

from . import data as D
from . import metrics
from .model import APPROACHES, SHIPPED_APPROACH, FeatureTable, fit_dataset

CLIP = 5.0

CANDIDATE_FEATURES = (
    "tok_log_id_mean",  # mean log o200k token id: BPE ids rise with rarity (knowledge-heavy vocabulary)
    "tok_log_id_sd",
    "tok_share_id_50k",  # share of tokens outside the 50k most-merged
    "tok_share_id_100k",
    "log_option_chars",  # mean length of answer options (multiple choice)
    "share_numeric_options",
    "log_stem_chars",  # the question before its options
    "log_negations",  # NOT / EXCEPT / LEAST / FALSE in the stem
    "share_capitalised_words",  # capitalised words inside sentences: named entities, knowledge
    "log_long_words",  # words of 10+ letters
)
_OPTION = re.compile(r"^\s*\(?([A-Ja-j])[.)]\s*(.*)$", re.MULTILINE)
_NUMERIC = re.compile(r"[\s\d.,/%$+\-^()x*e]+")
_NEGATION = re.compile(r"\b(?:not|except|least|false|incorrect|never)\b", re.IGNORECASE)
_LETTERS = re.compile(r"[A-Za-z]+")

DOMAINS = (
    "mathematics algebra equation calculus proof theorem",
    "physics mechanics energy force quantum",
    "chemistry molecule reaction compound acid",
    "biology cell gene organism evolution",
    "medicine patient clinical disease diagnosis treatment",
    "law legal court statute contract liability",
    "history war empire century revolution",
    "economics market price inflation demand supply",
    "philosophy ethics moral argument",
    "computer science algorithm programming code software",
    "psychology behavior cognitive mental",
    "business management accounting finance",
    "geography country city population",
    "literature poem novel author",
    "casual chat greeting small talk",
)
"""Subject prototypes for the domain-cue candidate (cosine of the request embedding with each)."""

M2V_RARITY_FEATURES = ("m2v_vector_norm", "m2v_log_id", "m2v_share_continuations", "m2v_share_unknown")
"""Rarity under the request embedding's own WordPiece vocabulary (model2vec, ``gateway/embedding_model``):
mean norm of the tokens' static vectors (distillation weights rarer tokens up; norm and id correlate
0.59), mean log token id, share of ``##`` word-piece continuations (rare words split) and of ``[UNK]``."""


def m2v_rarity(prompts: list[str]) -> np.ndarray:
    from tokenizers import Tokenizer

    from gateway.embeddings import MODEL_DIR

    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    norms = np.linalg.norm(np.load(MODEL_DIR / "vectors.npz")["vectors"].astype(np.float64), axis=1)
    texts = [F.conversation_text(F.prompt_messages(p)).analysed for p in prompts]
    out = np.zeros((len(prompts), len(M2V_RARITY_FEATURES)))
    for row, encoded in enumerate(tokenizer.encode_batch(texts)):
        ids = np.array([i for i in encoded.ids if i < len(norms)], dtype=np.int64)
        if len(ids):
            pieces = encoded.tokens
            out[row] = (
                norms[ids].mean(),
                np.log1p(ids).mean(),
                np.mean([t.startswith("##") for t in pieces]),
                np.mean([t == "[UNK]" for t in pieces]),
            )
    return out


LLMROUTER_LARGE = ("llama-3.1-nemotron-51b-instruct", "llama-3.3-nemotron-super-49b-v1")
LLMROUTER_SMALL = (
    "mistral-7b-instruct-v0.3",
    "llama-3.1-8b-instruct",
    "qwen2.5-7b-instruct",
    "gemma-2-9b-it",
)


def candidate_features(prompt: str) -> list[float]:
    """``CANDIDATE_FEATURES`` of one single-turn prompt (analysed text as the serving path clips it)."""
    text = F.conversation_text(F.prompt_messages(prompt)).analysed
    ids = np.asarray(F.encoding().encode_ordinary(text), dtype=np.float64)
    log_ids = np.log1p(ids) if len(ids) else np.zeros(1)
    options = _OPTION.findall(text)
    first = _OPTION.search(text)
    stem = text[: first.start()] if first else text
    words = _LETTERS.findall(text)
    capitalised = sum(1 for i, w in enumerate(words) if i and w[0].isupper() and not w.isupper())
    return [
        float(log_ids.mean()),
        float(log_ids.std()),
        float((ids >= 50_000).mean()) if len(ids) else 0.0,
        float((ids >= 100_000).mean()) if len(ids) else 0.0,
        math.log1p(np.mean([len(o[1]) for o in options])) if options else 0.0,
        sum(1 for o in options if _NUMERIC.fullmatch(o[1] or "z")) / len(options) if options else 0.0,
        math.log1p(len(stem)),
        math.log1p(len(_NEGATION.findall(stem))),
        capitalised / max(len(words), 1),
        math.log1p(sum(1 for w in words if len(w) >= 10)),
    ]


Scores = Callable[["Lab", np.ndarray, np.ndarray], "np.ndarray | None"]


@dataclass(slots=True)
class Lab:
    """Everything the candidates need, computed once."""

    dataset: D.Dataset
    table: FeatureTable
    embeddings: np.ndarray
    candidate: np.ndarray
    m2v_rarity: np.ndarray
    domain: np.ndarray
    model_names: list[str]
    model_scores: np.ndarray
    """``llmrouter`` per-model qualities, aligned with ``rows('llmrouter')``."""

    def rows(self, source: str) -> np.ndarray:
        return np.flatnonzero(self.dataset.sources == source)

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels

    @property
    def gain(self) -> np.ndarray:
        return self.dataset.strong_quality - self.dataset.weak_quality

    @classmethod
    def build(cls) -> Lab:
        from gateway.embeddings import get_embedder

        dataset = D.load()
        table = FeatureTable.build(dataset.prompts)
        embeddings = table.ensure_embeddings().astype(np.float64)
        candidate = np.array([candidate_features(p) for p in dataset.prompts])
        rarity = m2v_rarity(dataset.prompts)
        domain = embeddings @ get_embedder().embed(list(DOMAINS)).astype(np.float64).T
        names, scores = D.llmrouter_model_scores()
        return cls(dataset, table, embeddings, candidate, rarity, domain, names, scores)


def _logistic(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    C: float = 1.0,
    penalty: str = "l2",
    intercepts: np.ndarray | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Standardised, clipped logistic regression (as ``model.fit``); ``y`` may be soft (in [0, 1]).

    ``intercepts``: a group per row whose own intercept absorbs its base rate (source or task fixed
    effects); the returned scorer leaves them out, so only within-group relations are transferred.
    """
    from sklearn.linear_model import LogisticRegression

    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0

    def standardise(Z: np.ndarray) -> np.ndarray:
        return np.clip((Z - mean) / scale, -CLIP, CLIP)

    Z = standardise(X)
    n_features = Z.shape[1]
    if intercepts is not None:
        groups = np.unique(intercepts)
        Z = np.hstack([Z, (intercepts[:, None] == groups[None, :]).astype(float)])
    weights = np.ones(len(y)) if weights is None else weights
    y = np.asarray(y, dtype=np.float64)
    # A soft label p enters as the row twice: label 1 with weight p, label 0 with weight 1 - p.
    Z2, y2, w2 = (
        np.vstack([Z, Z]),
        np.r_[np.ones(len(y)), np.zeros(len(y))],
        np.r_[weights * y, weights * (1 - y)],
    )
    keep = w2 > 0
    model = LogisticRegression(
        C=C,
        l1_ratio=1.0 if penalty == "l1" else 0.0,
        solver="liblinear" if penalty == "l1" else "lbfgs",
        fit_intercept=intercepts is None,
        max_iter=5000,
    )
    model.fit(Z2[keep], y2[keep], sample_weight=w2[keep])
    coefficients = model.coef_[0][:n_features]
    bias = float(model.intercept_[0]) if intercepts is None else 0.0
    return lambda Xt: 1.0 / (1.0 + np.exp(-(bias + standardise(Xt) @ coefficients)))


# --- candidates: (lab, train rows, test rows) -> scores of the test rows, or None if not applicable ---


def shipped(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    router = fit_dataset(APPROACHES[SHIPPED_APPROACH], lab.dataset, lab.table, train, 0.5)
    return router.predict(lab.table, test)


def length_only(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    return lab.table.dense[test, F.DENSE_FEATURES.index("log_tokens_total")]


def _llmrouter_label(kind: str) -> Scores:
    def run(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray | None:
        if not np.all(lab.dataset.sources[train] == "llmrouter"):
            return None  # the label variants only concern the llmrouter rows
        column = {m: i for i, m in enumerate(lab.model_names)}
        large = lab.model_scores[:, [column[m] for m in LLMROUTER_LARGE]]
        small = lab.model_scores[:, [column[m] for m in LLMROUTER_SMALL]]
        if kind == "means":
            y = (large.mean(axis=1) > small.mean(axis=1)).astype(float)
        elif kind == "pairs":
            y = np.mean([(large[:, [i]] > small).mean(axis=1) for i in range(large.shape[1])], axis=0)
        else:  # "any-large"
            weak = lab.model_scores[:, column[D.LLMROUTER_WEAK]]
            y = (large.max(axis=1) > weak).astype(float)
        order = np.searchsorted(lab.rows("llmrouter"), train)
        return _logistic(lab.table.dense[train], y[order])(lab.table.dense[test])

    return run


def win_given_differ(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    X, gain = lab.table.dense, lab.gain
    differ = train[gain[train] != 0]
    p_win = _logistic(X[differ], (gain[differ] > 0).astype(float))(X[test])
    p_differ = _logistic(X[train], (gain[train] != 0).astype(float))(X[test])
    return p_win * p_differ


def _with_block(block: Callable[[Lab], np.ndarray]) -> Scores:
    def run(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        X = np.hstack([lab.table.dense, block(lab)])
        return _logistic(X[train], lab.labels[train])(X[test])

    return run


def embedding_pca(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    pca = PCA(8, random_state=0).fit(lab.embeddings[train])
    X = np.hstack([lab.table.dense, pca.transform(lab.embeddings)])
    return _logistic(X[train], lab.labels[train])(X[test])


def embedding_knn(lab: Lab, train: np.ndarray, test: np.ndarray, k: int = 50) -> np.ndarray:
    similarity = lab.embeddings[test] @ lab.embeddings[train].T
    nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
    return lab.labels[train][nearest].mean(axis=1)


def with_arena_intercepts(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    rows = np.r_[train, lab.rows("arena")]
    sources = lab.dataset.sources[rows]
    names, counts = np.unique(sources, return_counts=True)
    per_source = dict(zip(names, np.sqrt(counts.max() / counts), strict=True))  # as source_power 0.5
    weights = np.array([per_source[s] for s in sources])
    X = lab.table.dense
    return _logistic(X[rows], lab.labels[rows], weights, intercepts=sources)(X[test])


def task_intercepts(lab: Lab, train: np.ndarray, test: np.ndarray, k: int = 20) -> np.ndarray:
    from sklearn.cluster import KMeans

    tasks = KMeans(k, random_state=0, n_init=4).fit_predict(lab.embeddings[train])
    X = lab.table.dense
    return _logistic(X[train], lab.labels[train], intercepts=tasks)(X[test])


def arena_weighted(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Importance weights that make the training rows look like real chat traffic (arena prompts)."""
    X, arena = lab.table.dense, lab.rows("arena")
    domain = _logistic(
        np.vstack([X[train], X[arena]]), np.r_[np.zeros(len(train)), np.ones(len(arena))], C=0.1
    )
    p = domain(X[train])
    weights = np.clip((p / (1 - p)) / np.mean(p / (1 - p)), 0, 3)
    return _logistic(X[train], lab.labels[train], weights / weights.mean())(X[test])


def sign_invariant(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Only features whose correlation with the label has the same sign on the training rows and on arena."""
    X, arena = lab.table.dense, lab.rows("arena")

    def signs(rows: np.ndarray) -> np.ndarray:
        centred = X[rows] - X[rows].mean(axis=0)
        return np.sign(centred.T @ (lab.labels[rows] - lab.labels[rows].mean()))

    keep = np.flatnonzero(signs(train) == signs(arena))
    return _logistic(X[train][:, keep], lab.labels[train])(X[test][:, keep])


C_GRID = (0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.1, 0.3, 1.0)


def _c_on_arena(penalty: str, blocks: Callable[[Lab], np.ndarray] | None = None) -> Scores:
    """Regularisation chosen by AUC on arena (never the test source), then refit on the training rows."""

    def run(lab: Lab, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        X = lab.table.dense if blocks is None else np.hstack([lab.table.dense, blocks(lab)])
        arena = lab.rows("arena")
        fits = {C: _logistic(X[train], lab.labels[train], C=C, penalty=penalty) for C in C_GRID}
        best = max(C_GRID, key=lambda C: metrics.roc_auc(fits[C](X[arena]), lab.labels[arena]))
        return fits[best](X[test])

    return run


CANDIDATES: dict[str, tuple[str, Scores]] = {
    "structure": ("shipped: L2 logistic regression on the 22 structural features", shipped),
    "length-only": ("no training: rank by conversation tokens", length_only),
    "label: 50B mean > 7-9B mean": ("llmrouter label from 2 large vs 4 small models", _llmrouter_label("means")),
    "label: soft pair share": ("soft label: share of large/small pairs the large model wins", _llmrouter_label("pairs")),
    "label: any 50B > Mistral": ("either large model beats Mistral-7B", _llmrouter_label("any-large")),
    "P(win | differ) x P(differ)": ("two models: do the answers differ, and who wins if so", win_given_differ),
    "+ rarity/option/entity features": ("structure + CANDIDATE_FEATURES", _with_block(lambda lab: lab.candidate)),
    "+ model2vec rarity": ("structure + M2V_RARITY_FEATURES", _with_block(lambda lab: lab.m2v_rarity)),
    "+ domain prototypes": ("structure + cosine to 15 subject prototypes", _with_block(lambda lab: lab.domain)),
    "+ embedding PCA-8": ("structure + 8 principal components of the request embedding", embedding_pca),
    "embedding kNN (k=50)": ("share of positive labels among the 50 nearest training prompts", embedding_knn),
    "+ arena, source intercepts": ("arena's difficulty label added to training, one intercept per source", with_arena_intercepts),
    "task intercepts (20 clusters)": ("within-task weights: one intercept per k-means cluster", task_intercepts),
    "arena-weighted": ("training rows importance-weighted towards arena prompts", arena_weighted),
    "sign-invariant features": ("structure features whose label correlation has one sign on train and arena", sign_invariant),
    "L2, C by arena AUC": ("structure, regularisation selected on arena", _c_on_arena("l2")),
    "L1, C by arena AUC": ("sparse structure, regularisation selected on arena", _c_on_arena("l1")),
    "+ rarity, L1, C by arena AUC": ("structure + CANDIDATE_FEATURES, sparse", _c_on_arena("l1", lambda lab: lab.candidate)),
}  # fmt: skip

FOLDS = (("mmlu", ("llmrouter",)), ("llmrouter", ("mmlu",)))


@dataclass(frozen=True, slots=True)
class Row:
    candidate: str
    held_out: str
    apgr: float
    cpt50: float
    cpt80: float
    auc: float
    delta_apgr_mean: float
    """Paired bootstrap: this candidate's APGR minus the shipped approach's, mean over resamples."""
    delta_apgr_sd: float


def run(lab: Lab, names: list[str], rounds: int = 200, log: Callable[[str], None] = print) -> list[Row]:
    results = []
    for held_out, train_sources in FOLDS:
        test = lab.rows(held_out)
        train = np.flatnonzero(np.isin(lab.dataset.sources, train_sources))
        weak, strong = lab.dataset.weak_quality[test], lab.dataset.strong_quality[test]
        baseline = shipped(lab, train, test)
        for name in names:
            started = time.perf_counter()
            scores = CANDIDATES[name][1](lab, train, test)
            if scores is None:
                continue
            curve = metrics.routing_curve(scores, weak, strong)
            delta = metrics.bootstrap_apgr(scores, weak, strong, baseline=baseline, rounds=rounds)
            row = Row(
                name,
                held_out,
                metrics.apgr(curve),
                metrics.cpt(curve, 0.5),
                metrics.cpt(curve, 0.8),
                metrics.roc_auc(scores, lab.labels[test]),
                float(delta.mean()),
                float(delta.std()),
            )
            results.append(row)
            log(
                f"{held_out:9s} {name:34s} APGR {row.apgr:.3f}  CPT50 {row.cpt50:6.1%}  CPT80 {row.cpt80:6.1%}  "
                f"AUC {row.auc:.3f}  dAPGR {row.delta_apgr_mean:+.3f} ± {row.delta_apgr_sd:.3f}  "
                f"({time.perf_counter() - started:.1f} s)"
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candidate", action="append", choices=list(CANDIDATES), help="default: all")
    parser.add_argument("--bootstrap", type=int, default=200, help="paired bootstrap resamples")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    if not D.router_data_available():
        raise SystemExit(f"router data not found in {D.router_data_dir()} (set TIERGATE_DATA_DIR)")
    lab = Lab.build()
    results = run(lab, args.candidate or list(CANDIDATES), args.bootstrap)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump([asdict(r) for r in results], out, indent=2)


if __name__ == "__main__":
    main()
