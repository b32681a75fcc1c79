#!/usr/bin/env bash
# Builds reglab with the `cuda` feature on a machine without a GPU or a CUDA toolkit, using the
# CUDA 13.0 packages from PyPI (newer nvcc emits PTX that driver 580 rejects; the CCCL headers
# provide <nv/target>, which cuda_fp16.h includes).
#
#   scripts/build-cuda.sh            # -> target/cuda/release/reglab (needs libcuda.so.1 at run time)
#
# Environment: CUDA_BUILD_DIR (default .cuda-build) holds the virtualenv, the CUDA root with
# include/ bin/ lib/, the libcuda link stub and the stand-in nvidia-smi; CUDA_COMPUTE_CAP
# (default 90: H100/H200).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${CUDA_BUILD_DIR:-$root/.cuda-build}
cap=${CUDA_COMPUTE_CAP:-90}
mkdir -p "$build"

echo "== CUDA 13.0 packages (PyPI) into $build/venv"
if [ ! -x "$build/venv/bin/python" ]; then
  python3 -m venv "$build/venv"
fi
"$build/venv/bin/pip" install --quiet --disable-pip-version-check \
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14 \
  nvidia-cuda-cccl==13.0.85
cu13=$("$build/venv/bin/python" - <<'PY'
import os, nvidia
for p in nvidia.__path__:
    if os.path.isdir(os.path.join(p, "cu13")):
        print(os.path.join(p, "cu13"))
        break
PY
)
[ -n "$cu13" ] || { echo "build-cuda: the nvidia/cu13 folder was not found" >&2; exit 1; }
echo "   CUDA tree: $cu13"

echo "== CUDA root $build/cuda"
cuda_root=$build/cuda
mkdir -p "$cuda_root/lib"
ln -sfn "$cu13/include" "$cuda_root/include"
ln -sfn "$cu13/bin" "$cuda_root/bin"
for lib in nvrtc cublas cublasLt; do
  so=$(ls "$cu13/lib/lib$lib.so."* 2>/dev/null | head -n 1)
  [ -n "$so" ] || { echo "build-cuda: lib$lib.so.* missing in $cu13/lib" >&2; exit 1; }
  ln -sf "$so" "$cuda_root/lib/lib$lib.so"
done
# nvcc finds its helpers (cicc, ptxas) through nvvm/ next to bin/.
[ -e "$cu13/nvvm" ] && ln -sfn "$cu13/nvvm" "$cuda_root/nvvm"

echo "== libcuda link stub (the driver provides the real one at run time; every stub function"
echo "   returns CUDA_ERROR_NO_DEVICE, so the binary reports 'no CUDA device' where no driver is)"
sys_rs=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.9.15/src/driver/sys.rs 2>/dev/null | head -n 1 || true)
if [ -z "$sys_rs" ]; then
  cargo fetch --quiet
  sys_rs=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.9.15/src/driver/sys.rs | head -n 1)
fi
{
  echo 'int cuGetErrorString(int e, const char **s) { *s = "no CUDA driver (link stub)"; return 0; }'
  echo 'int cuGetErrorName(int e, const char **s) { *s = "CUDA_ERROR_NO_DEVICE"; return 0; }'
  grep -oE 'pub fn cu[A-Za-z0-9_]+' "$sys_rs" | awk '{print $3}' | sort -u \
    | grep -vxE 'cuGetErrorString|cuGetErrorName' \
    | awk '{print "int " $1 "(void) { return 100; }"}'
} > "$build/libcuda_stub.c"
mkdir -p "$build/stub"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda_root/lib/libcuda.so" "$build/libcuda_stub.c"
# For trying the binary on this machine: LD_LIBRARY_PATH=$build/stub makes it start and report
# "no CUDA device". Never put this folder on a GPU machine's library path.
cp "$cuda_root/lib/libcuda.so" "$build/stub/libcuda.so.1"
echo "   $(wc -l < "$build/libcuda_stub.c") driver functions stubbed"

echo "== stand-in nvidia-smi (dfdx's build asks it for the compute capability)"
mkdir -p "$build/bin"
printf '#!/bin/sh\necho compute_cap\necho %s\n' "${cap:0:1}.${cap:1}" > "$build/bin/nvidia-smi"
chmod +x "$build/bin/nvidia-smi"

echo "== cargo build --release --features cuda (into target/cuda)"
unset CUDA_PATH
export CUDA_ROOT=$cuda_root CUDA_COMPUTE_CAP=$cap
export PATH=$build/bin:$cuda_root/bin:$PATH
export LIBRARY_PATH=$cuda_root/lib:${LIBRARY_PATH:-}
export RUSTFLAGS="${RUSTFLAGS:-} -L $cuda_root/lib"
export CARGO_TARGET_DIR=$root/target/cuda
cargo build --release --features cuda --bins --tests
echo "== done: target/cuda/release/reglab"
readelf -d target/cuda/release/reglab | grep NEEDED || true
echo "   (scripts/gpu-check.sh runs it on a GPU machine)"
