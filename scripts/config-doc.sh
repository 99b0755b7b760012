#!/bin/sh
# config-doc.sh - doc/config.md and escrow.conf.sample are generated from
# escrowd's option table (broker/config.c).
#
# usage: scripts/config-doc.sh --check|--write ESCROWD SRCDIR
#   --check  exit 1 (with a diff) when a checked-in file is stale (the unit test)
#   --write  rewrite them (ninja -C build config-doc)
set -u
mode=${1:?--check or --write}
escrowd=${2:?path of escrowd}
src=${3:?source dir}
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
"$escrowd" --print-config-doc >"$tmp/config.md" || exit 2
"$escrowd" --print-config-sample >"$tmp/escrow.conf.sample" || exit 2
rc=0
for pair in "config.md:doc/config.md" "escrow.conf.sample:escrow.conf.sample"; do
	gen=$tmp/${pair%%:*}
	dst=$src/${pair#*:}
	if [ "$mode" = --write ]; then
		cmp -s "$gen" "$dst" || { cp "$gen" "$dst" && echo "wrote ${pair#*:}"; }
	elif ! cmp -s "$gen" "$dst"; then
		echo "not ok - ${pair#*:} is stale: run 'ninja -C build config-doc' and commit it"
		diff -u "$dst" "$gen" | sed 's/^/# /'
		rc=1
	else
		echo "ok - ${pair#*:} matches escrowd's option table"
	fi
done
[ "$mode" = --write ] || echo "1..2"
exit $rc
