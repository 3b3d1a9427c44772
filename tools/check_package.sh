#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv outside the repository, and
# prove the installed package finds its built-in manifests.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip wheel -q --no-deps -w "$tmp/dist" "$repo"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q "$tmp"/dist/*.whl
cd "$tmp"
"$tmp/venv/bin/python" - <<'PY'
import pathlib
import engine.manifest as m
builtin = m.builtin_dir()
assert builtin.name == "_protocols" and "site-packages" in str(builtin), builtin
ids = sorted(p.stem for p in builtin.glob("*.yaml"))
for name in ids:
    m.load_manifest(name)
print(f"installed wheel: {len(ids)} built-in manifests load from {builtin}: {', '.join(ids)}")
PY
"$tmp/venv/bin/python" -m engine.validate "$("$tmp/venv/bin/python" -c 'import engine.manifest as m; print(m.builtin_dir())')"
