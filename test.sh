#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")"

# Node for the npm tools below; curl uploads to the S3 store with its own request signing.
if ! command -v npm >/dev/null || ! command -v curl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm curl >/dev/null
fi

# An S3-compatible server (s3rver, pinned in tools/s3rver/package-lock.json) for the model storage tests.
(cd tools/s3rver && npm ci --no-audit --no-fund --silent)
# Open Inference Protocol clients nobody here wrote (@grpc/grpc-js, Ajv; pinned in tools/oip-conformance) for
# the conformance tests against the published spec in ../shared/specs.
(cd tools/oip-conformance && npm ci --no-audit --no-fund --silent)

# The manifest validator and the chart renderer are shared material (../shared is read-only): copy the first
# into .tools/ and install its npm dependencies there; build the second into .tools/. Tests that need them skip,
# saying why, where ../shared is absent.
if [ -d ../shared/tools/k8s-validate ]; then
  rm -rf .tools/k8s-validate && mkdir -p .tools
  cp -r ../shared/tools/k8s-validate .tools/ && chmod -R u+w .tools/k8s-validate
  (cd .tools/k8s-validate && npm ci --no-audit --no-fund --silent)
  # Helm v3's own rendering code, for the chart's tests (its build installs Debian's Go packages it needs).
  OUT_DIR="$PWD/.tools/helm-template" bash ../shared/tools/helm-template/build.sh >/dev/null
fi

# A real Prometheus for the operator's metrics tests (Debian's package; the tests start it on loopback).
if ! command -v prometheus >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

# kubectl, for the test that drives the README's kubectl flow against the API server double (Debian's
# package, where no kubectl is installed).
if ! command -v kubectl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi

dotnet test Adaptive.sln -c Release
