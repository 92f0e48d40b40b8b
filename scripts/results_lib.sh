# Shared by the scripts that reproduce the README's results (scripts/*_results.sh), sourced after
# they set `out` (the directory of their runs): the binary, built when missing, and `train`.
bin=build/torchae
[ -x "$bin" ] || scripts/build.sh torchae_cli
mkdir -p "$out"

train() {  # train NAME [ARGS...]: a new run, or the continuation of an unfinished one
  local name=$1
  shift
  if [ -f "$out/$name/config.json" ]; then
    "$bin" train --resume "$out/$name" --set train.progress=lines
  else
    "$bin" train "$@" --set train.progress=lines --out "$out/$name"
  fi
}
