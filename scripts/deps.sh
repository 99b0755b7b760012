#!/usr/bin/env bash
# deps.sh - install what escrow needs to build and test on Debian 12, only
# what is missing. Runs as root, or through sudo when not root. Quiet unless
# it has something to install.
set -euo pipefail

pkgs=(build-essential meson ninja-build pkg-config python3
      libevent-dev liblmdb-dev libmsgpack-dev uthash-dev
      libsqlite3-dev   # sqlite: examples/bank-transfer, barrier/
      libpq-dev postgresql  # PostgreSQL: barrier/, its tests, the bank demo's pg variant
      libjansson-dev curl  # JSON (HTTP front, examples/bank-transfer) + load driver
      libssl-dev           # libcrypto: base64 and SHA-256 of the HTTP front, push group signatures
      etcd-server          # cluster mode's coordinator: tests/integration/test_cluster.c
      prometheus           # promtool: tests/http checks GET /metrics
      clang libclang-rt-dev  # libFuzzer targets (scripts/fuzz.sh)
      valgrind               # memcheck test (tests/recovery/test_valgrind.c)
      lmdb-utils             # mdb_stat, mdb_dump: doc/operations.md, doc/storage.md
      systemd)               # systemd-analyze verify of dist/escrowd.service (tests)

missing=()
for p in "${pkgs[@]}"; do
	# "install ok installed" only; a removed package leaves "deinstall ok config-files".
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps.sh: missing ${missing[*]}, and no apt-get here: install them by hand" >&2
	exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "deps.sh: missing ${missing[*]}; run as root or install sudo" >&2
		exit 1
	fi
fi

echo "deps.sh: installing ${missing[*]}" >&2
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o=Dpkg::Use-Pty=0)
"${apt[@]}" update >/dev/null
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
