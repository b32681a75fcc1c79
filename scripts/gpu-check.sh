#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and the CUDA 13 libraries (for example in a
# PyTorch cu130 virtualenv), using the binaries scripts/build-cuda.sh built elsewhere; builds
# nothing. Prints versions, then trains every implemented preset on CUDA and on the CPU from
# the same seed (relative difference of their metrics, steps per second of both, at the
# preset's size and at a size that fills the GPU), and compares the device TopK with its host
# twin. Finishes in under 8 minutes.
#
#   scripts/gpu-check.sh [target/cuda/release/reglab]
set -u
cd "$(dirname "$0")/.."
bin=${1:-target/cuda/release/reglab}
[ -x "$bin" ] || { echo "gpu-check: no binary at $bin (run scripts/build-cuda.sh first)" >&2; exit 2; }

echo "== GPU and driver"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv
  nvidia-smi | grep -m1 "CUDA Version" || true
else
  echo "nvidia-smi: not found"
fi

echo "== CUDA 13 libraries"
lib=""
for py in ${PYTHON:-} python3 python /opt/venv/bin/python /usr/bin/python3; do
  command -v "$py" >/dev/null 2>&1 || continue
  lib=$("$py" - 2>/dev/null <<'PY'
import os
try:
    import nvidia
except ImportError:
    raise SystemExit
for p in nvidia.__path__:
    d = os.path.join(p, "cu13", "lib")
    if os.path.isdir(d):
        print(d)
        break
PY
)
  if [ -n "$lib" ]; then echo "python: $(command -v "$py")"; break; fi
done
if [ -n "$lib" ]; then
  export LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"
  echo "LD_LIBRARY_PATH starts with $lib"
  python3 - "$lib" <<'PY' || true
import ctypes, glob, sys
lib = sys.argv[1]
for name, fn in [("libnvrtc.so.13", "nvrtcVersion"), ("libcudart.so.13", "cudaRuntimeGetVersion")]:
    paths = glob.glob(f"{lib}/{name}*")
    if not paths:
        print(f"{name}: not found"); continue
    so = ctypes.CDLL(paths[0])
    if fn == "nvrtcVersion":
        a, b = ctypes.c_int(), ctypes.c_int()
        so.nvrtcVersion(ctypes.byref(a), ctypes.byref(b))
        print(f"NVRTC {a.value}.{b.value} ({paths[0]})")
    else:
        v = ctypes.c_int()
        so.cudaRuntimeGetVersion(ctypes.byref(v))
        print(f"CUDA runtime {v.value // 1000}.{v.value % 1000 // 10} ({paths[0]})")
PY
else
  echo "no nvidia/cu13/lib found in a Python environment; using the system library path"
fi

echo "== paths baked into the binary by dfdx (for the kernels it compiles with NVRTC)"
# The CUDA include folder and dfdx's build OUT_DIR (its .cuh headers), as absolute paths of the
# build machine. Recreate them here when they are missing.
inc=$(strings "$bin" | grep -oE '/[A-Za-z0-9_.+/-]*/cuda/include' | head -n 1 || true)
out=$(strings "$bin" | grep -oE '/[A-Za-z0-9_.+/-]*/build/dfdx-[0-9a-f]+/out' | head -n 1 || true)
# The two strings can sit back to back in the binary: cut the include folder off the front.
[ -n "$inc" ] && out=${out#"$inc"}
if [ -n "$inc" ]; then
  if [ -d "$inc" ]; then
    echo "include: $inc exists"
  elif [ -n "$lib" ] && mkdir -p "$(dirname "$inc")" 2>/dev/null && ln -sfn "$lib/../include" "$inc"; then
    echo "include: $inc -> $lib/../include (created)"
  else
    echo "include: $inc missing"
  fi
fi
if [ -n "$out" ]; then
  carried=$(ls -d target/cuda/release/build/dfdx-*/out 2>/dev/null | head -n 1)
  if [ -d "$out" ]; then
    echo "dfdx headers: $out exists"
  elif [ -n "$carried" ] && mkdir -p "$(dirname "$out")" 2>/dev/null && ln -sfn "$(pwd)/$carried" "$out"; then
    echo "dfdx headers: $out -> $carried (created)"
  else
    echo "dfdx headers: $out missing (reshapes of strided tensors and concat would fail on CUDA)"
  fi
fi

echo "== reglab on CUDA and on the CPU"
"$bin" --version
timeout 420 "$bin" device-check
rc=$?

exit $rc
