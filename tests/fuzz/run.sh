#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS seconds
# (default 30) from its seed corpus. Usage: tests/fuzz/run.sh [SECONDS]
# FUZZ_SEED fixes libFuzzer's seed (CI uses one, so that a red run can be replayed); unset or 0
# means a random seed.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-30}
out=${FUZZ_BUILD_DIR:-build-fuzz}
mkdir -p "$out"
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I.)
clang++ "${flags[@]}" tests/fuzz/fuzz_inbound.cpp protocol/*.cpp -o "$out/fuzz_inbound"
# context/ is a leaf: the whole of it links on its own.
clang++ "${flags[@]}" tests/fuzz/fuzz_token.cpp context/*.cpp -lcrypto -o "$out/fuzz_token"
for target in inbound token; do
  work="$out/corpus-$target"
  mkdir -p "$work"
  echo "fuzz_$target: ${seconds}s"
  "$out/fuzz_$target" -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$out/crash-$target-" -seed="${FUZZ_SEED:-0}" \
    "$work" "tests/fuzz/corpus/$target" 2>&1 | tail -n 4
done
echo "fuzzing: no crash"
