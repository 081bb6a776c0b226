#!/usr/bin/env python3
"""Writes the API reference (docs/reference/*.md) from include/vigil.h.

Each page is one object of the API: a section of the header (its "/* ---
name */" line) or, for the TCP section, its listener and connection halves.
A page is its introduction (docs/reference/intro/PAGE.md: what the object is,
its threads and its ownership rules, written by hand) followed by the header
itself, block by block (a block is the lines between two blank lines):
each block that declares functions under a heading naming them, the rest
(types, constants, callbacks) under "Types and constants". The header is the
contract; the pages show it, so they cannot say anything else.

  generate.py            write the pages
  generate.py --check [--lib LIBVIGIL.so]
                         exit 1 (naming what differs) if a page is not what
                         the header makes it, a public function has no entry,
                         or (with --lib) the library's exports and the
                         header's functions differ
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HEADER = os.path.join(ROOT, "include", "vigil.h")

# header section -> page; the TCP section is split by function prefix
SECTIONS = {
    "loop": "loop", "timers": "timer", "operations": "op", "addresses": "addr",
    "TCP": None, "UDP": "udp", "names": "resolve", "fd readiness": "poll",
    "work": "work", "files": "fs", "signals": "signal", "supervisor": "supervisor",
    "errors": "errors",
}
TITLES = {
    "loop": "Loops", "timer": "Timers", "op": "Operations", "addr": "Addresses",
    "listener": "Listeners", "conn": "Connections", "udp": "UDP sockets",
    "resolve": "Name lookups", "poll": "Fd readiness", "work": "Work off the loop",
    "fs": "Files", "signal": "Signals", "supervisor": "The supervisor", "errors": "Errors",
}
ORDER = ["loop", "timer", "op", "listener", "conn", "addr", "udp", "resolve", "poll", "work",
         "fs", "signal", "supervisor", "errors"]
DECL = re.compile(r"^VIGIL_API\b[^(]*?\b(vigil_\w+)\s*\(", re.M)


def read_sections():
    """The header as (section name, [blocks]) with the preamble first."""
    text = open(HEADER).read()
    body = text.split('extern "C" {', 1)[1].rsplit("#ifdef __cplusplus", 1)[0]
    preamble_doc = re.match(r"/\*(.*?)\*/", text, re.S).group(1)
    sections, name, lines = [], "preamble", []
    for line in body.split("\n"):
        m = re.match(r"^/\* -{10,} (.+?) \*/$", line)
        if m:
            sections.append((name, lines))
            name, lines = m.group(1), []
        else:
            lines.append(line)
    sections.append((name, lines))
    out = []
    for name, lines in sections:
        blocks, cur = [], []
        for line in lines + [""]:
            if line.strip():
                cur.append(line)
            elif cur:
                blocks.append("\n".join(cur))
                cur = []
        out.append((name, blocks))
    return preamble_doc, out


def page_of(section, funcs):
    if section == "TCP":
        return "listener" if funcs and all(f.startswith("vigil_listener_") for f in funcs) else "conn"
    return SECTIONS.get(section)


def clean_doc(doc):
    return "\n".join(re.sub(r"^ ?\* ?", "", l) for l in doc.strip().split("\n")).strip()


def type_names(block):
    """The names a block of types and constants defines, for its heading."""
    names = re.findall(r"^\}\s*(\w+);", block, re.M)
    names += re.findall(r"typedef\s+[^;{(]*?\(\s*\*\s*(\w+)\)", block)
    names += re.findall(r"typedef\s+(?:struct|enum)\s+\w+\s*(?:\{[^}]*\})?\s*(\w+)\s*;", block)
    names += re.findall(r"^#define\s+(VIGIL_\w+)", block, re.M)
    seen = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen


def build():
    preamble_doc, sections = read_sections()
    pages = {p: [] for p in ORDER}  # page -> [(heading names, block, is_call)]
    index = {}  # function -> page
    library = []  # preamble blocks with functions: the library-wide calls
    for section, blocks in sections:
        pending = []  # type blocks waiting for the next call's page
        last = None
        for b in blocks:
            funcs = DECL.findall(b)
            if section == "preamble":
                if funcs:
                    library.append((funcs, b))
                continue
            if not funcs:
                pending.append(b)
                continue
            page = page_of(section, funcs)
            if page is None:
                sys.exit(f"generate.py: header section '{section}' has no page")
            for t in pending:  # types go with the calls that follow them
                pages[page].append((type_names(t), t, False))
            pending = []
            pages[page].append((funcs, b, True))
            for f in funcs:
                index[f] = page
            last = page
        for t in pending:
            if last is None:
                sys.exit(f"generate.py: header section '{section}' declares no function")
            pages[last].append((type_names(t), t, False))
    files = {}
    for p in ORDER:
        intro_path = os.path.join(HERE, "intro", p + ".md")
        intro = open(intro_path).read().strip() if os.path.exists(intro_path) else ""
        out = [f"# {TITLES[p]}", "",
               "<!-- Generated by docs/reference/generate.py from include/vigil.h and "
               f"intro/{p}.md: edit those. -->", ""]
        if intro:
            out += [intro, ""]
        for names, b, is_call in pages[p]:
            shown = names[:4] + (["..."] if len(names) > 4 else [])
            heading = ", ".join(n if n == "..." else f"`{n}`" for n in shown) or "Types"
            out += ["## " + heading, "", "```c", b, "```", ""]
        files[p + ".md"] = "\n".join(out).rstrip() + "\n"
    # the index: the header's conventions, the library-wide calls, every call by page
    out = ["# vigil API reference", "",
           "<!-- Generated by docs/reference/generate.py from include/vigil.h: edit that. -->", "",
           "One page per object; each shows the header's own declarations and comments, which are",
           "the contract (`docs/reference/generate.py --check` in the test suite fails when a page",
           "and the header differ, or a public function has no entry). Start with",
           "[getting started](../getting-started.md).", "",
           "## Conventions (from vigil.h)", "", clean_doc(preamble_doc), "",
           "## Library-wide calls", ""]
    for funcs, b in library:
        out += ["```c", b, "```", ""]
        for f in funcs:
            index[f] = ""
    out += ["## Pages", ""]
    for p in ORDER:
        calls = [f for names, _, is_call in pages[p] if is_call for f in names]
        out.append(f"- [{TITLES[p]}]({p}.md): " + ", ".join(f"`{f}`" for f in calls))
    files["README.md"] = "\n".join(out).rstrip() + "\n"
    return files, index


def main():
    check = "--check" in sys.argv[1:]
    files, index = build()
    declared = set(re.findall(r"^VIGIL_API\b[^(]*?\b(vigil_\w+)\s*\(", open(HEADER).read(), re.M))
    missing = sorted(declared - set(index))
    bad = []
    if missing:
        bad.append("public functions without an entry: " + ", ".join(missing))
    for name, text in files.items():
        path = os.path.join(HERE, name)
        if check:
            old = open(path).read() if os.path.exists(path) else None
            if old != text:
                bad.append(f"docs/reference/{name} is not what the header makes it "
                           "(run docs/reference/generate.py)")
        else:
            with open(path, "w") as f:
                f.write(text)
    if "--lib" in sys.argv:
        lib = sys.argv[sys.argv.index("--lib") + 1]
        nm = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True, check=True)
        exported = {l.split()[-1] for l in nm.stdout.splitlines() if l.split()[-1].startswith("vigil")}
        if exported - declared:
            bad.append("exported but not in vigil.h: " + ", ".join(sorted(exported - declared)))
        if declared - exported:
            bad.append("in vigil.h but not exported: " + ", ".join(sorted(declared - exported)))
    for b in bad:
        print("generate.py: " + b, file=sys.stderr)
    if not check and not bad:
        print(f"generate.py: {len(files)} pages, {len(index)} functions")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
