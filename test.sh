#!/usr/bin/env bash
# The whole test suite: unit tests, llama.cpp interop tests, and the SIMD kernel tests again with
# AVX-512 and then AVX2 switched off so that every vector path runs on this machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
dotnet build ModelSmith.sln -c Release --nologo -v quiet -clp:ErrorsOnly
dotnet test ModelSmith.sln -c Release --no-build --nologo
DOTNET_EnableAVX512F=0 dotnet test tests/ModelSmith.Tests -c Release --no-build --nologo --filter "Category=Kernels"
DOTNET_EnableAVX2=0 dotnet test tests/ModelSmith.Tests -c Release --no-build --nologo --filter "Category=Kernels"
