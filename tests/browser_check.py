#!/usr/bin/env python3
"""browser_check.py INDEX.html [--screenshot PNG]: `vigil profile`'s report
in a real browser, as a person would open it.

Loads the page in headless Chromium (Debian's chromium), driven through the
DevTools protocol on a pipe (--remote-debugging-pipe: no port, nothing to
install but the browser), and checks:
  - the console: no uncaught exception, no console.error, no failed load
    (a missing file is a "network" error in the browser's log);
  - every scenario of the table has its timeline inline in the DOM (an SVG
    shown through <img> never shows its hover texts);
  - every mark is a group with a <title> (the hover text): the server's
    line, or what the clients saw for a zombie going silent;
  - every mark can be hovered: the element at the middle of its box is the
    mark's own (a mark hidden under another could not show its text);
  - the legend lists the kinds of mark the timeline has, and only those;
  - the throughput axis' ticks are evenly spaced on 1, 2, 2.5 or 5 x 10^n;
  - a screenshot, 1400x2000 (--screenshot).
Before the report it loads a page with a deliberate script error and a
missing image, and fails unless both are caught: the console check catches
what it claims to.

Prints what it found. Exit 0 when every check passed, 1 when one failed, 77
when Chromium cannot run here (not installed, or it does not start), with
the reason.
"""
import argparse
import base64
import fcntl
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

LIMIT_S = 60  # the whole run; each step has what is left of it

BROKEN_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>broken</title></head>
<body><p>deliberately broken</p><img src="no-such-image.png" alt="missing">
<script>no_such_function();</script></body></html>
"""

# Runs in the page: what the checks need, as JSON.
SURVEY = r"""(() => {
  const rows = [...document.querySelectorAll('table tr')].slice(1).map(r => r.cells[0].textContent);
  const figures = [...document.querySelectorAll('h2[id]')].map(h => {
    const svg = h.nextElementSibling && h.nextElementSibling.querySelector(':scope > svg');
    if (!svg) return {id: h.id, svg: false};
    const marks = [...svg.querySelectorAll('g.mark')].map(g => {
      const t = g.querySelector(':scope > title');
      const box = g.querySelector(':scope > rect');
      let hit = null;
      if (box) {
        box.scrollIntoView({block: 'center'});
        const r = box.getBoundingClientRect();
        const e = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
        hit = !!e && g.contains(e);
      }
      return {cls: g.getAttribute('class'), title: t ? t.textContent : null, box: !!box, hit};
    });
    const legend = [...svg.querySelectorAll('g.legend')].map(g => g.getAttribute('class'));
    const yticks = [...svg.querySelectorAll('text.ytick')].map(t => t.textContent);
    return {id: h.id, svg: true, marks, legend, yticks};
  });
  const imgs = [...document.querySelectorAll('img')].map(i => i.getAttribute('src'));
  window.scrollTo(0, 0);
  return JSON.stringify({rows, figures, imgs});
})()"""


class Skip(Exception):
    pass


class Browser:
    """Chromium on --remote-debugging-pipe: commands in on fd 3, answers and
    events out on fd 4, each a JSON message ended by a NUL."""

    def __init__(self, exe, profile_dir, deadline):
        self.deadline, self.next_id, self.buf, self.events = deadline, 0, b"", []
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # the child gets them as 3 and 4, whatever numbers they have here
        hi_r = fcntl_dupfd(to_chrome_r, 10)
        hi_w = fcntl_dupfd(from_chrome_w, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def child():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.log = open(os.path.join(profile_dir, "chromium.log"), "w+")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--remote-debugging-pipe", "--no-first-run",
             "--hide-scrollbars", "--window-size=1400,2000", "--user-data-dir=" + profile_dir,
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            preexec_fn=child, close_fds=False)  # Python's own fds are close-on-exec
        os.close(hi_r)
        os.close(hi_w)

    def stderr_tail(self):
        self.log.flush()
        self.log.seek(0)
        lines = [l for l in self.log.read().splitlines() if "dbus" not in l]
        return "\n".join(lines[-8:])

    def _read(self):
        """One message; Skip if the browser went away or said nothing in time."""
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium within %d s" % LIMIT_S)
            ready, _, _ = select.select([self.from_chrome], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed its pipe (exit %s)" % self.proc.poll())
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=None):
        """A command's result; events that come meanwhile are kept."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method, session):
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method and e.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read())

    def settle(self, seconds):
        """Events for a little while: late errors (a failed load) come after the load event."""
        end = min(time.monotonic() + seconds, self.deadline)
        while time.monotonic() < end:
            ready, _, _ = select.select([self.from_chrome], [], [], end - time.monotonic())
            if ready:
                self.events.append(self._read())

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_chrome, self.from_chrome):
            os.close(fd)
        self.log.close()


def fcntl_dupfd(fd, lowest):
    return fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)


def page_errors(events, session):
    """What the page's console and log said that is an error, as lines."""
    out = []
    for e in events:
        if e.get("sessionId") != session:
            continue
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: %s" % (d.get("exception", {}).get("description") or d.get("text")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.%s: %s" % (p["type"], " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", []))))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            en = p["entry"]
            out.append("%s error: %s %s" % (en.get("source"), en.get("text"), en.get("url", "")))
        elif m == "Network.loadingFailed" and not p.get("canceled"):
            out.append("load failed: %s" % p.get("errorText"))
    return out


def load(b, session, url):
    """Navigates and waits for the load event and what comes shortly after;
    the errors the page caused."""
    b.events = [e for e in b.events if e.get("sessionId") != session]
    b.send("Page.navigate", {"url": url}, session)
    b.wait_event("Page.loadEventFired", session)
    b.settle(0.5)
    return page_errors(b.events, session)


def nice_ticks(labels):
    """'' when the labels are 0, s, 2s, ... with s on 1, 2, 2.5 or 5 x 10^n; else what is wrong."""
    try:
        v = [float(l[:-1]) * 1000 if l.endswith("k") else float(l) for l in labels]
    except ValueError:
        return "unreadable ticks %s" % labels
    if len(v) < 3 or v[0] != 0:
        return "ticks %s: fewer than 3, or not from 0" % labels
    step = v[1]
    if any(abs(v[i] - i * step) > step * 1e-6 for i in range(len(v))):
        return "ticks %s: not evenly spaced" % labels
    mant = step / 10 ** math.floor(math.log10(step))
    if not any(abs(mant - m) < 1e-6 for m in (1, 2, 2.5, 5)):
        return "ticks %s: step %g is not 1, 2, 2.5 or 5 x 10^n" % (labels, step)
    return ""


def check_report(survey):
    """The report's checks: a list of failures ('' each passed) and what was seen."""
    fails, seen = [], []
    if not survey["rows"]:
        fails.append("the table has no scenario")
    figures = {f["id"]: f for f in survey["figures"]}
    for name in survey["rows"]:
        f = figures.get(name)
        if not f or not f["svg"]:
            fails.append("%s: no inline <svg> under its heading" % name)
            continue
        marks = f["marks"]
        kinds = sorted({m["cls"].split()[1] for m in marks})
        seen.append("%s: %d marks (%s), y ticks %s" % (name, len(marks), ", ".join(kinds),
                                                       " ".join(f["yticks"])))
        if not marks:
            fails.append("%s: no marks" % name)
        for m in marks:
            kind = m["cls"].split()[1]
            t = m["title"] or ""
            if kind == "zombie":
                ok = "went silent" in t or "stopped reading" in t
            else:  # the server's line: "vigil serve: ..." or "vigil: ..."
                ok = " s: vigil" in t
            if not ok:
                fails.append("%s: a %s mark's title is %r" % (name, kind, t[:120]))
            if not m["box"] or not m["hit"]:
                fails.append("%s: a %s mark cannot be hovered (another covers it): %r" %
                             (name, kind, t[:80]))
        legend = sorted(c.split()[1] for c in f["legend"])
        if legend != kinds:
            fails.append("%s: the legend lists %s, the marks are %s" % (name, legend, kinds))
        why = nice_ticks(f["yticks"])
        if why:
            fails.append("%s: %s" % (name, why))
    svg_imgs = [s for s in survey["imgs"] if s and s.endswith(".svg")]
    if svg_imgs:
        fails.append("timelines as <img> (their hover texts never show): %s" % svg_imgs)
    return fails, seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("index")
    ap.add_argument("--screenshot")
    args = ap.parse_args()
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        print("SKIP: chromium is not installed (./run test cli installs it: apt-get install chromium)")
        return 77
    deadline = time.monotonic() + LIMIT_S
    failed = 0
    with tempfile.TemporaryDirectory(prefix="vigil-chromium-") as tmp:
        b = Browser(exe, tmp, deadline)
        try:
            try:
                target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
                session = b.send("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
            except (EOFError, TimeoutError, RuntimeError) as e:
                print("%s\nSKIP: Chromium does not start here: %s" % (b.stderr_tail(), e))
                return 77
            for domain in ("Page", "Runtime", "Log", "Network"):
                b.send(domain + ".enable", {}, session)
            b.send("Emulation.setDeviceMetricsOverride",
                   {"width": 1400, "height": 2000, "deviceScaleFactor": 1, "mobile": False}, session)

            broken = os.path.join(tmp, "broken.html")
            with open(broken, "w") as f:
                f.write(BROKEN_PAGE)
            errs = load(b, session, "file://" + broken)
            caught_script = any("no_such_function" in e for e in errs)
            caught_missing = any("no-such-image" in e or "ERR_FILE_NOT_FOUND" in e for e in errs)
            if caught_script and caught_missing:
                print("ok: a deliberately broken page's errors are caught (%d lines)" % len(errs))
            else:
                failed += 1
                print("FAIL: a deliberately broken page: script error %s, missing image %s; saw %s" %
                      ("caught" if caught_script else "missed",
                       "caught" if caught_missing else "missed", errs))

            url = "file://" + os.path.abspath(args.index)
            errs = load(b, session, url)
            if errs:
                failed += 1
                print("FAIL: %s: the console has errors:\n  %s" % (args.index, "\n  ".join(errs)))
            else:
                print("ok: %s loads with no console error" % args.index)

            res = b.send("Runtime.evaluate", {"expression": SURVEY, "returnByValue": True}, session)
            if "exceptionDetails" in res:
                print("FAIL: the survey script failed: %s" % res["exceptionDetails"])
                return 1
            fails, seen = check_report(json.loads(res["result"]["value"]))
            for s in seen:
                print("  " + s)
            for f in fails:
                print("FAIL: " + f)
            failed += len(fails)
            if not fails:
                print("ok: every timeline inline, every mark titled and hoverable, legends and ticks right")

            if args.screenshot:
                shot = b.send("Page.captureScreenshot", {"format": "png"}, session)
                with open(args.screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                print("ok: screenshot %s" % args.screenshot)
        except (EOFError, TimeoutError, RuntimeError) as e:
            print("FAIL: %s\n%s" % (e, b.stderr_tail()))
            return 1
        finally:
            b.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
