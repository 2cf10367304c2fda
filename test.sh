#!/usr/bin/env bash
# The whole test suite: unit tests, llama.cpp interop tests, and the SIMD kernel tests again with
# AVX-512 and then AVX2 switched off so that every vector path runs on this machine (.NET 10 reads
# DOTNET_EnableAVX512; DOTNET_EnableAVX512F is what earlier runtimes read).
# Ends with one line "N passed, N failed" summing every run.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0

run() {
  "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || status=1
}

dotnet build ModelSmith.sln -c Release --nologo -v quiet -clp:ErrorsOnly || exit 1
run dotnet test ModelSmith.sln -c Release --no-build --nologo
DOTNET_EnableAVX512=0 DOTNET_EnableAVX512F=0 run dotnet test tests/ModelSmith.Tests -c Release --no-build --nologo --filter "Category=Kernels"
DOTNET_EnableAVX2=0 run dotnet test tests/ModelSmith.Tests -c Release --no-build --nologo --filter "Category=Kernels"

passed=$(grep -oE "Passed: +[0-9]+" "$log" | awk '{s += $2} END {print s + 0}')
failed=$(grep -oE "Failed: +[0-9]+" "$log" | awk '{s += $2} END {print s + 0}')
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || status=1
exit $status
