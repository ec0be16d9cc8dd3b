#!/usr/bin/env bash
# The real Azure ML v1 client (azureml-core + azureml-train-core from the package index) in its
# own virtual environment, for tests/test_emulator*.py. Reused when it already imports; prints its
# path. SIMML_AZUREML_VENV overrides the default ~/.cache/simml/azureml-venv.
set -euo pipefail
VENV="${SIMML_AZUREML_VENV:-$HOME/.cache/simml/azureml-venv}"
works() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import importlib.util, azureml.core
assert importlib.util.find_spec("azureml.train.sklearn")
PY
}
if works; then echo "$VENV"; exit 0; fi
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check azureml-core azureml-train-core >&2
works || { echo "the azureml client venv at $VENV does not import azureml.core" >&2; exit 1; }
echo "$VENV"
