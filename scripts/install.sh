#!/usr/bin/env bash
# Installs rsbench and the OpenMMLab stack into a virtual environment.
#
# mmseg and mmdet need mmcv 2.1.x *with compiled ops*, and no prebuilt wheel
# exists for current torch, so mmcv is built from its sdist once per machine
# (about 12-14 minutes on 2 cores) and the wheel is cached outside the repo,
# keyed by mmcv, torch and Python versions. Later installs take the cached wheel.
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=${TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.1}
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
WHEEL_CACHE=${RSBENCH_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rsbench/wheels}
EXTRAS=${EXTRAS:-dev}

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3.11 (or set PYTHON=/path/to/python3.11)"

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV" || die "could not create $VENV; on Debian/Ubuntu: apt-get install python3.11-venv"
fi
VENV=$(cd "$VENV" && pwd)
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

have_pkg() {  # have_pkg NAME VERSION -> 0 when exactly that version is installed
  [ "$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null)" = "$2" ]
}

if have_pkg torch "$TORCH_VERSION" && have_pkg torchvision "$TORCHVISION_VERSION"; then
  say "torch $TORCH_VERSION already installed"
else
  say "installing torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION"
  "${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
# mmcv's setup.py imports pkg_resources (gone from setuptools 81); torch needs >= 77.0.3.
"${PIP[@]}" install -q "setuptools>=77.0.3,<81" wheel ninja

PYTAG=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
KEY="mmcv-${MMCV_VERSION}_torch-${TORCH_VERSION}_${PYTAG}_$(uname -m)"
CACHE_DIR="$WHEEL_CACHE/$KEY"

build_mmcv() {
  command -v g++ >/dev/null 2>&1 || die "g++ not found: mmcv's compiled ops need a C++20 compiler; run: apt-get install -y build-essential"
  "$VENV/bin/python" -c "import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 1)" \
    || die "Python.h not found: run: apt-get install -y python3.11-dev (or the dev package of your Python)"
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  say "building mmcv $MMCV_VERSION with compiled ops (first install on this machine only, ~12-14 min on 2 cores)"
  "${PIP[@]}" download -q --no-binary :all: --no-deps "mmcv==$MMCV_VERSION" -d "$work" \
    || die "could not download the mmcv $MMCV_VERSION sdist from PyPI"
  tar -xzf "$work"/mmcv-*.tar.gz -C "$work"
  local src
  src=$(find "$work" -maxdepth 1 -type d -name "mmcv-*" | head -n 1)
  # Current torch headers need C++20; mmcv 2.1 hard-codes C++14/17.
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=${FORCE_CUDA:-0} MAX_JOBS=${MAX_JOBS:-2} \
     "$VENV/bin/python" -m pip --disable-pip-version-check wheel -q --no-build-isolation --no-deps . -w "$work/dist") \
    || die "mmcv build failed; the compiler output above says why (missing headers: apt-get install -y build-essential python3.11-dev)"
  mkdir -p "$CACHE_DIR"
  cp "$work"/dist/mmcv-*.whl "$CACHE_DIR.tmp.whl"
  mv "$CACHE_DIR.tmp.whl" "$CACHE_DIR/$(basename "$work"/dist/mmcv-*.whl)"
  say "cached $(ls "$CACHE_DIR")"
}

if "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
  say "mmcv $MMCV_VERSION with ops already installed"
else
  ls "$CACHE_DIR"/mmcv-*.whl >/dev/null 2>&1 || build_mmcv
  say "installing cached $(basename "$CACHE_DIR"/mmcv-*.whl)"
  "${PIP[@]}" install -q --no-deps "$CACHE_DIR"/mmcv-*.whl
fi

say "installing rsbench[$EXTRAS]"
"${PIP[@]}" install -q -e ".[$EXTRAS]"
(cd / && "$VENV/bin/python" -c "import mmcv.ops, mmseg, mmdet" 2>/dev/null) \
  || die "import of mmcv.ops / mmseg / mmdet failed after install; run: $VENV/bin/python -c 'import mmcv.ops, mmseg, mmdet'"
# Optional: a headless Chromium from Debian for the HTML report's browser test (tests/test_report.py
# skips those checks without it). Not a pip package: playwright's own browser download is not used.
if [ "${RSBENCH_BROWSER:-0}" = "1" ]; then
  if command -v chromium >/dev/null 2>&1; then
    say "chromium already installed"
  else
    command -v apt-get >/dev/null 2>&1 || die "RSBENCH_BROWSER=1 needs apt-get (Debian/Ubuntu); install Chromium yourself and set RSBENCH_CHROMIUM"
    say "installing chromium (Debian package) for the HTML report test"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium \
      || die "apt-get install chromium failed; the report's browser test will be skipped until it is installed"
  fi
fi
# Optional: a real Slurm for tests/test_slurm_cluster.py (skipped without it), which starts a one-node cluster of its
# own in a temporary folder. slurmdbd and MariaDB because submitit reads job states from sacct (tests/slurm_localhost.py).
if [ "${RSBENCH_SLURM:-0}" = "1" ]; then
  SLURM_PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
  if command -v sbatch >/dev/null 2>&1 && [ -x /usr/sbin/slurmdbd ] && [ -x /usr/sbin/munged ] && [ -x /usr/sbin/mariadbd ]; then
    say "slurm, munge and mariadb already installed"
  else
    command -v apt-get >/dev/null 2>&1 || die "RSBENCH_SLURM=1 needs apt-get (Debian/Ubuntu); install ${SLURM_PACKAGES[*]} yourself"
    say "installing ${SLURM_PACKAGES[*]} (Debian packages) for the Slurm test"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
      "${SLURM_PACKAGES[@]}" || die "apt-get install ${SLURM_PACKAGES[*]} failed; the Slurm test is skipped without them"
  fi
fi
say "done: $VENV is ready"
