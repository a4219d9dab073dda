# Sourced (from the repository root) by scripts/blackbox.sh and scripts/durability.sh: the virtualenv
# target/blackbox-venv with the providers' SDKs of tests/blackbox/requirements.txt installed. Sets
# $venv and $py (its python) and keeps Python from writing __pycache__ into tests/.
venv=target/blackbox-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/blackbox/requirements.txt
py="$venv/bin/python"
export PYTHONDONTWRITEBYTECODE=1
