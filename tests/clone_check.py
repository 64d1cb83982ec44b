"""`make test-clone`: the committed HEAD, cloned into an empty temporary folder, collects the whole suite and reads
nothing outside the clone.

It fails when:
- collection (`pytest --collect-only`) errors in the clone;
- the clone's code is not what was imported (`gateway`, `tests` and `bench` must come from the clone, not from the
  editable install of the working tree);
- anything outside the clone was opened or listed during collection, other than Python itself, the virtualenv's
  packages and the operating system's files (watched with an audit hook, so a read the code hides is seen too);
- any tracked file has code that reaches outside the repository: a string naming `../shared` or `shared/reference`
  (docstrings and comments may mention them: `../shared` is reading material for developers), or a
  `Path(__file__)` climbing above the repository's root.

Uncommitted changes are not in the clone: commit first. Run with the project's virtualenv Python.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

OUTSIDE = re.compile(r"\.\./shared|shared/reference")
SCANNED_SUFFIXES = {".py", ".sh", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".json", ".txt"}
SCANNED_NAMES = {"Makefile", "Dockerfile", "run"}

# Runs inside the clone, in a fresh interpreter: records every file opened or directory listed while collecting.
COLLECT = r"""
import json, os, site, sys, sysconfig, tempfile
clone = os.path.realpath(sys.argv[1])
sys.path.insert(0, clone)
allowed = {clone, os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), os.path.realpath(sys.exec_prefix)}
allowed |= {os.path.realpath(p) for p in sysconfig.get_paths().values()}
allowed |= {os.path.realpath(p) for p in site.getsitepackages()}
system = ("/usr/", "/lib/", "/lib64/", "/etc/", "/proc/", "/sys/", "/dev/", "/run/")
seen = set()

def inside(path):
    real = os.path.realpath(path)
    return real.startswith(system) or any(real == a or real.startswith(a + os.sep) for a in allowed)

temp = os.path.realpath(tempfile.gettempdir())

def reading(event, args):
    if event == "open":  # (path, mode, flags): a write (a temporary file, the result) reads nothing
        mode, flags = args[1], args[2]
        return (mode is None or not set(str(mode)) & set("wax+")) and not flags & (os.O_WRONLY | os.O_RDWR)
    return event in ("os.listdir", "os.scandir")

def watch(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        listing_temp = event != "open" and os.path.realpath(path) == temp  # tempfile looking for a usable folder
        if reading(event, args) and not listing_temp and not inside(path):
            seen.add(path)

sys.addaudithook(watch)
import pytest
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests"])
import bench, gateway, tests
modules = {m.__name__: os.path.realpath(m.__file__) for m in (gateway, tests, bench)}
with open(sys.argv[2], "w") as out:
    json.dump({"exit": int(code), "outside": sorted(seen), "modules": modules}, out)
"""


def say(text: str) -> None:
    sys.stderr.write(text + "\n")


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def clone_head(root: Path, into: Path) -> str:
    """A plain clone of the working tree's repository, checked out at its HEAD (even a detached one)."""
    commit = git("rev-parse", "HEAD", cwd=root)
    git("clone", "--quiet", "--no-checkout", str(root), str(into), cwd=root)
    git("fetch", "--quiet", str(root), "HEAD", cwd=into)
    git("checkout", "--quiet", "--detach", "FETCH_HEAD", cwd=into)
    assert git("rev-parse", "HEAD", cwd=into) == commit
    return commit


def climbs_above_root(node: ast.AST, depth: int) -> bool:
    """`Path(__file__)...parents[n]` or a chain of `.parent` reaching above a file `depth` folders below the root."""
    if "__file__" not in ast.unparse(node):
        return False
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
        index = node.slice
        return isinstance(index, ast.Constant) and isinstance(index.value, int) and index.value > depth
    chain, inner = 0, node
    while isinstance(inner, ast.Attribute) and inner.attr == "parent":
        chain, inner = chain + 1, inner.value
    return chain > depth + 1  # n parents are parents[n - 1]


def docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def reaches_outside(clone: Path) -> list[str]:
    """Code in tracked files that names a place outside the repository."""
    problems = []
    for name in git("ls-files", cwd=clone).splitlines():
        path = clone / name
        if name == "tests/clone_check.py":  # its own patterns
            continue
        if not path.is_file() or (path.suffix not in SCANNED_SUFFIXES and path.name not in SCANNED_NAMES):
            continue
        text = path.read_text(errors="replace")
        if path.suffix != ".py":
            for number, line in enumerate(text.splitlines(), 1):
                if OUTSIDE.search(line) and not line.lstrip().startswith("#"):
                    problems.append(f"{name}:{number}: {line.strip()}")
            continue
        tree = ast.parse(text, filename=name)
        skip = docstrings(tree)
        depth = len(Path(name).parts) - 1  # folders between the repository's root and the file
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                if OUTSIDE.search(node.value):
                    problems.append(f"{name}:{node.lineno}: names {node.value!r}")
            elif climbs_above_root(node, depth):
                problems.append(f"{name}:{node.lineno}: climbs above the repository: {ast.unparse(node)}")
    return list(dict.fromkeys(problems))  # a long .parent chain is seen once per link


def main() -> int:
    root = Path(git("rev-parse", "--show-toplevel", cwd=Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory(prefix="gateway-clone-") as folder:
        clone = Path(folder) / "repo"  # nothing else in the folder: no ../shared beside it
        commit = clone_head(root, clone)
        say(f"test-clone: {commit[:12]} cloned into {clone}")
        problems = reaches_outside(clone)
        result_file = Path(folder) / "collect.json"
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME"}}
        env |= {"PYTHONPATH": str(clone), "PYTHONDONTWRITEBYTECODE": "1", "TEST_DATABASE": "sqlite"}
        collected = subprocess.run(
            [sys.executable, "-c", COLLECT, str(clone), str(result_file)],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if not result_file.exists():
            say(collected.stdout[-4000:] + collected.stderr[-4000:])
            problems.append("collection did not finish")
        else:
            result = json.loads(result_file.read_text())
            if result["exit"] != 0:
                say(collected.stdout[-4000:])
                problems.append(f"pytest --collect-only exited {result['exit']}")
            problems += [
                f"{name} imported from {where}"
                for name, where in result["modules"].items()
                if not where.startswith(str(clone.resolve()) + os.sep)
            ]
            problems += [f"read outside the clone: {path}" for path in result["outside"]]
            summary = [line for line in collected.stdout.splitlines() if "collected" in line or "error" in line]
            say(f"test-clone: {summary[-1] if summary else 'no summary'}")
    for problem in problems:
        say(f"test-clone: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
