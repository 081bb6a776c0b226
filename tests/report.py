#!/usr/bin/env python3
"""report.py: what `./run test` prints of one `meson test` run.

    report.py [--label PREFIX] [--totals FILE] TESTLOG.json

Reads meson's JSON test log (meson-logs/LOGBASE[-SETUP].json) and prints one
line per test, "LABEL  N passed, N failed[, N skipped]", counting test cases:
the "ok" / "not ok" lines of a test's TAP report ("# SKIP" apart), or the
test itself when it reports by exit status (77: skipped). A test whose TAP
report has "# group: NAME" lines (tests/win/probe.sh) gets a line per
group. A test that failed without a failed case (it died, timed out, or a
sanitizer made it exit non-zero) counts one failure more. For every failure
it prints the failed cases with their details, the lines of stderr that say
what went wrong (assertions, sanitizer reports), and where meson's log is.

--totals FILE adds the counts to the "PASSED FAILED SKIPPED" in FILE.
Exit status 0 when nothing failed.
"""
import argparse
import json
import os
import re
import sys

TAP_RESULT = re.compile(r"(not ok|ok)\b\s*(?:\d+\s*)?(?:-\s*)?([^#]*)(?:#\s*(SKIP|TODO)\S*\s*(.*))?", re.I)
GROUP = re.compile(r"# group: (.*)")
# stderr lines worth showing: Criterion's and vt_mini's failures, sanitizers
WHY = re.compile(r"\[FAIL\]|\[----\].*(Assertion|failed|crash|Timed out)|ERROR: |"
                 r"WARNING: ThreadSanitizer|SUMMARY: |runtime error|Bail out!")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
BAD = {"FAIL", "ERROR", "TIMEOUT", "INTERRUPT", "UNEXPECTEDPASS"}


class Count:
    def __init__(self, label):
        self.label, self.passed, self.failed, self.skipped = label, 0, 0, 0

    def line(self):
        s = "%-28s %4d passed, %d failed" % (self.label, self.passed, self.failed)
        return s + (", %d skipped" % self.skipped if self.skipped else "")


def parse(test, label):
    """The counts of one test (a list: one per group), and its failure details."""
    counts, details = [Count(label)], []
    grouped = False
    in_failure = False
    results = 0
    for raw in ANSI.sub("", test.get("stdout") or "").splitlines():
        g = GROUP.match(raw)
        if g:
            if not grouped:
                counts, grouped = [], True
            counts.append(Count("%s %s" % (label, g.group(1).strip())))
            in_failure = False
            continue
        m = TAP_RESULT.match(raw)
        if m and raw[:1] in "no":
            results += 1
            c = counts[-1]
            ok, directive = m.group(1).lower() == "ok", (m.group(3) or "").upper()
            if directive == "SKIP" and ok:
                c.skipped += 1
            elif directive == "TODO":
                pass  # expected to fail: not counted
            elif ok:
                c.passed += 1
            else:
                c.failed += 1
                details.append(raw if not grouped else "%s: %s" % (c.label, raw))
                in_failure = True
                continue
            in_failure = False
        elif in_failure and (raw.startswith("#") or raw.startswith("  ")):
            details.append("    " + raw)  # a failed check's details, or Criterion's YAML
        elif raw.startswith("Bail out!"):
            details.append(raw)
    result = test.get("result", "ERROR")
    c = counts[-1]
    if results == 0:  # an exit status test (or a TAP one that reported nothing)
        if result == "OK":
            c.passed += 1
        elif result == "SKIP" and test.get("returncode") == 77:
            c.skipped += 1
        else:
            c.failed += 1
    elif result in BAD and not any(x.failed for x in counts):
        c.failed += 1  # died, timed out, or a sanitizer's exit status
    if any(x.failed for x in counts) or result in BAD:
        if result in BAD:
            details.insert(0, "%s: meson says %s (exit status %s, %.0f s)" % (
                label, result, test.get("returncode"), test.get("duration") or 0))
        why = [l for l in ANSI.sub("", test.get("stderr") or "").splitlines() if WHY.search(l)]
        details += why[:40]
    return counts, details


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="")
    ap.add_argument("--totals")
    ap.add_argument("log")
    a = ap.parse_args()
    total = [0, 0, 0]
    failed_any = False
    try:
        tests = [json.loads(l) for l in open(a.log) if l.strip()]
    except OSError as e:
        print("%-28s no test log (%s)" % (a.label or "meson test", e))
        tests, total[1], failed_any = [], 1, True
    txt = os.path.splitext(a.log)[0] + ".txt"
    for t in tests:
        name = t["name"].split(" / ", 1)[-1]
        counts, details = parse(t, (a.label + " " + name).strip())
        for c in counts:
            print(c.line())
            total[0] += c.passed
            total[1] += c.failed
            total[2] += c.skipped
        if details:
            failed_any = True
            for d in details[:60]:
                print(d)
            if len(details) > 60:
                print("    ... %d lines more" % (len(details) - 60))
            print("    (everything it printed: %s)" % txt)
    sys.stdout.flush()
    if a.totals:
        try:
            before = [int(x) for x in open(a.totals).read().split()]
        except (OSError, ValueError):
            before = [0, 0, 0]
        with open(a.totals, "w") as f:
            f.write(" ".join(str(x + y) for x, y in zip(before + [0] * (3 - len(before)), total)) + "\n")
    return 1 if failed_any or total[1] else 0


if __name__ == "__main__":
    sys.exit(main())
