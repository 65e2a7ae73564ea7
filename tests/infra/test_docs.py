"""The documentation states each measured figure once, in docs/BENCHMARKS.md, with the command that
reproduces it and the date it was taken; and it cites no issue numbers or design files a reader of the
repository cannot open."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from mlplat.cli import COMMANDS, env_python

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "docs" / "BENCHMARKS.md"
MAX_BENCHMARK_LINES = 250
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2})?$")
ISSUE = re.compile(r"\bissues?[ -]?#?\d+", re.IGNORECASE)
DESIGN_FILE = re.compile(r"\bDESIGN(\.md| §)|\bdesign notes\b")
ENV_VAR = re.compile(r"^[A-Z_][A-Z0-9_]*=")
# Programs a benchmark command may run besides the ones checked below (shell helpers, no figures).
PLAIN_PROGRAMS = {"rm"}


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md")), *sorted(ROOT.glob("runbooks/*.md")),
            *sorted(ROOT.glob("ml/**/*.md"))]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[tuple[int, list[str], list[tuple[int, list[str]]]]]:
    """Markdown tables as (line of the header, header cells, [(line, cells) of each row])."""
    tables: list[tuple[int, list[str], list[tuple[int, list[str]]]]] = []
    lines = text.splitlines()
    n = 0
    while n < len(lines):
        if lines[n].startswith("|") and n + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[n + 1].strip()):
            header, rows, n = (n + 1, _cells(lines[n])), [], n + 2
            while n < len(lines) and lines[n].startswith("|"):
                rows.append((n + 1, _cells(lines[n])))
                n += 1
            tables.append((header[0], header[1], rows))
        else:
            n += 1
    return tables


def _rows_without_command_or_date(text: str) -> list[str]:
    problems = []
    for line, header, rows in _tables(text):
        if "Command" not in header or "Measured" not in header:
            problems.append(f"line {line}: a table of figures needs a Command and a Measured column")
            continue
        command, measured = header.index("Command"), header.index("Measured")
        for row_line, cells in rows:
            if len(cells) != len(header):
                problems.append(f"line {row_line}: {len(cells)} cells under {len(header)} columns")
            elif not re.fullmatch(r"`[^`]+`", cells[command]):
                problems.append(f"line {row_line}: no command (one `...` per row): {cells[command]!r}")
            elif not DATE.match(cells[measured]):
                problems.append(f"line {row_line}: no date (YYYY-MM-DD [HH:MM]): {cells[measured]!r}")
    return problems


def _benchmark_commands(text: str) -> list[str]:
    commands = []
    for _line, header, rows in _tables(text):
        if "Command" in header:
            column = header.index("Command")
            commands += [cells[column].strip("`") for _n, cells in rows if len(cells) == len(header)]
    return list(dict.fromkeys(commands))


def _check_command(command: str, mlplat_calls: dict[str, list[list[str]]]) -> list[str]:
    """Problems with one shell command line; `mlplat` calls are collected per environment for the parser."""
    problems = []
    environments = {name: env for name, _module, env in COMMANDS}
    for part in command.split("&&"):
        words = shlex.split(part)
        while words and (ENV_VAR.match(words[0]) or words[0] == "time"):
            words = words[1:]
        if not words:
            problems.append(f"{command!r}: empty command")
            continue
        program, args = words[0], words[1:]
        if program == "mlplat":
            if not args or args[0] not in environments:
                problems.append(f"{command!r}: no mlplat subcommand {args[:1]}")
            else:
                mlplat_calls[environments[args[0]]].append(args)
        elif program == "python" and args[:2] == ["-m", "pytest"]:
            problems += [f"{command!r}: {a} does not exist" for a in args[2:]
                         if not a.startswith("-") and not (ROOT / a.split("::")[0]).exists()]
        elif program == "python" and args[:1] == ["-m"] and len(args) > 1:
            base = ROOT / Path(*args[1].split("."))
            source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__main__.py"
            if not source.is_file():
                problems.append(f"{command!r}: no module {args[1]}")
                continue
            text = source.read_text()
            problems += [f"{command!r}: {args[1]} has no option {a}" for a in args[2:]
                         if a.startswith("--") and f'"{a}"' not in text]
        elif Path(program).name == "python" and args[:1] and args[0].endswith(".py"):  # a script of the repository
            script = ROOT / args[0]
            if not script.is_file():
                problems.append(f"{command!r}: no script {args[0]}")
                continue
            text = script.read_text()
            problems += [f"{command!r}: {args[0]} has no option {a}" for a in args[1:]
                         if a.startswith("--") and f'"{a}"' not in text]
        elif program == "make":
            makefile = (ROOT / "Makefile").read_text()
            problems += [f"{command!r}: no make target {t}" for t in args if not re.search(rf"^{t}:", makefile, re.M)]
        elif program == "bash":
            if not args or not (ROOT / args[0]).is_file():
                problems.append(f"{command!r}: no script {args[:1]}")
        elif program not in PLAIN_PROGRAMS:
            problems.append(f"{command!r}: unknown program {program}")
    return problems


PARSE_CHECK = """
import json, sys
from mlplat.cli import build_parser
failed = []
for argv in json.loads(sys.argv[1]):
    try:
        build_parser(only=argv[0]).parse_args(argv)
    except SystemExit:
        failed.append(" ".join(argv))
print(json.dumps(failed))
"""


def _unparsable_mlplat_calls(calls: dict[str, list[list[str]]]) -> list[str]:
    """Each call parsed by the real `mlplat` parser in its own environment (flags, choices, arity)."""
    failed = []
    for env, argvs in calls.items():
        if not argvs:
            continue
        python = env_python(env)
        assert python.exists(), f"{python} is missing: run scripts/bootstrap.sh {env}"
        done = subprocess.run([str(python), "-c", PARSE_CHECK, json.dumps(argvs)], capture_output=True, text=True,
                              timeout=180, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        failed += [f"mlplat {call}: rejected by the {env} parser" for call in json.loads(done.stdout)]
    return failed


def test_benchmarks_fit_on_250_lines():
    lines = BENCHMARKS.read_text().splitlines()
    assert len(lines) <= MAX_BENCHMARK_LINES, f"docs/BENCHMARKS.md has {len(lines)} lines: keep current figures only"


def test_every_benchmark_figure_has_a_command_and_a_date():
    text = BENCHMARKS.read_text()
    assert len(_tables(text)) >= 5
    assert _rows_without_command_or_date(text) == []


def test_the_row_check_finds_a_row_without_a_command():
    text = ("| Figure | Value | Command | Measured |\n|---|---|---|---|\n"
            "| a | 1 ms | `mlplat bench store` | 2026-12-02 |\n| b | 2 ms | see above | 2026-12-02 |\n"
            "| c | 3 ms | `mlplat bench store` | recently |\n\n| Figure | Value |\n|---|---|\n| d | 4 ms |\n")
    assert _rows_without_command_or_date(text) == [
        "line 4: no command (one `...` per row): 'see above'",
        "line 5: no date (YYYY-MM-DD [HH:MM]): 'recently'",
        "line 7: a table of figures needs a Command and a Measured column",
    ]


@pytest.mark.integration
def test_every_benchmark_command_exists_in_the_current_cli():
    calls: dict[str, list[list[str]]] = {"iac": [], "ml": []}
    commands = _benchmark_commands(BENCHMARKS.read_text())
    problems = [p for command in commands for p in _check_command(command, calls)]
    assert calls["iac"] and calls["ml"]
    assert problems + _unparsable_mlplat_calls(calls) == []


@pytest.mark.integration
def test_the_command_check_finds_an_invented_flag_and_a_missing_module():
    calls: dict[str, list[list[str]]] = {"iac": [], "ml": []}
    problems = _check_command("python -m ml.models.fraud.algorithm --data d --no-such-flag", calls)
    problems += _check_command("python -m ml.nowhere --data d", calls)
    problems += _check_command("make no-such-target", calls)
    problems += _check_command(".venv-ml/bin/python scripts/bench_splitter.py --no-such-flag", calls)
    problems += _check_command("python scripts/nowhere.py", calls)
    assert problems == [
        "'python -m ml.models.fraud.algorithm --data d --no-such-flag': ml.models.fraud.algorithm has no option "
        "--no-such-flag",
        "'python -m ml.nowhere --data d': no module ml.nowhere",
        "'make no-such-target': no make target no-such-target",
        "'.venv-ml/bin/python scripts/bench_splitter.py --no-such-flag': scripts/bench_splitter.py has no option "
        "--no-such-flag",
        "'python scripts/nowhere.py': no script scripts/nowhere.py",
    ]
    _check_command("mlplat bench models --no-such-flag", calls)
    _check_command("MLPLAT_CHART_MIRROR=x time mlplat conform --stack nowhere", calls)
    assert calls == {"iac": [["conform", "--stack", "nowhere"]], "ml": [["bench", "models", "--no-such-flag"]]}
    assert _unparsable_mlplat_calls(calls) == [
        "mlplat conform --stack nowhere: rejected by the iac parser",
        "mlplat bench models --no-such-flag: rejected by the ml parser",
    ]


def test_no_document_cites_an_issue_number_or_a_design_file_outside_the_repository():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}"
        for path in _doc_files()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ISSUE.search(line) or DESIGN_FILE.search(line)
    ]
    assert offenders == []


def test_no_code_comment_cites_an_issue_number_or_a_design_file():
    """Comments and docstrings say why in their own words (this file's own examples excepted)."""
    packages = ("contracts", "stacks", "infra", "ml", "local", "runbooks", "policies", "mlplat", "tests", "scripts")
    sources = [p for pkg in packages for p in sorted((ROOT / pkg).rglob("*.py")) if p != Path(__file__).resolve()]
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}"
        for path in sources
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ISSUE.search(line) or DESIGN_FILE.search(line)
    ]
    assert sources and offenders == []


def test_the_citation_check_matches_issue_numbers_only():
    assert ISSUE.search("measured for issue 17") and ISSUE.search("the issue-5 protocol")
    assert ISSUE.search("Issues 3 and 4") and ISSUE.search("issue #12")
    assert not ISSUE.search("the OIDC issuer 2") and not ISSUE.search("an issue with 3 nodes")
    assert DESIGN_FILE.search("see DESIGN.md") and DESIGN_FILE.search("(DESIGN §5)")
