"""Every command the documentation shows runs, verbatim, in a fresh folder outside the checkout.

The rule, for README.md, docs/*.md and bundles/*/docs/README.md:

- A fenced block tagged ``bash``, ``sh``, ``shell`` or ``console`` is a shell session: it runs as
  written with ``bash -e -o pipefail`` (``console`` blocks: the ``$ `` lines and their ``\\``
  continuations). A block tagged ``python`` runs as written too; the Python blocks of one document
  share one namespace, as in a reader's session. Anything else (``text``, ``json``, untagged) is
  shown, not run: synopses with ``[OPTIONS]`` and printed output go there.
- The runnable blocks of one document run in order, in one empty temporary folder (not the
  repository: nothing is copied from it), so later commands use what earlier ones wrote.
  ``medrefine`` and ``python`` are this interpreter's (its ``bin/`` first on PATH) and import the
  medrefine of this checkout.
- A marker (an HTML comment, invisible on GitHub) on the line before a block changes that:
    ``<!-- docs-test: skip (reason) -->``  not run; the reason is required and shown as the
                                          skip reason of ``test_skipped_block`` (``pytest -ra``);
    ``<!-- docs-test: slow (reason) -->``  run only by the ``slow`` test of the document, which runs
                                          every block that is not skipped; the default test runs
                                          the others, so they must not need a slow block's output;
    ``<!-- docs-test: output -->``         before a ``text`` block: the stdout of the runnable block
                                          just above must equal it (trailing spaces aside).
- The documents must leave the checkout as it was (``git status`` before and after).

New blocks are picked up without touching this file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("bundles/*/docs/README.md"))]
SHELL_TAGS = {"bash", "sh", "shell", "console"}
RUN_TAGS = SHELL_TAGS | {"python"}
FENCE = re.compile(r"^(```+)\s*([\w+-]*)[^\n]*$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*(?:\((.*)\))?\s*-->\s*$")
KINDS = {"skip", "slow", "output"}
BLOCK_TIMEOUT_S = 1800


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    tag: str
    code: str
    marker: str | None = None  # skip | slow | output
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.tag in RUN_TAGS


def parse_blocks(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc`` with the docs-test marker on the line before each (if any)."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, tag, start = opening.group(1), opening.group(2).lower(), i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        block = Block(doc, start + 1, tag, "\n".join(body) + "\n")
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(previous.strip())
        if marker:
            block.marker, block.reason = marker.group(1), (marker.group(2) or "").strip()
        elif previous.strip().startswith("<!--") and "docs-test" in previous:
            block.marker, block.reason = "malformed", previous.strip()
        blocks.append(block)
    return blocks


def console_commands(code: str) -> str:
    """The ``$ `` lines of a console block (with their continuation lines)."""
    out, continuing = [], False
    for line in code.splitlines():
        if line.startswith("$ ") or continuing:
            out.append(line[2:] if line.startswith("$ ") and not continuing else line)
            continuing = line.rstrip().endswith("\\")
    return "\n".join(out) + "\n"


ALL_BLOCKS = {doc: parse_blocks(doc) for doc in DOCUMENTS}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _git_status() -> str | None:
    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _compare(block: Block, stdout: str, expected: Block) -> None:
    def norm(text: str) -> list[str]:
        return [line.rstrip() for line in text.rstrip().splitlines()]

    assert norm(stdout) == norm(expected.code), (
        f"{block.where}: the output shown at {expected.where} is out of date; the block now prints:\n{stdout}"
    )


def run_document(doc: Path, workdir: Path, *, include_slow: bool) -> list[str]:
    """Run the runnable blocks of ``doc`` in order in ``workdir``; return what ran (for the log)."""
    blocks = ALL_BLOCKS[doc]
    namespace: dict[str, object] = {"__name__": "__main__"}
    env, ran = _env(), []
    for index, block in enumerate(blocks):
        if not block.runnable or block.marker == "skip" or (block.marker == "slow" and not include_slow):
            continue
        expected = blocks[index + 1] if index + 1 < len(blocks) and blocks[index + 1].marker == "output" else None
        if block.tag == "python":
            buffer = io.StringIO()
            old_cwd = Path.cwd()
            os.chdir(workdir)
            try:
                with contextlib.redirect_stdout(buffer):
                    exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102 - the doc's own code
            except Exception as err:  # noqa: BLE001 - reported with the block's place
                raise AssertionError(f"{block.where}: the python block failed: {type(err).__name__}: {err}") from err
            finally:
                os.chdir(old_cwd)
            stdout = buffer.getvalue()
        else:
            script = console_commands(block.code) if block.tag == "console" else block.code
            proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
            assert proc.returncode == 0, (
                f"{block.where}: exit code {proc.returncode}\n--- block ---\n{script}"
                f"--- stdout (end) ---\n{proc.stdout[-3000:]}\n--- stderr (end) ---\n{proc.stderr[-3000:]}"
            )
            stdout = proc.stdout
        if expected is not None:
            _compare(block, stdout, expected)
        ran.append(block.where)
    return ran


def _has(doc: Path, kind: str) -> bool:
    return any(b.runnable and b.marker == kind for b in ALL_BLOCKS[doc])


def _runs_by_default(doc: Path) -> bool:
    return any(b.runnable and b.marker is None for b in ALL_BLOCKS[doc])


DEFAULT_DOCS = [d for d in DOCUMENTS if _runs_by_default(d)]
SLOW_DOCS = [d for d in DOCUMENTS if _has(d, "slow")]
SKIPPED = [b for d in DOCUMENTS for b in ALL_BLOCKS[d] if b.runnable and b.marker == "skip"]


def _id(doc: Path) -> str:
    return str(doc.relative_to(REPO))


def test_markers_are_well_formed():
    problems = []
    for doc in DOCUMENTS:
        blocks = ALL_BLOCKS[doc]
        for index, block in enumerate(blocks):
            if block.marker is None:
                continue
            if block.marker not in KINDS:
                problems.append(f"{block.where}: unknown docs-test marker {block.reason or block.marker!r}; "
                                f"expected <!-- docs-test: skip|slow (reason) --> or <!-- docs-test: output -->")
            elif block.marker in ("skip", "slow") and not block.reason:
                problems.append(f"{block.where}: a docs-test {block.marker} marker needs a reason in parentheses")
            elif block.marker in ("skip", "slow") and not block.runnable:
                problems.append(f"{block.where}: a {block.marker} marker on a {block.tag or 'untagged'} block, which never runs")
            elif block.marker == "output" and (index == 0 or not blocks[index - 1].runnable or block.runnable):
                problems.append(f"{block.where}: an output marker belongs on a text block right after a runnable block")
    assert not problems, "\n".join(problems)


def test_parse_rules(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n<!-- docs-test: slow (trains) -->\n```bash\necho a \\\n  b\n```\n\n```text\nno\n```\n"
                   "```console\n$ echo one \\\n  two\none two\n$ echo three\n```\n<!-- docs-test: output -->\n"
                   "```text\nthree\n```\n")
    blocks = parse_blocks(doc)
    assert [(b.line, b.tag, b.marker, b.reason) for b in blocks] == [
        (4, "bash", "slow", "trains"), (9, "text", None, ""), (12, "console", None, ""), (19, "text", "output", "")]
    assert console_commands(blocks[2].code) == "echo one \\\n  two\necho three\n"


@pytest.mark.parametrize("block", SKIPPED, ids=[b.where for b in SKIPPED])
def test_skipped_block(block):
    """One skipped test per skipped block, so ``pytest -ra`` lists every skip with its reason."""
    pytest.skip(f"{block.where}: {block.reason}")


def _run_checked(doc: Path, tmp_path: Path, *, include_slow: bool) -> None:
    before = _git_status()
    workdir = tmp_path / "work"
    workdir.mkdir()
    ran = run_document(doc, workdir, include_slow=include_slow)
    print(f"{_id(doc)}: ran {len(ran)} block(s): {', '.join(ran)}")
    if before is not None:
        assert _git_status() == before, f"{_id(doc)}: the documented commands changed the checkout"


@pytest.mark.parametrize("doc", DEFAULT_DOCS, ids=[_id(d) for d in DEFAULT_DOCS])
def test_document_commands(doc, tmp_path):
    _run_checked(doc, tmp_path, include_slow=False)


#: The slow blocks (full-size trainings: 2-5 min each on 2 CPU cores, about half an hour in all)
#: would more than double ``make test``; they run when this is set, e.g.
#: ``MEDREFINE_DOCS_SLOW=1 make test PYTEST_ARGS="tests/test_docs_commands.py"``.
RUN_SLOW_BLOCKS = os.environ.get("MEDREFINE_DOCS_SLOW", "") not in ("", "0")


@pytest.mark.slow
@pytest.mark.skipif(not RUN_SLOW_BLOCKS, reason="slow documented blocks run with MEDREFINE_DOCS_SLOW=1 (about 30 min on 2 CPU cores)")
@pytest.mark.parametrize("doc", SLOW_DOCS, ids=[_id(d) for d in SLOW_DOCS])
def test_document_commands_with_slow_blocks(doc, tmp_path):
    _run_checked(doc, tmp_path, include_slow=True)
