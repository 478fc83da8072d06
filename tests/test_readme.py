"""README.rst and docs/*.rst: every code block runs, every output shown is real, every table
matches the code, and the API reference covers every public name.

How the documents' blocks are run:

- The python blocks of one section of one document form one program, run in a subprocess.
  In the docs (not the README), the block of the guide's section "The snippets in this guide"
  (which starts a LocalGateway and defines ``GATEWAY`` and ``play()``) runs first in every
  program.
- A ``text`` block right after a python block is that program's output: each of its lines must
  appear in the program's output (stdout, then stderr), in order; ``PORT`` stands for a port
  number, a trailing ``...`` for anything, and a line ``...`` for any number of lines.
- A python block with ``:class: pytest`` is a test module, run with pytest and the plugin.
- Console blocks: the README quick start's two commands are checked word for word, every
  ``hatsu-sync`` command line is parsed by the real command line parser, and the demo's output
  shown in the docs is compared with the real one.
- ``json`` blocks (the protocol page) are checked to be JSON documents; ``none`` blocks are
  illustrations that vary by run, and are not checked.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import hatsu_sync
from hatsu_sync import Client
from hatsu_sync.cli import _parser, main
from hatsu_sync.testing import LocalGateway

from .conftest import T

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.rst"
DOCS = REPO / "docs"
DOCUMENTS = [README, *sorted(DOCS.glob("*.rst"))]
GUIDE = DOCS / "guide.rst"
SETUP_SECTION = "The snippets in this guide"
LEAD_SECTIONS = ("Faults and what you see", "Performance", "Security")
QUICK_START = (
    "python -m pip install . && hatsu-sync demo",
    "python -m pip install tox && tox",
)


@dataclasses.dataclass
class Block:
    document: str
    section: str
    language: str
    options: dict[str, str]
    code: str
    line: int


def parse_document(text: str, document: str) -> list[Block]:
    """A document's code blocks, in order, each with the title of its section (or page)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        underline = lines[index + 1] if index + 1 < len(lines) else ""
        if line[:1].strip() and re.fullmatch(r"={3,}|-{3,}|~{3,}", underline):
            section = line.strip()
        match = re.match(r"\.\. code-block:: (\w+)\s*$", line)
        if not match:
            index += 1
            continue
        start = index
        index += 1
        options: dict[str, str] = {}
        while index < len(lines) and re.match(r"\s+:(\w+):\s*(.*)$", lines[index]):
            key, value = re.match(r"\s+:(\w+):\s*(.*)$", lines[index]).groups()  # type: ignore[union-attr]
            options[key] = value
            index += 1
        body: list[str] = []
        while index < len(lines) and (not lines[index].strip() or lines[index].startswith(" ")):
            body.append(lines[index])
            index += 1
        code = "\n".join(line[4:] if line.startswith("    ") else line for line in body)
        code = code.strip("\n") + "\n"
        blocks.append(Block(document, section, match.group(1), options, code, start + 1))
    return blocks


TEXTS = {path.relative_to(REPO).as_posix(): path.read_text(encoding="utf-8") for path in DOCUMENTS}
TEXT = TEXTS["README.rst"]
BLOCKS = [block for name, text in TEXTS.items() for block in parse_document(text, name)]


def setup_code() -> str:
    """The guide's setup block, run first in every program of the docs."""
    found = [b for b in BLOCKS if b.section == SETUP_SECTION and b.language == "python"]
    assert len(found) == 1, "the guide's setup block"
    assert found[0].document == GUIDE.relative_to(REPO).as_posix()
    return found[0].code


def programs() -> list[tuple[str, str, list[str]]]:
    """(document: section, program, expected output lines) for each section with python
    blocks."""
    setup = setup_code()
    by_section: dict[str, tuple[list[str], list[str]]] = {}
    previous: Block | None = None
    for block in BLOCKS:
        key = f"{block.document}: {block.section}"
        if block.language == "python" and "pytest" not in block.options.get("class", ""):
            if block.section != SETUP_SECTION:
                first = [] if block.document == "README.rst" else [setup]
                codes, _ = by_section.setdefault(key, (first, []))
                codes.append(block.code)
        elif (
            block.language == "text"
            and previous is not None
            and previous.language == "python"
            and key in by_section
            and (block.document, block.section) == (previous.document, previous.section)
        ):
            by_section[key][1].extend(block.code.splitlines())
        previous = block
    return [(key, "\n".join(codes), out) for key, (codes, out) in by_section.items()]


def env() -> dict[str, str]:
    """No session id (so local gateways only); hatsu_sync importable, installed or not."""
    environ = {k: v for k, v in os.environ.items() if k != "HATSU_SESSION_ID"}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    return environ


def line_pattern(expected: str) -> re.Pattern[str]:
    pattern = re.escape(expected.strip())
    pattern = pattern.replace("PORT", r"\d+")
    if pattern.endswith(re.escape("...")):
        pattern = pattern[: -len(re.escape("..."))] + ".*"
    return re.compile(pattern)


def assert_output(expected: list[str], output: str) -> None:
    """Every expected line matches an output line, in order; ``...`` lines skip any lines."""
    actual = [line.strip() for line in output.splitlines()]
    position = 0
    for want in expected:
        if want.strip() in ("", "..."):
            continue
        pattern = line_pattern(want)
        while position < len(actual) and not pattern.fullmatch(actual[position]):
            position += 1
        assert position < len(actual), f"{want!r} not found (in order) in:\n{output}"
        position += 1


PROGRAMS = programs()


@pytest.mark.parametrize(("section", "program", "expected"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_section_snippets_run(
    section: str, program: str, expected: list[str], tmp_path: Path
) -> None:
    """Each section's python snippets run (after the setup) and print what the README shows."""
    script = tmp_path / "snippet.py"
    script.write_text(program, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env(),
        timeout=T * 6,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert_output(expected, done.stdout + "\n" + done.stderr)


PYTEST_BLOCKS = [b for b in BLOCKS if "pytest" in b.options.get("class", "")]


@pytest.mark.parametrize(
    "block", PYTEST_BLOCKS, ids=[f"{b.document} line {b.line}" for b in PYTEST_BLOCKS]
)
def test_pytest_snippets_pass(block: Block, tmp_path: Path) -> None:
    """Each pytest snippet passes under pytest with the hatsu_gateway plugin."""
    (tmp_path / "test_snippet.py").write_text(block.code, encoding="utf-8")
    done = subprocess.run(
        # -p no:hatsu_sync: when hatsu-sync is installed, its entry point loads the plugin too.
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("-p", "no:hatsu_sync", "-p", "hatsu_sync.pytest_plugin"),
            *("--rootdir", str(tmp_path), "test_snippet.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env(),
        timeout=T * 6,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout


def test_every_python_block_is_run() -> None:
    """No python block escapes the runs above (each belongs to a section program or pytest)."""
    run_sections = {section for section, _, _ in PROGRAMS}
    for block in BLOCKS:
        if block.language == "python" and block.section != SETUP_SECTION:
            key = f"{block.document}: {block.section}"
            assert "pytest" in block.options.get("class", "") or key in run_sections, key
    # "none": an illustration that varies by run (the ports a gateway prints), not checked
    assert {b.language for b in BLOCKS} <= {"python", "text", "console", "json", "none"}


def test_json_blocks_are_json() -> None:
    """Every json block (the protocol's messages) is one valid JSON document."""
    blocks = [b for b in BLOCKS if b.language == "json"]
    assert blocks
    for block in blocks:
        json.loads(block.code)


def test_every_text_block_is_checked() -> None:
    """Every text block is a program's output (after a python block) or the demo's output."""
    checked = 0
    for previous, block in zip(BLOCKS, BLOCKS[1:]):
        if block.language == "text":
            after_python = previous.language == "python" and (
                (previous.document, previous.section) == (block.document, block.section)
            )
            assert after_python or "LocalGateway on http" in block.code, (
                block.document,
                block.line,
            )
            checked += 1
    assert checked >= 5


def quick_start_commands() -> list[str]:
    blocks = [
        b
        for b in BLOCKS
        if (b.document, b.section, b.language) == ("README.rst", "Quick start", "console")
    ]
    assert len(blocks) == 1
    return [line.strip() for line in blocks[0].code.splitlines() if line.strip()]


def test_quick_start_has_exactly_the_two_commands() -> None:
    """The quick start shows exactly the install-and-demo and the tox commands."""
    assert tuple(quick_start_commands()) == QUICK_START


def hatsu_sync_commands() -> list[list[str]]:
    """The arguments of every hatsu-sync command in the console blocks: each command of a
    ``&&`` list or a pipeline, its redirection (``> file``) and comment left out."""
    commands = []
    for block in BLOCKS:
        if block.language != "console":
            continue
        for line in block.code.splitlines():
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"&&|\|", line):
                words = shlex.split(part.split(">")[0], comments=True)
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                    words.pop(0)  # an environment variable
                if words and words[0] == "hatsu-sync":
                    commands.append(words[1:])
    return commands


def test_console_commands_parse() -> None:
    """Every hatsu-sync command line in the docs is accepted by the real parser."""
    commands = hatsu_sync_commands()
    assert {c[0] for c in commands if not c[0].startswith("-")} == {"demo", "listen", "gateway"}
    parser = _parser()
    if isinstance(parser, tuple):  # (the parser, its subparsers by command)
        parser = parser[0]
    for words in commands:
        if words == ["--version"]:  # argparse's version action exits: test_cli checks it
            continue
        parser.parse_args(words)


def test_demo_output_is_what_the_readme_shows(capsys: pytest.CaptureFixture[str]) -> None:
    """`hatsu-sync demo` prints what the README says it prints."""
    shown = [b for b in BLOCKS if b.language == "text" and "LocalGateway on http" in b.code]
    assert len(shown) == 1
    assert main(["demo", "--delay", "0"]) == 0
    assert_output(shown[0].code.splitlines(), capsys.readouterr().out)


def sections() -> dict[str, str]:
    """Each section's title and text (up to the next title of any level), in every document."""
    found: dict[str, str] = {}
    for text in TEXTS.values():
        parts = re.split(r"^([^\s].*)\n(?:-{3,}|~{3,}|={3,})\n", text, flags=re.M)
        found.update(zip(parts[1::2], parts[2::2]))
    return found


def test_listen_ends_quietly_when_the_reader_goes_away() -> None:
    """`hatsu-sync listen | head` exits 0 without a word once head has stopped reading."""
    with LocalGateway() as gateway:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "hatsu_sync", "listen", "--session-id", "x"),
                *("--json", "--gateway", gateway.http_url),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        try:
            assert proc.stdout is not None
            gateway.wait_for_clients(timeout=T * 2)
            proc.stdout.close()  # what `head` does once it has its lines
            gateway.send({"t": "GUILD_DELETE", "d": None})  # the next line cannot be written
            _, err = proc.communicate(timeout=T * 2)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Broken pipe" not in err
    assert "Traceback" not in err
    assert "Exception ignored" not in err


def test_reference_sections_are_written() -> None:
    """The faults, performance and security sections exist and are no placeholders."""
    found = sections()
    for title in LEAD_SECTIONS:
        assert "filled by the lead" not in found[title], title
        assert len(found[title].split()) > 20, title  # up to the first subsection


def table_rows(header: str) -> list[str]:
    """The rows of the RST simple table whose header row starts with ``header`` (in any
    document): the text of each row, continuation lines joined."""
    lines = "\n".join(TEXTS.values()).splitlines()
    start = next(
        i
        for i, line in enumerate(lines[:-1])
        if line.startswith(header) and lines[i + 1].startswith("===")
    )
    rows: list[str] = []
    for line in lines[start + 2 :]:
        if line.startswith("="):
            break
        if line[:1].strip():
            rows.append(line)
        else:
            rows[-1] += " " + line.strip()
    return rows


def test_events_table_covers_every_model_and_field() -> None:
    """The events table has a row for each event name, naming its model and every field."""
    rows = {row.split()[0]: row for row in table_rows("Event name")}
    for name, model in hatsu_sync.EVENT_TYPES.items():
        assert name in rows, name
        row = rows[name]
        assert f"``{model.__name__}``" in row, name
        for field in dataclasses.fields(model):
            if field.name not in ("name", "data", "raw"):
                assert f"``{field.name}``" in row or "as GUILD_CREATE" in row, (name, field.name)
    table = " ".join(rows.values())
    nested = (hatsu_sync.Presence, hatsu_sync.Embed, hatsu_sync.EmbedText, hatsu_sync.Guild)
    for model in (*nested, hatsu_sync.Channel, hatsu_sync.Invite):
        for field in dataclasses.fields(model):
            assert f"``{field.name}``" in table, (model.__name__, field.name)


def _default(cell: str) -> Any:
    literal = re.fullmatch(r"``(.+?)``", cell.strip())
    if literal is None:
        return inspect.Parameter.empty  # described in words
    try:
        return ast.literal_eval(literal.group(1))
    except ValueError:
        return getattr(hatsu_sync, literal.group(1))


def test_settings_table_matches_the_constructor() -> None:
    """Every setting in the table is a Client argument, with the default the table shows."""
    parameters = inspect.signature(Client).parameters
    rows = table_rows("Setting")
    assert len(rows) >= 10
    for row in rows:
        name = re.match(r"``(\w+)``", row).group(1)  # type: ignore[union-attr]
        assert name in parameters, name
        cell = re.split(r"\s{2,}", row)[1]
        default = _default(cell)
        if default is not inspect.Parameter.empty:
            assert parameters[name].default == default, name
    fatal = re.search(r"default ([\d, ]+):", "\n".join(TEXTS.values()))
    assert fatal is not None
    codes = {int(code) for code in fatal.group(1).split(",")}
    assert codes == set(hatsu_sync.DEFAULT_FATAL_CLOSE_CODES)


def test_readme_is_valid_restructuredtext() -> None:
    """README.rst renders with docutils without a warning (PyPI shows it as the description)."""
    core = pytest.importorskip("docutils.core")
    html5 = pytest.importorskip("docutils.writers.html5_polyglot")
    settings = {"report_level": 2, "halt_level": 2, "warning_stream": False}
    # A writer object, not writer_name=: docutils 0.22 deprecates the name argument, and
    # every version since 0.13 takes the object.
    core.publish_parts(TEXT, writer=html5.Writer(), settings_overrides=settings)


API_DIRECTIVE = re.compile(r"^\.\. (?:auto\w+|module|data)::\s+(\S+)", re.M)


def test_api_reference_covers_every_public_name() -> None:
    """docs/api.rst documents every name of hatsu_sync.__all__ and of hatsu_sync.testing's."""
    import hatsu_sync.testing

    text = TEXTS["docs/api.rst"]
    module = ""
    documented: set[str] = set()
    for name in API_DIRECTIVE.findall(text):
        if name.startswith("hatsu_sync"):
            module = name
        else:
            documented.add(f"{module}.{name}")
    for owner in (hatsu_sync, hatsu_sync.testing):
        for name in owner.__all__:
            assert f"{owner.__name__}.{name}" in documented, f"{owner.__name__}.{name}"


def test_errors_tables_tell_hatsu_errors_from_builtin_ones() -> None:
    """The guide's first errors table lists every HatsuError and nothing else; its second
    lists builtin exceptions only, none of them a HatsuError."""
    first_cells = [re.split(r"\s{2,}", row)[0] for row in table_rows("``HatsuError``")]
    listed = {re.match(r"``(\w+)``", cell).group(1) for cell in first_cells}  # type: ignore[union-attr]
    errors = {getattr(hatsu_sync, name) for name in listed}
    every = {
        value
        for value in map(vars(hatsu_sync).get, hatsu_sync.__all__)
        if isinstance(value, type) and issubclass(value, hatsu_sync.HatsuError)
    }
    assert errors == every - {hatsu_sync.HatsuError}
    builtin_cells = [re.split(r"\s{2,}", row)[0] for row in table_rows("Builtin exception")]
    names = [name for cell in builtin_cells for name in re.findall(r"``(\w+)``", cell)]
    assert {"ValueError", "TypeError", "RuntimeError", "TimeoutError"} <= set(names)
    for name in names:
        error = getattr(builtins, name)
        assert not issubclass(error, hatsu_sync.HatsuError), name


def test_nothing_cites_a_protocol_file_the_repository_lacks() -> None:
    """Docstrings and comments cite docs/protocol.rst, not a PROTOCOL.md that is not here."""
    assert (DOCS / "protocol.rst").is_file()
    for folder in ("hatsu_sync", "tests", "benchmarks", "examples", "docs"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name != "test_readme.py":
                assert "PROTOCOL.md" not in path.read_text(encoding="utf-8"), path
