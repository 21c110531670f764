#!/usr/bin/env python3
"""Finds import cycles among a Rust crate's top-level modules.

Usage: modcycles.py CRATE/src [--dot]

A top-level module is `src/NAME.rs` or `src/NAME/mod.rs` (with everything under
`src/NAME/`); the crate root (`lib.rs`, `main.rs`) is not one: it declares every module, so
it is left out of the graph. Module A depends on module B when any file of A names B by
path: `crate::B`, `use crate::{.., B, ..}`, or `super::B` (and `super::super::B`, ...) that
resolves to the crate root. Comments are ignored; test code counts like any other code (a
cycle through a test module is still a cycle of the crate).

Prints every cycle (each strongly connected component of two or more modules, with one
concrete cycle through it) and exits 1 if there is any; exits 0 and prints the graph's
size otherwise. `--dot` prints the graph in Graphviz format instead.
"""

import os
import re
import sys


def strip_comments(src):
    """Removes // and /* */ comments (nested block comments included), keeping strings."""
    out, i, n, depth = [], 0, len(src), 0
    in_str = False
    while i < n:
        c = src[i]
        if depth:
            if src.startswith("/*", i):
                depth, i = depth + 1, i + 2
            elif src.startswith("*/", i):
                depth, i = depth - 1, i + 2
            else:
                i += 1
            continue
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(src[i + 1 : i + 2])
                i += 2
                continue
            if c == '"':
                in_str = False
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            depth, i = 1, i + 2
            continue
        if c == '"' and not (i > 0 and src[i - 1] == "'"):
            in_str = True
        out.append(c)
        i += 1
    return "".join(out)


def top_level_modules(src_dir):
    """Top-level module name -> list of (file, module path inside the crate)."""
    mods = {}
    for entry in sorted(os.listdir(src_dir)):
        path = os.path.join(src_dir, entry)
        if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            name = entry[:-3]
            mods.setdefault(name, []).append((path, [name]))
        elif os.path.isdir(path) and entry != "bin":
            for root, _, files in os.walk(path):
                for f in sorted(files):
                    if not f.endswith(".rs"):
                        continue
                    rel = os.path.relpath(os.path.join(root, f), src_dir)
                    parts = rel[:-3].split(os.sep)
                    if parts[-1] == "mod":
                        parts = parts[:-1]
                    mods.setdefault(entry, []).append((os.path.join(root, f), parts))
    return mods


PATH = re.compile(r"\b((?:crate|super|self)(?:\s*::\s*(?:[A-Za-z_][A-Za-z0-9_]*|\{))+)")
GROUP = re.compile(r"\bcrate\s*::\s*\{")


def group_names(src, start):
    """The first path segments inside the brace group opening at `start` (`{a, b::c, d}`)."""
    depth, i, token, names, expect = 0, start, "", [], True
    while i < len(src):
        c = src[i]
        if c == "{":
            depth += 1
            if depth > 1:
                expect = False
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1:
            if c == ",":
                expect = True
            elif expect and (c.isalnum() or c == "_"):
                token += c
            elif token:
                names.append(token)
                token, expect = "", False
        i += 1
    if token:
        names.append(token)
    return names


def dependencies(src, module_path, top):
    """Top-level modules named in `src`, a file at `module_path` (e.g. ["runner", "exec"])."""
    deps = set()
    for m in GROUP.finditer(src):
        deps.update(n for n in group_names(src, m.end() - 1) if n in top)
    for m in PATH.finditer(src):
        segs = [s.strip() for s in m.group(1).split("::")]
        if segs[0] == "crate":
            rest = segs[1:]
        elif segs[0] == "super":
            here = list(module_path)
            k = 0
            while k < len(segs) and segs[k] == "super":
                here = here[:-1]
                k += 1
            if here:
                continue  # still inside a top-level module
            rest = segs[k:]
        else:
            continue
        if rest and rest[0] in top:
            deps.add(rest[0])
    return deps


def graph(src_dir):
    mods = top_level_modules(src_dir)
    top = set(mods)
    g = {m: set() for m in mods}
    for name, files in mods.items():
        for path, module_path in files:
            with open(path, encoding="utf-8") as f:
                src = strip_comments(f.read())
            g[name] |= dependencies(src, module_path, top) - {name}
    return g


def strongly_connected(g):
    """Tarjan's algorithm; returns the components of two or more nodes."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def a_cycle(g, comp):
    """One concrete cycle through component `comp`: modules from its first back to it."""
    members, start = set(comp), comp[0]
    prev, frontier, seen = {}, [start], {start}
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(g[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return list(reversed(path))
                if w not in seen:
                    seen.add(w)
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    if len(args) != 1 or not os.path.isdir(args[0]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    g = graph(args[0])
    if "--dot" in argv:
        print("digraph modules {")
        for v in sorted(g):
            for w in sorted(g[v]):
                print(f'  "{v}" -> "{w}";')
        print("}")
        return 0
    comps = strongly_connected(g)
    if not comps:
        edges = sum(len(d) for d in g.values())
        print(f"{args[0]}: no cycles among {len(g)} top-level modules ({edges} dependencies)")
        return 0
    for comp in comps:
        cycle = a_cycle(g, comp)
        print(f"cycle among {{{', '.join(comp)}}}: {' -> '.join(cycle + [cycle[0]])}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
