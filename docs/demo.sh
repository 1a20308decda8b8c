#!/usr/bin/env bash
# A real dataver session: a throwaway git repo, data made on the spot, add / status /
# re-add / checkout / verify, and push / pull through a local-folder remote.
# Run from anywhere: bash docs/demo.sh
set -euo pipefail
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/dataver-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.com GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.com

mkdir project && cd project
run git init -q
run dataver init
python3 - <<'PY'
import os, random
rng = random.Random(7)
for i in range(500):
    path = f"data/part{i % 5}/sample{i:04d}.bin"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(rng.randbytes(rng.randint(1_000, 20_000)))
os.makedirs("models", exist_ok=True)
with open("models/model.pt", "wb") as f:
    f.write(rng.randbytes(48 * 1024 * 1024))
print("made data/ (500 files) and models/model.pt (48 MiB)")
PY
run dataver add data models/model.pt
run cat data.dv
run git add data.dv models/model.pt.dv .gitignore models/.gitignore .dataver/config .dataver/.gitignore
run git commit -qm "v1: data and model"

say "edit one file, delete one, add one"
echo "edited" > data/part0/sample0000.bin
rm data/part1/sample0001.bin
echo "new" > data/part2/new.bin
run dataver status
run dataver add data
run git commit -qam "v2: data edited"

run rm -rf data models/model.pt
run dataver status
run dataver checkout
run dataver verify

run dataver remote add storage "$work/remote-storage" --default
run git commit -qam "add a local-folder remote"
run dataver push
say "a teammate clones the repo and pulls the data"
run git clone -q "$work/project" "$work/teammate"
cd "$work/teammate"
run dataver pull
run dataver verify
say "demo finished: every step above ran for real in $work (removed on exit)"
