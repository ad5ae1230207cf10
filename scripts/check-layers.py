#!/usr/bin/python3
"""check-layers.py — no file includes a header of a layer above its own.

The layers of src/, lowest first (docs/architecture.md draws them):

    core                      no project dependencies
    http                      core
    admission, release        core, http (side by side: neither includes the other)
    status                    the above
    admin                     the above
    config (src/config.*)     the above: the schema gathers every section
    proxy                     the above
    main (src/main.c)         everything: the wiring

A file may include headers of its own layer and of the layers it lists.
tools/ may include core and http only; tests may include anything.
Prints one line per offending include ("FILE:LINE: layer X includes Y
(layer Z)") and exits 1 when there is one.
"""
import os
import re
import sys

ALLOWED = {
    "core": {"core"},
    "http": {"core", "http"},
    "admission": {"core", "http", "admission"},
    "release": {"core", "http", "release"},
    "status": {"core", "http", "admission", "release", "status"},
    "admin": {"core", "http", "admission", "release", "status", "admin"},
    "config": {"core", "http", "admission", "release", "status", "admin", "config"},
    "proxy": {"core", "http", "admission", "release", "status", "admin", "config", "proxy"},
    "main": None,  # anything
    "tools": {"core", "http", "tools"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(root, path):
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    if parts[0] == "tools":
        return "tools"
    if parts[0] != "src":
        return None
    if len(parts) == 2:
        name = os.path.splitext(parts[1])[0]
        return "main" if name == "main" else name
    return parts[1]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = []
    for top in ("src", "tools"):
        for d, _, names in os.walk(os.path.join(root, top)):
            files += [os.path.join(d, n) for n in names if n.endswith((".c", ".h"))]
    headers = {}
    for f in files:
        if f.endswith(".h"):
            name = os.path.basename(f)
            if name in headers and layer_of(root, f) != "tools":
                print("%s: header name also used by %s" % (f, headers[name]))
                return 1
            if layer_of(root, f) != "tools" or name not in headers:
                headers.setdefault(name, f)
    bad = 0
    for f in sorted(files):
        mine = layer_of(root, f)
        allowed = ALLOWED.get(mine, set())
        with open(f, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                inc = os.path.basename(m.group(1))
                target = headers.get(inc)
                if target is None:
                    continue  # a tool's own header, or a system header in quotes
                theirs = layer_of(root, target)
                if mine == "tools" and target.startswith(os.path.join(root, "tools")):
                    continue
                if allowed is None or theirs in allowed:
                    continue
                print("%s:%d: layer %s includes %s (layer %s)"
                      % (os.path.relpath(f, root), lineno, mine, inc, theirs))
                bad += 1
    if bad:
        print("check-layers: %d include(s) run up the layers (see docs/architecture.md)" % bad)
        return 1
    print("check-layers: %d files, every include goes down the layers" % len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
