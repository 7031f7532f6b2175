"""Router evaluation protocols.

* ``held_out_sources``: train on every source but one, measure on the one left out. This is the
  generalisation measure: the test source's prompts and format were never seen in training, as
  with a new customer's traffic.
* ``within_sources``: k-fold cross-validation inside each source, i.e. what retraining on labelled
  traffic of the same kind buys. Context only; never the headline number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from . import metrics
from .data import TRAINING_SOURCES, Dataset
from .model import Approach, FeatureTable, fit_dataset

PGR_SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BOOTSTRAP_ROUNDS = 100
"""Resamples behind ``apgr_sd``: on 14,042 MMLU rows one sd of APGR is about 0.01, so differences
between approaches smaller than that are not evidence."""


@dataclass(frozen=True, slots=True)
class SourceResult:
    approach: str
    held_out: str
    """The test source (for ``within_sources``: the source cross-validated)."""
    n: int
    auc: float
    ece: float
    brier: float
    apgr: float | None
    apgr_sd: float | None
    """Bootstrap standard deviation of ``apgr`` over resamples of the test rows (its sampling noise)."""
    cpt50: float | None
    cpt80: float | None
    pgr_at: dict[str, float] | None
    """PGR at fixed strong-call shares (the threshold sweep, sampled)."""

    def as_dict(self) -> dict:
        return asdict(self)


def _pgr_at(curve: metrics.RoutingCurve) -> dict[str, float]:
    return {f"{share:.1f}": float(np.interp(share, curve.shares, curve.pgr)) for share in PGR_SHARES}


def score_source(approach: str, held_out: str, probabilities: np.ndarray, dataset: Dataset) -> SourceResult:
    """All metrics of one source's scores (PGR family only where the source has model qualities)."""
    labels = dataset.labels
    has_quality = not np.isnan(dataset.weak_quality).any()
    curve = (
        metrics.routing_curve(probabilities, dataset.weak_quality, dataset.strong_quality)
        if has_quality
        else None
    )
    return SourceResult(
        approach=approach,
        held_out=held_out,
        n=len(labels),
        auc=metrics.roc_auc(probabilities, labels),
        ece=metrics.expected_calibration_error(probabilities, labels),
        brier=metrics.brier(probabilities, labels),
        apgr=metrics.apgr(curve) if curve else None,
        apgr_sd=float(
            metrics.bootstrap_apgr(
                probabilities, dataset.weak_quality, dataset.strong_quality, rounds=BOOTSTRAP_ROUNDS
            ).std()
        )
        if curve
        else None,
        cpt50=metrics.cpt(curve, 0.5) if curve else None,
        cpt80=metrics.cpt(curve, 0.8) if curve else None,
        pgr_at=_pgr_at(curve) if curve else None,
    )


def held_out_sources(
    approaches: list[Approach],
    dataset: Dataset,
    table: FeatureTable,
    source_power: float,
    on_fold_done: Callable[[], None] | None = None,
    training_sources: tuple[str, ...] = TRAINING_SOURCES,
) -> list[SourceResult]:
    """Leave-one-source-out results for every approach and source.

    Training folds only hold ``training_sources``; by default the model evaluated on ``arena`` is
    therefore trained exactly as the shipped one.
    """
    trainable = np.isin(dataset.sources, training_sources)
    results = []
    for approach in approaches:
        for source in np.unique(dataset.sources):
            test = dataset.sources == source
            train = np.flatnonzero(trainable & ~test)
            router = fit_dataset(approach, dataset, table, train, source_power)
            probabilities = router.predict(table, np.flatnonzero(test))
            results.append(score_source(approach.name, str(source), probabilities, dataset.subset(test)))
            if on_fold_done:
                on_fold_done()
    return results


def within_sources(
    approaches: list[Approach],
    dataset: Dataset,
    table: FeatureTable,
    source_power: float,
    folds: int = 5,
    on_fold_done: Callable[[], None] | None = None,
) -> list[SourceResult]:
    """Out-of-fold results of ``folds``-fold cross-validation inside each source."""
    from sklearn.model_selection import StratifiedKFold

    results = []
    for approach in approaches:
        for source in np.unique(dataset.sources):
            rows = np.flatnonzero(dataset.sources == source)
            probabilities = np.empty(len(rows))
            splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
            for train, test in splitter.split(rows, dataset.labels[rows]):
                router = fit_dataset(approach, dataset, table, rows[train], source_power)
                probabilities[test] = router.predict(table, rows[test])
                if on_fold_done:
                    on_fold_done()
            source_data = dataset.subset(dataset.sources == source)
            results.append(score_source(approach.name, str(source), probabilities, source_data))
    return results
