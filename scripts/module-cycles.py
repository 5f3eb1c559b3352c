#!/usr/bin/env python3
"""Counts module dependency cycles inside every crate of the workspace.

For each crate, every module (a file under src/, named by its path: `status::admin`) gets an edge to
each module of the same crate it names (`crate::a::b`, `super::x`, `self::y` in a `use` or a path).
Edges between a module and its own parent or children (`mod` declarations, `super::` to reach a
parent's item) are the tree, not dependencies, and are ignored. A cycle edge is an edge inside a
strongly connected component. Prints them and exits 1 if there is any.

With --top, modules are first folded into their top-level module (`status::admin` is `status`),
so a cycle between two top-level modules through any of their submodules shows too.

Usage: scripts/module-cycles.py [--top] [crates-dir]   (default: crates)
"""
import os
import re
import sys

PATH_RE = re.compile(r"\b(crate|super|self)((?:::[a-z_][a-z0-9_]*)+)")


def modules_of(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[0] == "bin":
                continue
            if rel[-1] in ("lib", "main"):
                rel = rel[:-1]
            elif rel[-1] == "mod":
                rel = rel[:-1]
            mods[tuple(rel)] = os.path.join(root, f)
    return mods


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def resolve(mods, here, kind, parts):
    base = () if kind == "crate" else (here[:-1] if kind == "super" else here)
    path = base + tuple(parts)
    # The longest prefix that is a module: `crate::a::b::Item` names module `a::b`.
    for n in range(len(path), 0, -1):
        if path[:n] in mods:
            return path[:n]
    return None


def cycles(mods, top=False):
    fold = (lambda m: m[:1]) if top else (lambda m: m)
    edges = {fold(m): set() for m in mods}
    for m, file in mods.items():
        text = strip_comments(open(file).read())
        # `#[cfg(test)] mod tests` blocks are part of the module: keep them (tests are code too).
        for kind, rest in PATH_RE.findall(text):
            parts = rest.strip(":").split("::")
            target = resolve(mods, m, kind, parts)
            if target is None or target == m:
                continue
            related = target[: len(m)] == m or m[: len(target)] == target
            if not related and fold(m) != fold(target):
                edges[fold(m)].add(fold(target))
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    out = []
    for comp in sccs:
        if len(comp) > 1:
            out += [(a, b) for a in comp for b in edges[a] if b in comp]
    return sorted(out)


def main():
    args = sys.argv[1:]
    top = "--top" in args
    args = [a for a in args if a != "--top"]
    root = args[0] if args else "crates"
    total = 0
    for crate in sorted(os.listdir(root)):
        src = os.path.join(root, crate, "src")
        if not os.path.isdir(src):
            continue
        found = cycles(modules_of(src), top)
        total += len(found)
        print(f"{crate}: {len(found)} cycle edge(s)")
        for a, b in found:
            print(f"  {'::'.join(a) or 'crate'} -> {'::'.join(b) or 'crate'}")
    print(f"total: {total}")
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
