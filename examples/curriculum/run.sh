#!/usr/bin/env bash
# The label-noise experiment of the curricula issue: the digits MLP with 20% of its
# training labels flipped (seeded; the test labels stay clean), 440 AdamW steps each,
# sampled uniformly, self-paced (Kumar et al. 2010), loss-proportionally (hard-example
# mining) and by OHEM (Shrivastava et al. 2016). Three seeds each; test accuracy every
# 20 steps; one figure of the seed-0 curves and a table of final accuracies.
#
#   examples/curriculum/run.sh [OUT_DIR]     (default target/curriculum)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/curriculum}
mkdir -p "$out"
cargo build --release -q -p anneal
anneal=./target/release/anneal
runs="uniform self_paced mining ohem"
for seed in 0 1 2; do
  for r in $runs; do
    $anneal run "examples/curriculum/$r.anneal" --seed "$seed" --eval-every 20 \
      --metrics "$out/$r-seed$seed.jsonl" --json > "$out/$r-seed$seed.json"
  done
done
files=""
for r in $runs; do files="$files $out/$r-seed0.jsonl"; done
# shellcheck disable=SC2086
$anneal plot $files --metric test_accuracy -o "$out/test_accuracy.png"
echo "| sampling | seed 0 | seed 1 | seed 2 | mean |"
echo "|---|---|---|---|---|"
for r in $runs; do
  accs=""
  for seed in 0 1 2; do
    a=$(sed -n 's/.*"test_accuracy":\([0-9.]*\).*/\1/p' "$out/$r-seed$seed.json")
    accs="$accs $a"
  done
  # shellcheck disable=SC2086
  echo "$r$accs" | awk '{ printf "| %s | %.4f | %.4f | %.4f | %.4f |\n", $1, $2, $3, $4, ($2 + $3 + $4) / 3 }'
done
echo "figure: $out/test_accuracy.png"
