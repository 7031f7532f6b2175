"""The verifier's boosted trees as flat numpy arrays (no scikit-learn on the request path)."""

from __future__ import annotations

import numpy as np


class Forest:
    """Boosted trees as flat arrays, evaluated for all trees at once with numpy.

    scikit-learn's predictor costs 3-35 ms per single-row call here (per-tree Python dispatch and
    OpenMP start-up under CPU contention). Walking every tree one level per numpy step costs one
    step per level of the deepest tree (~0.5 ms at depth 19); ``predict_proba`` instead uses
    QuickScorer's bitmask traversal (Lucchese et al., SIGIR 2015), a fixed handful of numpy calls
    whatever the depth: every split node compares its feature with its threshold at once; a node whose
    test is false (x > threshold, go right) rules out the leaves of its left subtree, so each tree's
    exit leaf is the leftmost leaf that no false node ruled out (the lowest set bit of the AND of
    the masks of its false nodes, leaves numbered left to right).

    ``upper_bound`` bounds the probability of rows whose some features are not known yet, from the
    trees' monotonicity (checked on the trees themselves, not assumed): the verifier scores the cheap
    features first and computes the costly ones only for candidates whose bound could reach a threshold.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.feature, self.threshold = arrays["feature"], arrays["threshold"]
        self.left, self.right = arrays["left"], arrays["right"]
        self.is_leaf, self.value = arrays["is_leaf"], arrays["value"]
        self.baseline = float(arrays["baseline"])
        self.depth = int(arrays["depth"])
        # Flattened with global node ids; a leaf's children are itself, so walking `depth` steps
        # from every root lands every tree on its leaf without per-step leaf checks.
        n_trees, width = self.feature.shape
        own = np.arange(n_trees * width, dtype=np.int64).reshape(n_trees, width)
        offsets = (np.arange(n_trees, dtype=np.int64) * width)[:, None]
        self._roots = offsets.ravel()
        self._feature = self.feature.ravel().astype(np.int64)
        self._threshold = self.threshold.ravel()
        self._left = np.where(self.is_leaf, own, self.left + offsets).ravel()
        self._right = np.where(self.is_leaf, own, self.right + offsets).ravel()
        self._value = self.value.ravel()
        self._build_bitmasks()

    def _build_bitmasks(self) -> None:
        """Per split node: feature, threshold and the mask of leaves still reachable when its test
        is false; per tree: the values of its leaves, left to right."""
        feature, threshold, leaf_values, node_masks, node_tree = [], [], [], [], []
        # feature -> the directions (+1 rising, -1 falling) in which every split on it is monotone
        monotone: dict[int, set[int]] = {}
        n_trees, _ = self.feature.shape
        width = 0
        for t in range(n_trees):
            leaves: list[int] = []  # node ids, left to right
            # split node -> leaf ranges of its subtrees: left [lo, hi), right [hi, end)
            spans: dict[int, tuple[int, int, int]] = {}

            def visit(node: int, t: int = t, leaves: list[int] = leaves, spans: dict = spans) -> None:
                if self.is_leaf[t, node]:
                    leaves.append(node)
                    return
                start = len(leaves)
                visit(int(self.left[t, node]))
                middle = len(leaves)
                visit(int(self.right[t, node]))
                spans[node] = (start, middle, len(leaves))

            visit(0)
            width = max(width, len(leaves))
            leaf_values.append([float(self.value[t, n]) for n in leaves])
            for node, (lo, hi, end) in spans.items():
                # A tree rises in a feature if, at every split on it, no leaf on the left (lower values)
                # exceeds a leaf on the right: raising the feature can only move a row rightwards there.
                left, right = leaf_values[-1][lo:hi], leaf_values[-1][hi:end]
                holds = {1} if max(left) <= min(right) else set()
                holds |= {-1} if min(left) >= max(right) else set()
                split_feature = int(self.feature[t, node])
                monotone[split_feature] = monotone.get(split_feature, {1, -1}) & holds
                feature.append(int(self.feature[t, node]))
                threshold.append(float(self.threshold[t, node]))
                node_masks.append(((1 << 64) - 1) ^ (((1 << hi) - 1) ^ ((1 << lo) - 1)))
                node_tree.append(t)
        if width > 64:
            raise ValueError(f"trees with {width} leaves: bitmask evaluation handles at most 64")
        order = np.argsort(np.array(node_tree, dtype=np.int64), kind="stable")
        self._qs_feature = np.array(feature, dtype=np.intp)[order]
        self._qs_threshold = np.array(threshold, dtype=np.float64)[order]
        self._qs_mask = np.array(node_masks, dtype=np.uint64)[order]
        tree_of_node = np.array(node_tree, dtype=np.int64)[order]
        # Trees that are a single leaf add a constant; the others reduce over their split nodes.
        self._qs_trees = np.unique(tree_of_node)
        self._qs_starts = np.searchsorted(tree_of_node, self._qs_trees)
        constant = [i for i in range(n_trees) if i not in set(self._qs_trees.tolist())]
        self._qs_constant = float(sum(leaf_values[i][0] for i in constant))
        table = np.zeros((len(self._qs_trees), 64), dtype=np.float64)
        for row, t in enumerate(self._qs_trees.tolist()):
            table[row, : len(leaf_values[t])] = leaf_values[t]
        self._qs_table = table.ravel()
        self._qs_row = np.arange(len(self._qs_trees), dtype=np.int64) * 64
        self._all_ones = np.uint64((1 << 64) - 1)
        self._monotone = monotone

    @classmethod
    def from_sklearn(cls, model: object) -> Forest:
        """From a fitted binary ``HistGradientBoostingClassifier`` with numerical features only."""
        trees = [predictors[0].nodes for predictors in model._predictors]  # type: ignore[attr-defined]
        width = max(len(t) for t in trees)

        def stack(field: str, dtype: type) -> np.ndarray:
            out = np.zeros((len(trees), width), dtype=dtype)
            for i, nodes in enumerate(trees):
                out[i, : len(nodes)] = nodes[field]
            return out

        return cls({
            "feature": stack("feature_idx", np.int32), "threshold": stack("num_threshold", np.float64),
            "left": stack("left", np.int32), "right": stack("right", np.int32),
            "is_leaf": stack("is_leaf", np.bool_), "value": stack("value", np.float64),
            "baseline": np.array(model._baseline_prediction).ravel()[0],  # type: ignore[attr-defined]
            "depth": np.array(max(int(t["depth"].max()) for t in trees)),
        })  # fmt: skip

    def arrays(self) -> dict[str, np.ndarray]:
        return {"feature": self.feature, "threshold": self.threshold, "left": self.left, "right": self.right,
                "is_leaf": self.is_leaf, "value": self.value, "baseline": np.array(self.baseline),
                "depth": np.array(self.depth)}  # fmt: skip

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(same request) for each row of ``x`` (n, n_features)."""
        x = np.asarray(x, dtype=np.float64)
        if len(self._qs_trees) == 0:
            raw = np.full(len(x), self.baseline + self._qs_constant)
            return 1.0 / (1.0 + np.exp(-raw))
        false = x.take(self._qs_feature, axis=1) > self._qs_threshold  # (n, split nodes): go right
        alive = np.bitwise_and.reduceat(
            np.where(false, self._qs_mask, self._all_ones), self._qs_starts, axis=1
        )
        lowest = alive & (~alive + np.uint64(1))  # the lowest set bit: the exit leaf
        leaf = np.frexp(lowest.astype(np.float64))[1] - 1  # its index (exact for powers of two)
        raw = self.baseline + self._qs_constant + self._qs_table[self._qs_row + leaf].sum(axis=1)
        return 1.0 / (1.0 + np.exp(-raw))

    def upper_bound(self, x: np.ndarray, unknown: list[int]) -> np.ndarray:
        """An upper bound of ``predict_proba`` for each row of ``x`` whatever the values of the
        ``unknown`` columns (their values in ``x`` are ignored): each is set to the end of its range
        that the trees' monotonicity makes most favourable. Raises ValueError for a feature in which
        the trees are not monotone (no such bound is sound)."""
        x = np.array(x, dtype=np.float64)
        for column in unknown:
            directions = self._monotone.get(column, {1, -1})  # a feature no tree splits on: any value
            if not directions:
                raise ValueError(f"the trees are not monotone in feature {column}: it cannot be bounded")
            x[:, column] = np.inf if 1 in directions else -np.inf
        return self.predict_proba(x)

    def predict_proba_walk(self, x: np.ndarray) -> np.ndarray:
        """``predict_proba`` by walking every tree level by level (the reference for the bitmasks)."""
        x = np.asarray(x, dtype=np.float64)
        node = np.broadcast_to(self._roots, (len(x), len(self._roots)))
        for _ in range(self.depth):
            go_left = np.take_along_axis(x, self._feature.take(node), axis=1) <= self._threshold.take(node)
            node = np.where(go_left, self._left.take(node), self._right.take(node))
        raw = self.baseline + self._value.take(node).sum(axis=1)
        return 1.0 / (1.0 + np.exp(-raw))
