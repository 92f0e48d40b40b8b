#!/usr/bin/env bash
# torchae against plain PyTorch (bench/reference.py at its best setting) and against the GEMM
# floor, side by side: see bench/compare.py.
#
# usage: bench/compare.sh [ROUNDS] [STEPS] [BATCHES] [--blas-threads-auto]   (from the repository root, after
# building; arguments after the third go to compare.py)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "compare.sh: /usr/bin/python3 has no torch (apt-get install python3-torch)" >&2; exit 1; }
exec /usr/bin/python3 "$here/compare.py" --rounds "${1:-3}" --steps "${2:-300}" --batches "${3:-32,128,512}" "${@:4}"
