"""Docs that cannot rot: every command line in README.md, docs/ and Data/README.md that runs one of
the project's scripts names a script that exists and passes only flags that script accepts."""
import argparse
import importlib
import re
import runpy
import shlex

import pytest

import stage
from conftest import ROOT

DOCS = [ROOT / "README.md", ROOT / "Data" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*```")
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_]\w*)=(\"[^\"]*\"|'[^']*'|\S*)\s*$")
INLINE_CODE = re.compile(r"`([^`]+)`")
COMMAND = re.compile(r"\bpython3?\s+((?:[\w./-]+/)?[\w.-]+\.py)\b([^;&|<>`#)]*)")


def shell_lines(text):
    """(line number, command text) of every line of a fenced block, backslash continuations joined,
    shell variables assigned earlier in the block expanded, heredoc bodies left out; and of every
    inline code span outside the blocks."""
    in_block, heredoc, variables, pending = False, None, {}, None
    for number, line in enumerate(text.splitlines(), 1):
        if heredoc:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if FENCE.match(line):
            in_block, variables, pending = not in_block, {}, None
            continue
        if not in_block:
            yield from ((number, span) for span in INLINE_CODE.findall(line))
            continue
        start, joined = pending or (number, ""), (pending[1] if pending else "") + line.rstrip("\\")
        if line.rstrip().endswith("\\"):
            pending = (start[0], joined + " ")
            continue
        pending = None
        if marker := re.search(r"<<-?\s*'?(\w+)'?", joined):
            heredoc = marker.group(1)
        if assignment := ASSIGNMENT.match(joined):
            variables[assignment.group(1)] = assignment.group(2).strip("\"'")
            continue
        for name, value in variables.items():
            joined = re.sub(rf"\$\{{{name}\}}|\${name}\b", value, joined)
        yield start[0], joined


def commands(text):
    """(line number, script, arguments) of every `python <script>.py ...` in the text."""
    for number, line in shell_lines(text):
        for match in COMMAND.finditer(line):
            try:
                arguments = shlex.split(match.group(2))
            except ValueError:
                arguments = match.group(2).split()
            yield number, match.group(1), [a.strip("[]") for a in arguments]


def parser_flags(parser, arguments):
    """The flags `parser` accepts, with those of the subcommand named first in `arguments`."""
    flags = {option for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = next((a for a in arguments if not a.startswith("-")), None)
            if chosen in action.choices:
                flags |= parser_flags(action.choices[chosen], [])
    return flags


def accepted_flags(script, arguments):
    """Every --flag `script` accepts when run with `arguments`, or None if it cannot say."""
    path = ROOT / script
    if path.name.startswith("conure_"):
        block = stage.hyperparameters(runpy.run_path(str(path)))
        return {f"--{name}" for name in {**stage.DEFAULTS, **block}}
    if script == "stage.py":
        return {f"--{name}" for name in stage.DEFAULTS}
    module = importlib.import_module(script[:-3].replace("/", "."))
    return parser_flags(module.build_parser(), arguments) if hasattr(module, "build_parser") else None


def problems(text, where):
    """One line per command that names a missing script or passes a flag its script does not accept."""
    found = []
    for number, script, arguments in commands(text):
        if not (ROOT / script).is_file():
            found.append(f"{where}:{number}: {script}: no such script")
            continue
        accepted = accepted_flags(script, arguments)
        if accepted is None:
            found.append(f"{where}:{number}: {script}: has no build_parser() to check its flags against")
            continue
        found += [f"{where}:{number}: {script} does not accept {flag}"
                  for flag in (a.split("=", 1)[0] for a in arguments if a.startswith("--")) if flag not in accepted]
    return found


def test_the_docs_exist_and_run_scripts():
    assert all(path.is_file() for path in DOCS[:2])
    assert sum(1 for path in DOCS for _ in commands(path.read_text())) > 30


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_runs_a_script_with_flags_it_accepts(path):
    assert problems(path.read_text(), path.relative_to(ROOT)) == []


def test_a_renamed_flag_or_script_is_caught():
    text = """Run `python run_all.py --preset=quick --out_folder=X`.

```bash
A="--valid=0.1 --patiance=3"
python conure_tp_t1.py $A \\
    --epochs=2
python tools/reproduce.py run --datasets=ml-1m
python prepare_data.py movielens --src=S --out=O --min_rating=4 --minimum=1
python conure_tp_t9.py --epochs=1
python - <<'EOF'
python run_all.py --not_checked_inside_a_heredoc=1
EOF
```
"""
    assert problems(text, "x.md") == [
        "x.md:1: run_all.py does not accept --out_folder",
        "x.md:5: conure_tp_t1.py does not accept --patiance",
        "x.md:8: prepare_data.py does not accept --minimum",
        "x.md:9: conure_tp_t9.py: no such script",
    ]
