#!/usr/bin/env python3
"""check-protocol-cites.py - the code's citations of doc/protocol.md stay right.

Code cites the spec as "§5.16". Every cited section must exist, and a comment
that starts with an operation's name (a handler's wire syntax, "/* nack {sid,
seq, ...} -> ... §5.16") must cite that operation's own section, whose heading
is "### 5.N <op name>". Sections get renumbered when operations are added;
this test (suite unit, TAP) catches the citations left behind.

usage: check-protocol-cites.py SRCDIR
"""
import glob
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "."
doc = open(os.path.join(src, "doc", "protocol.md"), encoding="utf-8").read()
sections = {}
for m in re.finditer(r"^#{2,4} (\d+(?:\.\d+)*)\.? +(.*)$", doc, re.M):
    sections[m.group(1)] = m.group(2).strip()
ops = set(re.findall(r'^OP\(\w+,\s*"(\w+)"', open(os.path.join(src, "wire", "ops.def")).read(), re.M))

files = []
for d in ("broker", "client", "producer", "consumer", "tools", "wire", "store", "barrier"):
    files += sorted(glob.glob(os.path.join(src, d, "*.[ch]")))

bad = []
n = 0
for f in files:
    text = open(f, encoding="utf-8", errors="replace").read()
    for c in re.finditer(r"/\*.*?\*/", text, re.S):
        body = c.group(0)
        cites = []
        for m in re.finditer(r"§(\d+(?:\.\d+)*)", body):
            other = re.findall(r"(\w+)\.md", body[max(0, m.start() - 40):m.start()])
            if not other or other[-1] == "protocol":  # else another document's section
                cites.append(m.group(1))
        if not cites:
            continue
        line = text.count("\n", 0, c.start()) + 1
        where = "%s:%d" % (os.path.relpath(f, src), line)
        first = re.match(r"/\*+\s*(\w+)", body)
        op = first.group(1) if first and first.group(1) in ops else None
        for s in cites:
            n += 1
            if s not in sections:
                bad.append("%s cites §%s, which doc/protocol.md does not have" % (where, s))
            elif op and s.startswith("5.") and sections[s].split()[0] != op:
                bad.append("%s: the %s handler cites §%s, which is '%s'; %s is §%s" % (
                    where, op, s, sections[s], op,
                    next((k for k, v in sections.items() if v.split()[0] == op), "?")))

print("1..1")
if bad:
    print("not ok 1 - %d of %d citations of doc/protocol.md are wrong" % (len(bad), n))
    for b in bad:
        print("# " + b)
    sys.exit(1)
print("ok 1 - %d citations of doc/protocol.md name existing sections, handlers their own" % n)
