#!/bin/sh
# valgrind-escrowd.sh - run escrowd under valgrind memcheck (tests/recovery/
# test_valgrind.c sets $ESCROWD to this script). $ESCROW_REAL_ESCROWD is the
# binary, $ESCROW_VG_LOG the log file. Any memcheck error or definite leak
# makes the exit status 99.
exec valgrind --quiet --leak-check=full --show-leak-kinds=definite \
	--errors-for-leak-kinds=definite --error-exitcode=99 \
	--log-file="${ESCROW_VG_LOG:-/dev/stderr}" "$ESCROW_REAL_ESCROWD" "$@"
