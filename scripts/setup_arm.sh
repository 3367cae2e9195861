#!/usr/bin/env bash
# Set up what the `arm` target needs to build and to run its artifacts on an x86 machine:
#   - Debian's aarch64 cross compiler (g++-aarch64-linux-gnu) and qemu-user (qemu-aarch64);
#   - the aarch64 TVM runtime (libtvm_runtime.so, libtvm_ffi.so and the tvm/ffi headers), unpacked
#     from PyPI's manylinux aarch64 apache-tvm / apache-tvm-ffi wheels (the versions pinned in
#     pyproject.toml) into $GRAPHOPT_ARM_RUNTIME (default ${XDG_CACHE_HOME:-~/.cache}/graphopt/aarch64-runtime);
#   - graphopt_runner (targets/arm/runner/runner.cc) cross-compiled against it, in $GRAPHOPT_ARM_RUNTIME/bin.
# Idempotent: a second run checks a stamp and returns in well under a second. Needs root for apt-get.
set -euo pipefail

TVM_VERSION=0.27.0.post1
TVM_FFI_VERSION=0.1.14.post1
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNNER_SRC="$REPO/targets/arm/runner/runner.cc"
# Under sudo, the cache belongs to the user who will run the tests, not to root.
OWNER_HOME="$HOME"
if [[ -n "${SUDO_USER:-}" && "${SUDO_USER}" != root ]]; then OWNER_HOME="$(getent passwd "$SUDO_USER" | cut -d: -f6)"; fi
CACHE="${GRAPHOPT_ARM_RUNTIME:-${XDG_CACHE_HOME:-$OWNER_HOME/.cache}/graphopt/aarch64-runtime}"
STAMP="$CACHE/.setup-stamp"
WANT_STAMP="tvm=$TVM_VERSION ffi=$TVM_FFI_VERSION runner=$(sha256sum "$RUNNER_SRC" | cut -c1-16)"

have_tools() { command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; }

if have_tools && [[ -x "$CACHE/bin/graphopt_runner" && "$(cat "$STAMP" 2>/dev/null)" == "$WANT_STAMP" ]]; then
  exit 0
fi

if ! have_tools; then
  echo "setup_arm: installing g++-aarch64-linux-gnu and qemu-user" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup_arm: apt-get needs root: run this script as root" >&2; exit 1; }
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends g++-aarch64-linux-gnu qemu-user; }
  if ! apt-cache show g++-aarch64-linux-gnu >/dev/null 2>&1 || ! apt_install; then
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update
    apt_install
  fi
fi

# A pip able to download wheels for another platform: $PYTHON, else the repo's venv, else python3.
PYTHON="${PYTHON:-}"
for candidate in "$PYTHON" "$REPO/.venv/bin/python" python3; do
  if [[ -n "$candidate" ]] && "$candidate" -m pip --version >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
done

echo "setup_arm: fetching the aarch64 TVM runtime into $CACHE" >&2
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --python-version 3.11 \
  "apache-tvm==$TVM_VERSION" "apache-tvm-ffi==$TVM_FFI_VERSION" -d "$WORK"

# Unpack only the runtime libraries and the tvm/ffi + dlpack headers (not the 240 MB compiler library).
rm -rf "$CACHE/lib" "$CACHE/include" "$CACHE/bin"
mkdir -p "$CACHE/lib" "$CACHE/include" "$CACHE/bin"
"$PYTHON" - "$WORK" "$CACHE" <<'EOF'
import pathlib, shutil, sys, zipfile

work, cache = map(pathlib.Path, sys.argv[1:])
wanted = {"tvm/lib/libtvm_runtime.so": "lib", "tvm_ffi/lib/libtvm_ffi.so": "lib"}
for wheel in work.glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name in wanted:
                target = cache / wanted[name] / pathlib.Path(name).name
            elif name.startswith(("tvm_ffi/include/tvm/ffi/", "tvm_ffi/include/dlpack/")) and not name.endswith("/"):
                target = cache / "include" / name.removeprefix("tvm_ffi/include/")
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
missing = [n for n in wanted if not (cache / wanted[n] / pathlib.Path(n).name).exists()]
if missing:
    sys.exit(f"setup_arm: the wheels did not contain {missing}")
EOF

echo "setup_arm: cross-compiling graphopt_runner" >&2
aarch64-linux-gnu-g++ -std=c++17 -O2 -I"$CACHE/include" "$RUNNER_SRC" -o "$CACHE/bin/graphopt_runner" \
  -L"$CACHE/lib" -Wl,--no-as-needed -ltvm_runtime -ltvm_ffi -Wl,-rpath,'$ORIGIN/../lib'
echo "$WANT_STAMP" > "$STAMP"
if [[ -n "${SUDO_USER:-}" && "${SUDO_USER}" != root ]]; then chown -R "$SUDO_USER": "$CACHE"; fi
echo "setup_arm: ready ($CACHE)" >&2
