"""Docs that cannot rot: every command line in README.md, docs/ and Data/README.md that runs one of
the project's scripts names a script that exists and passes only flags that script accepts."""
import argparse
import importlib
import re
import runpy
import shlex

import pytest

import settings
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
        block = settings.hyperparameters(runpy.run_path(str(path)))
        return {f"--{name}" for name in {**settings.DEFAULTS, **block}} | {"--show_config"}
    if script == "stage.py":
        return {f"--{name}" for name in settings.DEFAULTS} | {"--show_config"}
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


# ---------------------------------------------------------------- README's results, tied to the report

def headline_section(text):
    """README's "Headline results" section with its generated tables left out."""
    from tools.reproduction import readme

    for start, end in sorted(readme.blocks(text).values(), reverse=True):
        text = text[:start] + text[end:]
    return text.split("## Headline results", 1)[1].split("\n## ", 1)[0]


def test_readmes_headline_tables_are_made_from_the_results():
    from tools.reproduction import plan, readme

    text = (ROOT / "README.md").read_text()
    spans = readme.blocks(text)
    assert set(spans) == set(plan.DATASETS)
    for dataset, (start, end) in spans.items():
        assert text[start:end] == "\n".join(readme.headline_table(dataset)) + "\n", dataset


NUMBER = re.compile(r"(?<![\d.])\d\.\d{4}(?!\d)")  # a result as the report writes it: 0.0547


def unreported(text, report):
    """The results quoted in `text` that the report does not hold."""
    held = set(NUMBER.findall(report))
    return [number for number in NUMBER.findall(text) if number not in held]


def test_every_result_readme_quotes_is_in_the_report():
    section = headline_section((ROOT / "README.md").read_text())
    assert NUMBER.findall(section) and unreported(section, (ROOT / "REPRODUCTION.md").read_text()) == []


def test_a_changed_digit_in_a_quoted_result_is_caught():
    report = "| Conure | AMD EPYC | 0.1297 ± 0.0104 | 0.0547 ± 0.0033 |"
    assert unreported("Conure scores 0.0547 ± 0.0033 on T2", report) == []
    assert unreported("Conure scores 0.0548 ± 0.0033 on T2", report) == ["0.0548"]


def test_the_report_is_made_from_the_results_in_git(tmp_path, monkeypatch):
    from tools.reproduction import plan
    from tools.reproduction.report import report

    monkeypatch.setattr(plan, "OUT", tmp_path / "no runs here")  # nothing to archive: results/ alone
    report(destination=tmp_path)
    assert (tmp_path / "REPRODUCTION.md").read_text() == (ROOT / "REPRODUCTION.md").read_text()


def test_the_reproduction_scripts_help_lists_every_part_of_the_plan():
    from tools import reproduce
    from tools.reproduction import plan

    listed = re.findall(r"^  (\w+)\s{2,}", reproduce.__doc__, re.M)
    assert listed == list(plan.PARTS)


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(path):
    """The relative links of a Markdown file whose file or heading does not exist."""
    found = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"\w+://|mailto:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            found.append(target)
        elif anchor and linked.suffix == ".md":
            headings = {slug(line.lstrip("#")) for line in linked.read_text().splitlines() if line.startswith("#")}
            found += [target] if anchor not in headings else []
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_its_file_and_heading(path):
    assert broken_links(path) == []
