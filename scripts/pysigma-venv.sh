#!/usr/bin/env bash
# Creates (once) the Python venv holding the independent Sigma reference used by
# tests/python/sigma_sqlite.py: pySigma with its SQLite backend and the Windows
# logsource pipelines, all pinned. Idempotent: when the venv's marker file
# records exactly these pins, nothing is installed. The last line printed on
# stdout is the venv's python.
#
#   PYSIGMA_VENV   default ~/.cache/spoor/pysigma-venv
#
# Pins. pysigma-backend-sqlite 2.1.1 requires pySigma >=2.0.1,<3. The two
# pipelines (pysigma-pipeline-windows 2.0.1, pysigma-pipeline-sysmon 2.0.0, the
# newest releases) still declare pysigma <2, so a resolver refuses the set;
# they only build ProcessingItems from classes pySigma 2.0.1 still has, and the
# backend's own README says to install them with --no-deps. That is what is
# done here, in a second pip step, after the main pins and their dependencies.
# Their dependency tree is exactly pySigma's, which the first step installs.
set -euo pipefail

venv="${PYSIGMA_VENV:-$HOME/.cache/spoor/pysigma-venv}"
python="${PYTHON:-python3}"

main_pins=(
  'pySigma==2.0.1'
  'pysigma-backend-sqlite==2.1.1'
)
nodeps_pins=(
  'pysigma-pipeline-windows==2.0.1'
  'pysigma-pipeline-sysmon==2.0.0'
)
# pySigma's own dependencies, as resolved on 2026 registries for Python 3.11,
# pinned too so that the reference does not drift (a constraints file: pip
# installs only those the main pins need).
constraint_pins=(
  'certifi==2026.10.19.post1'
  'charset-normalizer==3.5.3'
  'diskcache==5.6.3'
  'diskcache-stubs==5.6.3.6.20240818'
  'google-re2==1.1.20251105'
  'idna==3.20'
  'Jinja2==3.1.6'
  'jq==1.13.0'
  'MarkupSafe==3.0.4'
  'packaging==26.4'
  'pyparsing==3.3.3'
  'PyYAML==6.0.4'
  'requests==2.34.2'
  'types-PyYAML==6.0.12.20261122'
  'typing_extensions==4.16.0'
  'urllib3==2.8.0'
)
marker="$venv/.spoor-pysigma-pins"
want="$(printf '%s\n' "${main_pins[@]}" "${nodeps_pins[@]}" "${constraint_pins[@]}")"

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && [ -x "$venv/bin/python" ] \
  && "$venv/bin/python" -c 'import sigma.backends.sqlite, sigma.pipelines.windows, sigma.pipelines.sysmon' >/dev/null 2>&1; then
  echo "$venv/bin/python"
  exit 0
fi

echo "installing pySigma and its SQLite backend into $venv" >&2
mkdir -p "$(dirname "$venv")"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
rm -f "$marker"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
printf '%s\n' "${constraint_pins[@]}" >"$constraints"
"$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" "${main_pins[@]}" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "${nodeps_pins[@]}" >&2
"$venv/bin/python" -c 'import sigma.backends.sqlite, sigma.pipelines.windows, sigma.pipelines.sysmon'
printf '%s\n' "$want" >"$marker"
echo "$venv/bin/python"
