#!/usr/bin/env python3
"""Keeps the source tree easy to read: every Rust file under src/ at most MAX_FILE lines and
every function at most MAX_FN lines (from its `fn` line to its closing brace). Prints each
offender and exits 1. Import cycles are checked by ../shared/tools/module_cycles.py (CI runs
both). Usage: scripts/check-structure.py [SRC_DIR]"""

import re
import sys
from pathlib import Path

MAX_FILE = 450
MAX_FN = 100

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")


def code_only(line: str, in_block: bool) -> tuple[str, bool]:
    """The line without comments, string and char literals (braces inside them do not count)."""
    out, i = [], 0
    while i < len(line):
        if in_block:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out), True
            i, in_block = end + 2, False
            continue
        two = line[i : i + 2]
        if two == "//":
            break
        if two == "/*":
            in_block, i = True, i + 2
            continue
        c = line[i]
        if c == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            i = j + 1
            continue
        if c == "'" and re.match(r"'(\\.|[^\\'])'", line[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:]).group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out), in_block


def long_functions(path: Path) -> list[tuple[str, int, int]]:
    """(name, first line, length) of each function longer than MAX_FN lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, open_fns, depth, in_block, raw = [], [], 0, False, False
    for number, line in enumerate(lines, 1):
        # Raw strings (r#"..."#) span lines in tests: skip their contents.
        if raw:
            if '"#' in line:
                raw = False
            continue
        if line.count('r#"') > line.count('"#') - line.count('r#"'):
            raw = True
        code, in_block = code_only(line, in_block)
        m = FN.match(code)
        if m and "{" in code[m.end() :] or (m and not code.rstrip().endswith(";")):
            open_fns.append((m.group(7), number, depth))
        for c in code:
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                while open_fns and depth == open_fns[-1][2] and open_fns[-1][1] <= number:
                    name, start, _ = open_fns.pop()
                    if number - start + 1 > MAX_FN:
                        found.append((name, start, number - start + 1))
        # A declaration without a body (trait method): forget it.
        if open_fns and open_fns[-1][1] == number and code.rstrip().endswith(";"):
            open_fns.pop()
    return found


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    bad = 0
    for path in sorted(src.rglob("*.rs")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_FILE:
            print(f"{path}: {n} lines (at most {MAX_FILE})")
            bad += 1
        for name, start, length in long_functions(path):
            print(f"{path}:{start}: fn {name} is {length} lines (at most {MAX_FN})")
            bad += 1
    if bad:
        print(f"{bad} structure problem(s)")
        return 1
    print(f"structure: every file under {src} at most {MAX_FILE} lines, every fn at most {MAX_FN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
