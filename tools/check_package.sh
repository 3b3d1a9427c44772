#!/usr/bin/env bash
# The packaging check (`make package`): build the wheel, inspect it, install it
# into a fresh venv outside the repository, and run what users run from there.
#
#  1. the wheel holds one top-level package, engine (and its dist-info): no
#     other top-level name, no .pth file, no .data directory (scripts or other
#     install-time files), RECORD lists exactly what is in it; the LICENSE and
#     py.typed ship; its version is engine/__init__.py's __version__;
#  2. installed, the built-in manifests load and validate, the demo runs, and
#     the conformance suite passes against the packaged fixtures;
#  3. mypy --strict on a small user program against the installed package
#     reports a typo in a response attribute (so the types reach users).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset PYTHONPATH AI_PROTOCOL_PATH
export ENGINE_CACHE_DIR="$tmp/cache" PIP_DISABLE_PIP_VERSION_CHECK=1

"$py" -m pip wheel -q --no-deps -w "$tmp/dist" "$repo"
wheel=$(ls "$tmp"/dist/*.whl)

echo "== the wheel: $(basename "$wheel")"
"$py" - "$wheel" "$repo/engine/__init__.py" <<'PY'
import csv, io, re, sys, zipfile

wheel, init = sys.argv[1], sys.argv[2]
version = re.search(r'^__version__ = "([^"]+)"', open(init).read(), re.M).group(1)
names = zipfile.ZipFile(wheel).namelist()
info = f"engine-{version}.dist-info"
problems = []
tops = sorted({n.split("/")[0] for n in names})
if tops != ["engine", info]:
    problems.append(f"top-level entries {tops}, expected ['engine', '{info}']")
problems += [f"{n}: a .pth file runs code at every interpreter start" for n in names
             if n.endswith(".pth")]
problems += [f"{n}: install-time files (.data)" for n in names if ".data/" in n]
problems += [f"{n}: interpreter start-up hook" for n in names
             if n.rsplit("/", 1)[-1] in ("sitecustomize.py", "usercustomize.py")]
for needed in (f"{info}/licenses/LICENSE", "engine/py.typed", "engine/_protocols/openai.yaml",
               "engine/conformance/_data/demo/demo.yaml",
               "engine/conformance/_data/known_failures.yaml"):
    if needed not in names:
        problems.append(f"{needed} is missing")
if not any(n.startswith("engine/conformance/_data/fixtures/") for n in names):
    problems.append("no packaged conformance fixtures")
record = zipfile.ZipFile(wheel).read(f"{info}/RECORD").decode()
listed = {row[0] for row in csv.reader(io.StringIO(record)) if row}
if listed != set(names):
    problems.append(f"RECORD differs from the contents: {sorted(listed ^ set(names))}")
if problems:
    sys.exit("wheel check failed:\n  " + "\n  ".join(problems))
print(f"ok: {len(names)} files, top level {tops}, no .pth, no install-time code, "
      f"LICENSE and py.typed shipped, version {version}")
PY

echo "== a fresh venv outside the repository"
python3 -m venv "$tmp/venv"
venv_py="$tmp/venv/bin/python"
# The aws extra too: the signing manifests' conformance cases need its signer.
"$venv_py" -m pip install -q "${wheel}[aws]" mypy
cd "$tmp"

"$venv_py" - <<'PY'
import engine.manifest as m
builtin = m.builtin_dir()
assert builtin.name == "_protocols" and "site-packages" in str(builtin), builtin
ids = sorted(p.stem for p in builtin.glob("*.yaml"))
for name in ids:
    m.load_manifest(name)
print(f"ok: {len(ids)} built-in manifests load from {builtin}: {', '.join(ids)}")
PY
"$venv_py" -m engine.validate "$("$venv_py" -c 'import engine.manifest as m; print(m.builtin_dir())')"

echo "== python -m engine.conformance.demo (installed)"
"$venv_py" -m engine.conformance.demo > demo.out || { cat demo.out; exit 1; }
tail -n 1 demo.out

echo "== python -m engine.conformance (installed, packaged fixtures)"
"$venv_py" -m engine.conformance > suite.out || { cat suite.out; exit 1; }
tail -n 1 suite.out

echo "== mypy --strict on a user program (installed package, py.typed)"
cat > user_program.py <<'PY'
import asyncio

from engine import AiClient, ChatResponse


async def main() -> None:
    async with await AiClient.create("openai/gpt-4o-mini", api_key="sk-test") as client:
        resp = await client.chat().user("hi").execute()
        print(resp.contnet)  # builder chain: line 9


def first_line(resp: ChatResponse) -> str:
    return resp.contnet  # ChatResponse directly: line 13


asyncio.run(main())
PY
set +e
"$tmp/venv/bin/mypy" --strict --no-incremental user_program.py > mypy.out 2>&1
status=$?
set -e
"$venv_py" - "$status" <<'PY'
import re, sys
out = open("mypy.out").read()
errors = re.findall(r"^user_program\.py:(\d+): error: (.*)$", out, re.M)
want = {9, 13}
typos = {int(line) for line, text in errors if 'has no attribute "contnet"' in text}
others = [f"{line}: {text}" for line, text in errors if int(line) not in want]
if sys.argv[1] != "1" or typos != want or others:
    sys.exit(f"mypy did not report exactly the two typos (lines 9 and 13):\n{out}")
print("ok: mypy reports resp.contnet through the builder chain (line 9) and on ChatResponse "
      "(line 13)")
PY
echo "package check passed"
