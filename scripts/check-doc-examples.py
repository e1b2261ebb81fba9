#!/usr/bin/env python3
"""Runs the examples of the README and docs/ against live servers, so the manual cannot drift.

    scripts/check-doc-examples.py            # every example (make check-doc-examples)
    scripts/check-doc-examples.py --list     # what there is, and what each needs
    scripts/check-doc-examples.py predict    # these examples only (and those they run `after`)

Every `sh`, `bash` or `python` code block of README.md, docs/*.md, models/README.md and
deploy/README.md has a marker on the line above it (a block without one is an error, so that a
new example cannot escape the check):

    <!-- example: NAME [server=sst2|nli|reranker|own|none] [needs=A,B] [after=NAME] [expect="TEXT"] [timeout=S] -->

server   sst2 (default): a server of $SHARED_DIR/models/minilm-sst2 that the script starts once;
         nli: one of the NLI fixture, served from a directory named `nli`; reranker: one of the
         cross-encoder fixture, from a directory named `reranker`; own: the block starts
         its own `sentiment-server`, in the background; none: no server at all.
         `localhost:8000` and `localhost:8001` in the block (and `--grpc-port 8001`) are rewritten
         to that server's HTTP and gRPC ports (free ones), `../shared` to $SHARED_DIR.
needs    grpcurl, openssl, python:MODULE: run when present here, else reported as not run;
         docker, gpu, kubernetes, hub, cargo, release: never run here, reported with the reason.
after    run that example's block first, in the same shell (it starts the server this one uses).
expect   text the output must hold (repeatable).
timeout  seconds (default 60, 90 with server=own).

Each block runs under `bash` with `set -euo pipefail` (python blocks as a script), in a scratch
folder holding `models/` (a model repository: `default` and `sst2` flat, both minilm-sst2;
`topics/1` and `topics/3`, a 3-class fixture), `staging/topics-v4` (a copy of that fixture),
`proto/` and a `sentiment-server` on PATH, with HOST=127.0.0.1 and PORT set to the HTTP port.
Its process group is killed when it ends, so servers it started never outlive it. A block
fails on a non-zero exit, a time-out or a missing `expect` text; the script fails when any
block fails, when a block is unmarked or its marker malformed, and when no example ran. At the
end it lists, by name, every example it did not run and why.

Environment: SERVER_BIN (default target/debug/sentiment-server), SHARED_DIR (default ../shared),
EXAMPLES_PYTHON (default .venv-clients/bin/python when tests/e2e/clients.sh made it, else
python3), KEEP=1 keeps the scratch folders.
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = ["README.md", "docs/*.md", "models/README.md", "deploy/README.md"]
LANGUAGES = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python", "py": "python"}
SERVERS = {"sst2", "nli", "reranker", "ner", "own", "none"}
# What the script cannot provide: the example is listed as not run, with this reason.
NEVER_HERE = {
    "docker": "needs Docker (.ci/run's container steps test the images, compose and Swarm: tests/e2e/)",
    "gpu": "needs an NVIDIA GPU",
    "kubernetes": "needs a Kubernetes cluster (scripts/check-k8s.sh checks the manifests offline)",
    "hub": "needs the Hugging Face Hub (network)",
    "cargo": "runs cargo: a build or the test suite, which .ci/run runs itself",
    "release": "pushes a version tag to the project's remote",
}
TOOLS = {"grpcurl", "openssl"}
MARKER = re.compile(r"^\s*<!--\s*example:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass
class Example:
    name: str
    file: str
    line: int
    lang: str
    code: str
    server: str = "sst2"
    needs: list = field(default_factory=list)
    after: str = ""
    expect: list = field(default_factory=list)
    timeout: float = 0.0

    @property
    def where(self):
        return f"{self.file}:{self.line}"


def log(*args):
    print(*args, flush=True)


def parse_marker(text, where, errors):
    try:
        words = shlex.split(text)
    except ValueError as e:
        errors.append(f"{where}: malformed marker: {e}")
        return None
    if not words or "=" in words[0]:
        errors.append(f"{where}: the marker names no example")
        return None
    attrs = {"name": words[0], "expect": []}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            errors.append(f"{where}: `{word}` is not key=value")
        elif key == "expect":
            attrs["expect"].append(value)
        elif key in ("server", "needs", "after", "timeout") and key not in attrs:
            attrs[key] = value
        else:
            errors.append(f"{where}: unknown or repeated key `{key}`")
    return attrs


def read_examples(errors):
    files = []
    for pattern in DOC_FILES:
        files += sorted(ROOT.glob(pattern))
    examples = []
    for path in files:
        rel = str(path.relative_to(ROOT))
        lines = path.read_text(encoding="utf-8").splitlines()
        pending = None  # (attrs, line number) of a marker waiting for its block
        i = 0
        while i < len(lines):
            line = lines[i]
            fence = FENCE.match(line)
            if fence:
                indent, mark, lang = fence.group(1), fence.group(2), fence.group(3).lower()
                body = []
                i += 1
                while i < len(lines):
                    closing = lines[i].strip()
                    if closing.startswith(mark[0] * len(mark)) and not closing.strip(mark[0]):
                        break
                    text = lines[i]
                    body.append(text[len(indent):] if text.startswith(indent) else text.lstrip())
                    i += 1
                start = i - len(body)
                if lang in LANGUAGES:
                    if pending is None:
                        errors.append(f"{rel}:{start}: a {lang} block without an example marker")
                    else:
                        attrs, marker_line = pending
                        examples.append(make_example(attrs, rel, marker_line, LANGUAGES[lang],
                                                     "\n".join(body) + "\n", errors))
                elif pending is not None:
                    errors.append(f"{rel}:{pending[1]}: the marker is followed by a `{lang}` block")
                pending = None
            elif MARKER.match(line):
                if pending is not None:
                    errors.append(f"{rel}:{pending[1]}: a marker not followed by a code block")
                attrs = parse_marker(MARKER.match(line).group(1), f"{rel}:{i + 1}", errors)
                pending = (attrs, i + 1) if attrs else None
            elif line.strip() and pending is not None:
                errors.append(f"{rel}:{pending[1]}: a marker not followed by a code block")
                pending = None
            i += 1
        if pending is not None:
            errors.append(f"{rel}:{pending[1]}: a marker not followed by a code block")
    names = {}
    for ex in examples:
        if ex.name in names:
            errors.append(f"{ex.where}: example name `{ex.name}` also at {names[ex.name].where}")
        names[ex.name] = ex
    for ex in examples:
        if ex.after and ex.after not in names:
            errors.append(f"{ex.where}: after={ex.after} names no example")
        elif ex.after and names[ex.after].server != ex.server:
            errors.append(f"{ex.where}: after={ex.after} runs with server={names[ex.after].server}, this one with server={ex.server}")
    return examples, names


def make_example(attrs, file, line, lang, code, errors):
    where = f"{file}:{line}"
    ex = Example(attrs["name"], file, line, lang, code)
    ex.server = attrs.get("server", "sst2")
    if ex.server not in SERVERS:
        errors.append(f"{where}: server={ex.server}: not one of {sorted(SERVERS)}")
    ex.needs = [n for n in attrs.get("needs", "").split(",") if n]
    for need in ex.needs:
        if need not in NEVER_HERE and need not in TOOLS and not need.startswith("python:"):
            errors.append(f"{where}: needs={need}: unknown (known: {sorted(NEVER_HERE) + sorted(TOOLS)}, python:MODULE)")
    ex.after = attrs.get("after", "")
    ex.expect = attrs["expect"]
    try:
        ex.timeout = float(attrs.get("timeout", 90 if ex.server == "own" else 60))
    except ValueError:
        errors.append(f"{where}: timeout={attrs['timeout']}: not a number")
    return ex


def python_bin():
    if os.environ.get("EXAMPLES_PYTHON"):
        return os.environ["EXAMPLES_PYTHON"]
    venv = ROOT / ".venv-clients" / "bin" / "python"
    return str(venv) if venv.exists() else "python3"


def why_not(ex, names, python, seen=None):
    """The reason this example cannot run here, or None."""
    never = [NEVER_HERE[n] for n in ex.needs if n in NEVER_HERE]
    if never:
        return "; ".join(never)
    for need in ex.needs:
        if need in TOOLS and not shutil.which(need):
            return f"needs {need}, which is not installed"
        if need.startswith("python:"):
            module = need.split(":", 1)[1]
            probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
            if probe.returncode != 0:
                return f"needs the Python module {module}, not importable by {python}"
    if ex.lang == "python" and not shutil.which(python) and not Path(python).exists():
        return f"needs Python ({python})"
    seen = seen or set()
    if ex.after and ex.after not in seen:
        seen.add(ex.name)
        reason = why_not(names[ex.after], names, python, seen)
        if reason:
            return f"runs after `{ex.after}`, which {reason}"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(http_port, shared):
    # A clean environment: none of the server's own variables (MODEL_DIR, API_KEY, ...) leaks in.
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL") if k in os.environ}
    env.update(HOST="127.0.0.1", PORT=str(http_port), SHARED_DIR=str(shared), NO_COLOR="1",
               TERM="dumb", PYTHONUNBUFFERED="1")
    return env


class Server:
    """A server the examples share: started once, stopped at the end."""

    def __init__(self, name, server_bin, model_dir, shared, work):
        self.name = name
        self.http = free_port()
        self.grpc = free_port()
        self.log_path = work / f"server-{name}.log"
        env = base_env(self.http, shared)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [server_bin, "--model-dir", str(model_dir), "--port", str(self.http),
                 "--grpc-port", str(self.grpc), "--log-level", "warn"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {name} server exited ({self.proc.returncode}):\n"
                                   + self.log_path.read_text(errors="replace"))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"the {name} server was not ready within 180 s:\n"
                                   + self.log_path.read_text(errors="replace"))
            time.sleep(0.2)
        log(f"server {name}: {model_dir.name} on 127.0.0.1:{self.http} (gRPC {self.grpc})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_sandbox(path, server_bin, shared, with_staging):
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "sentiment-server").symlink_to(server_bin)
    (path / "proto").symlink_to(ROOT / "proto")
    models = path / "models"
    (models / "topics").mkdir(parents=True)
    (models / "default").symlink_to(shared / "models" / "minilm-sst2")
    (models / "sst2").symlink_to(shared / "models" / "minilm-sst2")
    topics = shared / "fixtures" / "bert-tiny-3class"
    for version in ("1", "3"):
        (models / "topics" / version).symlink_to(topics)
    if with_staging:
        shutil.copytree(topics, path / "staging" / "topics-v4")


def rewrite(code, http, grpc, shared):
    code = code.replace("localhost:8000", f"localhost:{http}")
    code = code.replace("localhost:8001", f"localhost:{grpc}")
    code = code.replace("--grpc-port 8001", f"--grpc-port {grpc}")
    return code.replace("../shared", str(shared))


def kill_group(pgid):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def run_example(ex, names, servers, server_bin, shared, python, work):
    """(ok, seconds, output)"""
    if ex.server in ("own", "none"):
        http, grpc = free_port(), free_port()
    else:
        http, grpc = servers[ex.server].http, servers[ex.server].grpc
    chain = []
    current = ex
    while current:
        chain.insert(0, current)
        current = names[current.after] if current.after else None
    sandbox = work / ex.name
    make_sandbox(sandbox, server_bin, shared, with_staging=ex.server == "own")
    env = base_env(http, shared)
    env["PATH"] = f"{sandbox / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    if ex.lang == "python":
        script = sandbox / "example.py"
        script.write_text(rewrite(ex.code, http, grpc, shared))
        argv = [python, str(script)]
    else:
        script = sandbox / "example.sh"
        body = "".join(f"# {c.name} ({c.where})\n{rewrite(c.code, http, grpc, shared)}" for c in chain)
        script.write_text("set -euo pipefail\n" + body)
        argv = ["bash", str(script)]
    out_path = sandbox / "output.txt"
    started = time.time()
    # A file, not a pipe: a server the block leaves in the background would hold a pipe open.
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, cwd=sandbox, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=ex.timeout)
            problem = None if rc == 0 else f"exit status {rc}"
        except subprocess.TimeoutExpired:
            problem = f"timed out after {ex.timeout:g} s"
        finally:
            kill_group(proc.pid)
            proc.wait()
    seconds = time.time() - started
    output = out_path.read_text(errors="replace")
    if problem is None:
        missing = [e for e in ex.expect if e not in output]
        if missing:
            problem = "output lacks " + ", ".join(repr(e) for e in missing)
    return problem, seconds, output


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="list the examples, run nothing")
    parser.add_argument("names", nargs="*", help="run only these examples")
    args = parser.parse_args()

    errors = []
    examples, names = read_examples(errors)
    if errors:
        for e in errors:
            log(f"error: {e}")
        return 1
    if args.names:
        unknown = [n for n in args.names if n not in names]
        if unknown:
            log(f"error: no example named {', '.join(unknown)}")
            return 1
        examples = [ex for ex in examples if ex.name in args.names]

    python = python_bin()
    plan, skipped = [], []
    for ex in examples:
        reason = why_not(ex, names, python)
        (skipped.append((ex, reason)) if reason else plan.append(ex))
    if args.list:
        for ex in examples:
            reason = dict((e.name, r) for e, r in skipped).get(ex.name)
            status = f"not run: {reason}" if reason else "runs"
            log(f"{ex.name:24} {ex.where:28} server={ex.server:5} {status}")
        return 0

    server_bin = Path(os.environ.get("SERVER_BIN", ROOT / "target" / "debug" / "sentiment-server"))
    server_bin = (ROOT / server_bin).resolve() if not server_bin.is_absolute() else server_bin
    shared = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared")).resolve()
    if plan and not os.access(server_bin, os.X_OK):
        log(f"error: no server binary at {server_bin} (cargo build, or SERVER_BIN=...)")
        return 1
    if not (shared / "models" / "minilm-sst2" / "config.json").exists():
        log(f"error: shared test data not found at {shared} (SHARED_DIR)")
        return 1

    work = Path(tempfile.mkdtemp(prefix="doc-examples-"))
    servers = {}
    failed = []
    try:
        wanted = {ex.server for ex in plan}
        if "sst2" in wanted:
            servers["sst2"] = Server("sst2", server_bin, shared / "models" / "minilm-sst2", shared, work)
        if "nli" in wanted:
            nli = work / "nli"  # the model is named after its directory: `nli`, as the docs say
            shutil.copytree(shared / "more-fixtures" / "bert-tiny-nli", nli)
            servers["nli"] = Server("nli", server_bin, nli, shared, work)
        if "reranker" in wanted:
            reranker = work / "reranker"  # named `reranker`, as the docs say
            shutil.copytree(shared / "more-fixtures" / "bert-tiny-reranker", reranker)
            servers["reranker"] = Server("reranker", server_bin, reranker, shared, work)
        if "ner" in wanted:
            ner = work / "ner"  # named `ner`, as the docs say
            shutil.copytree(shared / "more-fixtures" / "bert-tiny-ner", ner)
            servers["ner"] = Server("ner", server_bin, ner, shared, work)
        for ex in plan:
            problem, seconds, output = run_example(ex, names, servers, server_bin, shared, python, work)
            if problem:
                failed.append(ex)
                log(f"FAIL {ex.name} ({ex.where}, {seconds:.1f} s): {problem}")
                log("     " + output.rstrip().replace("\n", "\n     "))
            else:
                log(f"ok   {ex.name} ({ex.where}, {seconds:.1f} s)")
    except RuntimeError as e:
        log(f"error: {e}")
        return 1
    finally:
        for server in servers.values():
            server.stop()
        if os.environ.get("KEEP") == "1":
            log(f"scratch folders kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    if skipped:
        log(f"\nnot run ({len(skipped)}):")
        for ex, reason in skipped:
            log(f"  {ex.name} ({ex.where}): {reason}")
    ran = len(plan)
    log(f"\ndoc examples: {ran} run, {len(failed)} failed, {len(skipped)} not run")
    if failed:
        log("failed: " + ", ".join(ex.name for ex in failed))
        return 1
    if ran == 0:
        log("error: no example ran")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
