#!/usr/bin/env bash
# Peak memory of `fedrisk-participant score` against `train` on one large generated CSV
# (BENCHMARKS.md, "score memory"). Usage: scripts/score_memory.sh [ROWS] (default 4,300,000,
# about 200 MB). With BASELINE=/path/to/another/fedrisk-participant, that build's `score` is
# measured on the same file too. Needs /usr/bin/time (GNU time) and the release binaries:
#   cargo build --release -p fedrisk-participant
#   cargo build --release -p fedrisk-models --example synth_csv
set -euo pipefail
ROWS=${1:-4300000}
TARGET=${CARGO_TARGET_DIR:-target}
P="$TARGET/release/fedrisk-participant"
GEN="$TARGET/release/examples/synth_csv"
for exe in "$P" "$GEN" /usr/bin/time; do
  [ -x "$exe" ] || { echo "missing $exe (see the header of $0)" >&2; exit 1; }
done
DIR=$(mktemp -d "${TMPDIR:-/tmp}/fedrisk-score-mem-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
"$GEN" "$ROWS" "$DIR/big.csv" 1
"$GEN" 20000 "$DIR/small.csv" 2 >/dev/null
"$P" train --data "$DIR/small.csv" --schema "$DIR/small.schema.json" --out "$DIR/model.json" >/dev/null
peak() { # label, command...: prints the command's output tail and its max resident set
  local label=$1; shift
  /usr/bin/time -v "$@" >"$DIR/out.txt" 2>"$DIR/time.txt"
  local kb
  kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$DIR/time.txt")
  local secs
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$DIR/time.txt")
  awk -v l="$label" -v kb="$kb" -v s="$secs" 'BEGIN { printf "%-6s peak RSS %7.1f MB, wall %s\n", l, kb / 1024, s }'
  tail -c 400 "$DIR/out.txt"
}
SIZE=$(stat -c %s "$DIR/big.csv")
echo "data: $ROWS rows, $((SIZE / 1000000)) MB"
peak score "$P" score --model "$DIR/model.json" --data "$DIR/big.csv" --out "$DIR/scores.csv"
peak train "$P" train --data "$DIR/big.csv" --schema "$DIR/big.schema.json" --out "$DIR/big-model.json"
if [ -n "${BASELINE:-}" ]; then
  peak base "$BASELINE" score --model "$DIR/model.json" --data "$DIR/big.csv" --out "$DIR/scores-base.csv"
fi
