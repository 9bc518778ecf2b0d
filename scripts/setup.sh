#!/usr/bin/env bash
# Create .venv with ragline and its bundled models. Safe to run again.
#   scripts/setup.sh demo    what `make demo` needs: ragline[demo] (PDF, Word, the answer models on
#                            prebuilt llama.cpp, serve); nothing compiles
#   scripts/setup.sh         everything: every extra, llama-cpp-python (compiled once), Ray,
#                            the test, benchmark and documentation tools, Chromium
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-full}
case "$MODE" in demo|full) ;; *) echo "usage: scripts/setup.sh [demo|full]" >&2; exit 2 ;; esac

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip

# The CPU build of torch, pinned: an unpinned torch would pull a multi-GB CUDA build.
$PIP install -q torch==2.13.0

if [ "$MODE" = demo ]; then
  # llama.cpp comes prebuilt (xllamacpp): nothing compiles
  $PIP install -q -e ".[demo]"
else
  # The RAG models' fast runtime, llama-cpp-python (extra llama-cpp), is source-only on PyPI.
  # Build it once with portable CPU flags (AVX2, no -march=native: the AMX kernels segfault in
  # some VMs, ggml-org/llama.cpp#20824) into a wheelhouse, so pip's cache can never hand back a
  # build made for another CPU.
  LLAMA=0.3.36
  WH=${RAGLINE_WHEELHOUSE:-$HOME/.cache/ragline/wheels}/llama-cpp-python-$LLAMA-portable-v1
  if ! ls "$WH"/llama_cpp_python-$LLAMA-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA (one time, about 10 minutes)…"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF" \
      $PIP wheel -q --no-cache-dir --no-deps -w "$WH" "llama-cpp-python==$LLAMA"
  fi
  $PIP install -q "$WH"/llama_cpp_python-$LLAMA-*.whl
  $PIP install -q -e ".[all,llama-cpp,ray,dev,bench,docs]"
fi

# The web page's tests drive Debian's Chromium with Playwright (Playwright's own browser
# download cannot work offline). A CJK font lets screenshots show Chinese text.
if [ "$MODE" = full ] && ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    echo "installing chromium for the web page tests (apt-get)…"
    $SUDO apt-get install -y -q chromium fonts-wqy-microhei >/dev/null \
      || { $SUDO apt-get update -q >/dev/null && \
           $SUDO apt-get install -y -q chromium fonts-wqy-microhei >/dev/null; } \
      || echo "warning: could not install chromium; the browser tests will be skipped" >&2
  else
    echo "note: install Debian's chromium to run the web page tests" >&2
  fi
fi
echo "ragline is installed in .venv ($(.venv/bin/ragline --version))"
