#!/usr/bin/env python3
"""Prints one closing line over every test run of the given build
directories: 'N passed, N failed, N skipped'. It reads meson's
meson-logs/testlog*.json (testlog-LANE.json: a lane that ran meson test
--logbase in another lane's build), pytest's pytest-*.xml (JUnit) and results-*.txt
("ok NAME" / "FAIL NAME" / "skip NAME" lines, written by the fuzz and package
lanes). --lane-failures N adds N failures (a lane that broke before its
tests could report, e.g. a build error).
   scripts/summary.py [--lane-failures N] BUILD_DIR...
"""
import glob
import json
import os
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
args = sys.argv[1:]
if args[:1] == ["--lane-failures"]:
    failed += int(args[1])
    args = args[2:]


def count(kind, where):
    global passed, failed, skipped
    if kind == "pass":
        passed += 1
    elif kind == "skip":
        skipped += 1
    else:
        failed += 1
        print(f"failed: {where}")


for d in dict.fromkeys(args):  # a build directory two lanes share is read once
    for log in sorted(glob.glob(os.path.join(d, "meson-logs", "testlog*.json"))):
        with open(log) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                r = json.loads(line)
                res = r.get("result")
                kind = "pass" if res in ("OK", "EXPECTEDFAIL") else "skip" if res == "SKIP" else "fail"
                count(kind, f"{d}: {r.get('name')} ({res})")
    for xml in sorted(glob.glob(os.path.join(d, "pytest-*.xml"))):
        for case in ET.parse(xml).getroot().iter("testcase"):
            tags = {c.tag for c in case}
            kind = "fail" if tags & {"failure", "error"} else "skip" if "skipped" in tags else "pass"
            count(kind, f"{d}: {case.get('classname')}.{case.get('name')}")
    for res in sorted(glob.glob(os.path.join(d, "results-*.txt"))):
        with open(res) as f:
            for line in f:
                word, _, name = line.strip().partition(" ")
                if word:
                    count({"ok": "pass", "skip": "skip"}.get(word, "fail"), f"{d}: {name}")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or passed == 0 else 0)
