"""How big is the change that makes the server multiprocessor? (The paper: ~90 lines of ~12,000.)

The uniprocessor server is this same code with every callback on the default color: it would need
no color policy and no `color=` argument anywhere. So the lines that differ are counted as:

  * every code line of `colors.py` (the policy module exists only for the colored server), and
  * every code line of the other server modules that mentions a color at all: a NAME or string
    token containing "color" (`color=conn.color`, `self.colors.crypto(...)`, the `--colors` flag,
    the stats field). That over-counts a little (a uniprocessor server could keep some of these
    lines unchanged), never under-counts.

Code lines exclude blank lines, comment-only lines and docstrings. The total is the code lines of the
server's modules (not the client, load generator, benchmark, tests or this script). A narrower count,
the lines of `ColorsOn` that differ from `ColorsOff` (what `--colors on` switches), is given too.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import inspect
import io
import sys
import tokenize
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER_MODULES = ["server.py", "colors.py", "filelayer.py", "beneath.py", "blockcache.py", "rpc.py",
                  "framing.py", "suites.py", "handshake.py", "keys.py", "_crypto_import.py"]
POLICY_MODULE = "colors.py"
METHOD = ("changed = all code lines of colors.py + code lines of the other server modules with a "
          "NAME or string token containing 'color'; total = code lines (no blanks, comments, "
          "docstrings) of the server modules")

_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENCODING, tokenize.ENDMARKER}


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def analyse(source: str) -> tuple[set[int], set[int]]:
    """(code lines, code lines that mention a color) of one module's source."""
    docs = _docstring_lines(ast.parse(source))
    code, colored = set(), set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in _SKIP:
            continue
        span = range(tok.start[0], tok.end[0] + 1)
        if tok.start[0] in docs:
            continue
        code.update(span)
        if tok.type in (tokenize.NAME, tokenize.STRING) and "color" in tok.string.lower():
            colored.update(span)
    return code, colored


def policy_switch_lines() -> int:
    """Lines of ColorsOn that differ from ColorsOff (ignoring the class line and docstrings)."""
    from . import colors

    def body(cls) -> list[str]:
        lines = inspect.getsource(cls).splitlines()[1:]
        return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]

    diff = difflib.ndiff(body(colors.ColorsOff), body(colors.ColorsOn))
    return sum(1 for ln in diff if ln.startswith("+ "))


def count(modules: list[str] | None = None) -> dict:
    """{changed_lines, total_lines, modules: {name: {changed, total, lines}}, policy_switch_lines, method}."""
    per_module, changed, total = {}, 0, 0
    for name in modules or SERVER_MODULES:
        source = (HERE / name).read_text()
        code, colored = analyse(source)
        hit = code if name == POLICY_MODULE else colored
        text = source.splitlines()
        per_module[name] = {"changed": len(hit), "total": len(code),
                            "lines": [(n, text[n - 1].strip()) for n in sorted(hit)]}
        changed += len(hit)
        total += len(code)
    return {"changed_lines": changed, "total_lines": total, "modules": per_module,
            "policy_switch_lines": policy_switch_lines(), "method": METHOD}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.sfs_like.count_color_diff",
                                description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="list every counted line")
    verbose = p.parse_args(argv).verbose
    result = count()
    print(f"How counted: {result['method']}.")
    for name, m in result["modules"].items():
        print(f"  {name:18s} {m['changed']:4d} of {m['total']:5d} lines")
        if verbose and name != POLICY_MODULE:
            for n, line in m["lines"]:
                print(f"      {n:4d}: {line}")
    share = result["changed_lines"] / result["total_lines"]
    print(f"colors-on vs colors-off: {result['changed_lines']} of {result['total_lines']} server lines "
          f"differ ({share:.1%}); ColorsOn differs from ColorsOff in {result['policy_switch_lines']} lines. "
          "(Paper: about 90 of about 12,000 lines, 0.75%.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
