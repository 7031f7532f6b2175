"""The shipped router artifact: ``artifacts/router-v<N>.npz`` (weights) + ``router-v<N>.json`` (card data).

Loading needs numpy only. Versions are whole numbers; the highest present is the default.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

_NAME = re.compile(r"^router-v(\d+)\.npz$")


def artifacts_dir() -> Path:
    return Path(str(resources.files("router_models").joinpath("artifacts")))


def versions(directory: Path | None = None) -> list[int]:
    directory = directory or artifacts_dir()
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def artifact_path(version: int | None = None, directory: Path | None = None) -> Path:
    """``.npz`` path of ``version`` (default: the latest shipped version)."""
    directory = directory or artifacts_dir()
    if version is None:
        available = versions(directory)
        if not available:
            raise FileNotFoundError(f"no router artifact in {directory}; run `gateway router train`")
        version = available[-1]
    return directory / f"router-v{version}.npz"


@dataclass(frozen=True, slots=True)
class Artifact:
    """Weights of a linear router: ``sigmoid(bias + dense + terms + embedding)`` contributions."""

    metadata: dict[str, Any]
    dense_mean: np.ndarray
    dense_scale: np.ndarray
    dense_weights: np.ndarray
    terms: list[str]
    term_idf: np.ndarray
    term_coefficients: np.ndarray
    embedding_weights: np.ndarray
    bias: float

    @property
    def version(self) -> int:
        return int(self.metadata["version"])

    def save(self, npz_path: Path) -> None:
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            npz_path,
            dense_mean=self.dense_mean,
            dense_scale=self.dense_scale,
            dense_weights=self.dense_weights,
            terms=np.frombuffer("\n".join(self.terms).encode("utf-8"), dtype=np.uint8),
            term_idf=self.term_idf.astype(np.float32),
            term_coefficients=self.term_coefficients.astype(np.float32),
            embedding_weights=self.embedding_weights.astype(np.float32),
            bias=np.array([self.bias]),
        )
        npz_path.with_suffix(".json").write_text(
            json.dumps(self.metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, npz_path: Path | None = None) -> Artifact:
        npz_path = npz_path or artifact_path()
        with np.load(npz_path) as arrays:
            joined = arrays["terms"].tobytes().decode("utf-8")
            return cls(
                metadata=json.loads(npz_path.with_suffix(".json").read_text(encoding="utf-8")),
                dense_mean=arrays["dense_mean"],
                dense_scale=arrays["dense_scale"],
                dense_weights=arrays["dense_weights"],
                terms=joined.split("\n") if joined else [],
                term_idf=arrays["term_idf"].astype(np.float64),
                term_coefficients=arrays["term_coefficients"].astype(np.float64),
                embedding_weights=arrays["embedding_weights"].astype(np.float64),
                bias=float(arrays["bias"][0]),
            )
