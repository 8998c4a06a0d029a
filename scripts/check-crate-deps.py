#!/usr/bin/env python3
"""Fails when a role crate depends on another role crate (DESIGN.md, workspace).

Role crates (ingest, coordinator, correlate, query) talk only through
spoor-proto (gRPC) and spoor-common (the catalog client); only the `spoor`
binary and the test and bench crates may depend on several of them.
"""
import json
import subprocess
import sys

ROLES = {"spoor-ingest", "spoor-coordinator", "spoor-correlate", "spoor-query"}
ALLOWED = {
    "spoor-proto": set(),
    "spoor-common": {"spoor-proto"},
}

meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
problems = []
for pkg in meta["packages"]:
    name = pkg["name"]
    deps = {d["name"] for d in pkg["dependencies"] if d["name"].startswith("spoor")}
    if name in ROLES:
        bad = deps & (ROLES - {name})
        if bad:
            problems.append(f"{name} depends on role crate(s) {sorted(bad)}")
    elif name in ALLOWED:
        bad = deps - ALLOWED[name]
        if bad:
            problems.append(f"{name} may depend only on {sorted(ALLOWED[name])}, not {sorted(bad)}")
if problems:
    print("crate dependency rule broken:", *problems, sep="\n  ")
    sys.exit(1)
print(f"ok: no role crate depends on another ({len(meta['packages'])} packages checked)")
