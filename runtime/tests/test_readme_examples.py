"""Every ```python block in runtime/README.md is a program a student may paste: each must run as
written, finish by itself, print what its `# prints:` lines say, and write nothing to stderr (where
the default on_error logs, and where a task's lost exception would be reported: an example that
shows an error passes its own on_error)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "runtime" / "README.md"
TEXT = README.read_text()
BLOCKS = list(re.finditer(r"^```python\n(.*?)^```$", TEXT, flags=re.S | re.M))
TIMEOUT_S = 60          # each example takes well under a second: this only makes a hang a failure


def expected_output(code: str):
    """The lines after a final `# prints:` comment, without their `# `; None if there is none."""
    lines = code.rstrip("\n").split("\n")
    if "# prints:" not in lines:
        return None
    start = len(lines) - lines[::-1].index("# prints:")
    return [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[start:]]


def head(code: str, n: int = 6) -> str:
    return "\n".join(code.split("\n")[:n])


def name(block: re.Match) -> str:
    """The block's number and the README heading it is under, to name its test."""
    headings = re.findall(r"^##+ (.*)$", TEXT[:block.start()], flags=re.M)
    number = BLOCKS.index(block) + 1
    return f"{number}: {headings[-1]}" if headings else str(number)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 6, f"expected at least six ```python blocks in {README}"


@pytest.mark.parametrize("block", BLOCKS, ids=name)
def test_readme_example_runs_and_prints_what_it_says(block):
    code = block.group(1)
    what = f"README example {name(block)!r}"
    expected = expected_output(code)
    if expected is None:
        pytest.fail(f"{what} has no `# prints:` lines to check:\n{head(code)}")
    # Run from the repository root, as the README says, on this checkout's runtime (not another
    # one an editable install may point to).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                              capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        so_far = exc.stdout or ""
        if isinstance(so_far, bytes):       # TimeoutExpired may keep bytes even with text=True
            so_far = so_far.decode(errors="replace")
        pytest.fail(f"{what} did not finish within {TIMEOUT_S} s:\n{head(code)}\n"
                    f"--- stdout so far:\n{so_far}")
    if done.returncode != 0:
        pytest.fail(f"{what} exited with {done.returncode}:\n{head(code)}\n"
                    f"--- stderr:\n{done.stderr}")
    assert done.stdout.splitlines() == expected, \
        f"{what} printed otherwise:\n{head(code)}"
    assert done.stderr == "", f"{what} wrote to stderr:\n{head(code)}"
