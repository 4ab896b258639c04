"""One grammar for every command: read from the parsers themselves, and from docs/cli.rst.

Every parser is built and its actions inspected: each option has help and shows its
default, a short flag means the same long option in every command (the table
:data:`edgel3.commands.common.SHORT_FLAGS`, documented in docs/cli.rst), commands that
write files name them with ``-o/--output``, older spellings still parse, and every
example command line in docs/cli.rst is accepted. Building the parsers must stay light
(no SciPy, no :mod:`edgel3.core`, no TensorFlow), so the defaults they repeat are
compared here with the library's.
"""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
import subprocess
import sys

import pytest

from edgel3 import cli
from edgel3.commands import COMMANDS
from edgel3.commands.common import SHORT_FLAGS, TRAINING_DEFAULTS, HelpFormatter

from .conftest import PROJECT_ROOT

CLI_DOC = PROJECT_ROOT / "docs" / "cli.rst"
#: Commands that write files (so they take -o/--output).
WRITERS = ("embed", "evaluate", "export", "memory-report", "prune", "distill", "sea")


def options(command: str):
    """The parser's option actions (not positionals, not -h)."""
    parser = cli.build_parser(command)
    return [
        a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)
    ]


def positionals(command: str):
    return [a for a in cli.build_parser(command)._actions if not a.option_strings]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_and_positional_has_help(command):
    for action in options(command) + positionals(command):
        assert action.help and action.help.strip(), f"{command}: {action.option_strings or action}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_taking_a_value_shows_its_default(command):
    for action in options(command):
        if action.nargs == 0 or isinstance(action, argparse._VersionAction):
            continue  # flags: their default is "off"
        shown = HelpFormatter.help_with_default(action)
        said = "default" in shown or (action.required or "required" in shown)
        assert said, f"{command} {action.option_strings}: {shown!r}"
    # And in the text users read, the values themselves appear.
    text = cli.build_parser(command).format_help()
    for action in options(command):
        if action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
            value = action.default
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            assert str(value) in " ".join(text.split()) or shown in text, (command, action.dest)


@pytest.mark.parametrize("command", COMMANDS)
def test_one_letter_one_meaning(command):
    for action in options(command):
        strings = set(action.option_strings)
        for string in strings:
            if not string.startswith("--"):
                assert string in SHORT_FLAGS, f"{command}: {string} is not in the grammar"
                assert SHORT_FLAGS[string] in strings, (
                    f"{command}: {string} means {sorted(strings)}, elsewhere {SHORT_FLAGS[string]}"
                )
        # An option that has a short flag has it everywhere.
        for short, long in SHORT_FLAGS.items():
            if long in strings:
                assert short in strings, f"{command}: {long} lacks its short flag {short}"


@pytest.mark.parametrize("command", WRITERS)
def test_output_is_o_and_output(command):
    outputs = [a for a in options(command) if "-o" in a.option_strings]
    assert len(outputs) == 1 and "--output" in outputs[0].option_strings


@pytest.mark.parametrize("command", ["models", "download"])
def test_commands_writing_no_file_have_no_output_flag(command):
    assert not [a for a in options(command) if "-o" in a.option_strings]


def test_quiet_is_q_everywhere_and_quantization_is_not():
    for command in COMMANDS:
        for action in options(command):
            if "-q" in action.option_strings:
                assert action.dest == "quiet" and action.nargs == 0, command
    args = cli.build_parser("export").parse_args(["tiny", "-o", "t.tflite", "-Q", "int8", "-q"])
    assert (args.quantization, args.quiet) == ("int8", True)
    args = cli.build_parser("export").parse_args(
        ["tiny", "-o", "t.tflite", "--quantization", "int8"]
    )
    assert args.quantization == "int8"
    with pytest.raises(SystemExit):  # the old "-q int8" is refused, not misread
        cli.build_parser("export").parse_args(["tiny", "t.tflite", "-q", "int8"])


@pytest.mark.parametrize(
    "command, argv, dest, value",
    [
        ("embed", ["x.wav", "-o", "d"], "output_dir", "d"),
        ("embed", ["x.wav", "--output", "d"], "output_dir", "d"),
        ("embed", ["x.wav", "--output-dir", "d"], "output_dir", "d"),
        ("embed", ["x.wav", "--outp", "d"], "output_dir", "d"),  # abbreviation of two aliases
        ("evaluate", ["data", "-o", "r"], "out", "r"),
        ("evaluate", ["data", "--out", "r"], "out", "r"),
        ("evaluate", ["data", "--output", "r"], "out", "r"),
        ("export", ["tiny", "-o", "t.tflite"], "output", "t.tflite"),
        ("export", ["tiny", "t.tflite"], "output_positional", "t.tflite"),
        ("memory-report", ["tiny", "-o", "m.json"], "output", "m.json"),
        ("memory-report", ["tiny", "--json", "m.json"], "json", "m.json"),
        ("memory-report", ["tiny", "--json"], "json", "-"),
        ("prune", ["tiny", "--plan", "95.45", "-o", "p.keras"], "output", "p.keras"),
        ("distill", ["a/", "-o", "s.keras"], "output", "s.keras"),
        ("sea", ["a/", "--output", "s.keras"], "output", "s.keras"),
        ("sea", ["a/", "-o", "s.keras", "--dim", "32"], "emb_dim", 32),
        ("sea", ["a/", "-o", "s.keras", "-e", "32"], "emb_dim", 32),
        ("distill", ["a/", "-o", "s.keras", "-e", "32", "-t", "0.25"], "hop_size", 0.25),
        ("evaluate", ["data", "-t", "0.5", "-n"], "no_centering", True),
    ],
)
def test_primary_spellings_and_aliases_parse(command, argv, dest, value):
    assert getattr(cli.build_parser(command).parse_args(argv), dest) == value


def test_export_output_given_once():
    from edgel3.commands.export import output_path
    from edgel3.exceptions import ParameterError

    parser = cli.build_parser("export")
    assert output_path(parser.parse_args(["tiny", "a.tflite"])) == "a.tflite"
    assert output_path(parser.parse_args(["tiny", "-o", "a.tflite"])) == "a.tflite"
    for argv in (["tiny"], ["tiny", "a.tflite", "-o", "b.tflite"]):
        with pytest.raises(ParameterError, match="edgel3 export MODEL -o OUTPUT"):
            output_path(parser.parse_args(argv))


# --------------------------------------------------------------------------- paths vs commands


def test_a_path_named_like_a_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.split_command(["models/"]) == ("embed", ["models/"])
    assert cli.split_command(["./models"]) == ("embed", ["./models"])
    assert cli.split_command(["embed", "models"]) == ("embed", ["models"])
    assert cli.split_command(["models", "--json"]) == ("models", ["--json"])
    assert capsys.readouterr().err == ""  # no folder named models here: no note
    (tmp_path / "models").mkdir()
    assert cli.split_command(["models"]) == ("models", [])
    assert "edgel3 embed models" in capsys.readouterr().err


# --------------------------------------------------------------------------- light parsers


def test_building_every_parser_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from edgel3.cli import build_parser\n"
        "from edgel3.commands import COMMANDS\n"
        "for command in COMMANDS:\n"
        "    build_parser(command).format_help()\n"
        "heavy = ('scipy', 'edgel3.core', 'edgel3.frontend', 'tensorflow', 'keras', 'sklearn',\n"
        "         'soundfile', 'matplotlib', 'ray')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- defaults


def parser_defaults(command: str, argv: list[str]) -> argparse.Namespace:
    return cli.build_parser(command).parse_args(argv)


def test_embed_defaults_are_process_file_s():
    from edgel3.commands import embed

    assert embed.EMBED_DEFAULTS == {k: embed.defaults()[k] for k in embed.EMBED_DEFAULTS}
    library = inspect.signature(cli.run).parameters
    for name in ("output_dir", "suffix", "model_type", "emb_dim", "retrain_type", "sparsity"):
        assert library[name].default == embed.EMBED_DEFAULTS[name], name
    assert library["batch_size"].default == embed.EMBED_DEFAULTS["batch_size"]
    assert library["hop_size"].default == embed.EMBED_DEFAULTS["hop_size"]


def test_evaluate_defaults_and_choices_are_the_library_s():
    from edgel3.commands import evaluate as command
    from edgel3.evaluate.datasets import LAYOUTS

    assert command.LAYOUT_NAMES == LAYOUTS
    library = command.defaults()
    assert command.EVALUATE_DEFAULTS == {k: library[k] for k in command.EVALUATE_DEFAULTS}


def test_export_defaults_are_the_library_s():
    from edgel3.commands import export as command

    library = command.defaults()
    assert command.EXPORT_DEFAULTS == {k: library[k] for k in command.EXPORT_DEFAULTS}


def test_training_defaults_are_the_library_s():
    from edgel3.commands import prune, sea
    from edgel3.commands.common import signature_defaults
    from edgel3.compress.data import load_windows
    from edgel3.compress.distill import distill
    from edgel3.compress.sea import SAMPLINGS, SEAProjection
    from edgel3.compress.sensitivity import sensitivity_sweep

    library = signature_defaults(distill)
    for name in ("epochs", "batch_size", "learning_rate", "validation", "patience", "seed"):
        assert TRAINING_DEFAULTS[name] == library[name], name
    assert TRAINING_DEFAULTS["hop_size"] == signature_defaults(load_windows)["hop_size"]
    assert sea.SAMPLING_NAMES == SAMPLINGS
    args = parser_defaults("sea", ["a/", "-o", "s.keras"])
    projection = signature_defaults(SEAProjection)
    assert (args.emb_dim, args.sampling) == (projection["n_components"], projection["sampling"])
    sweep = signature_defaults(sensitivity_sweep)
    assert prune.SWEEP_DEFAULTS["sparsities"] == list(sweep["sparsities"])
    assert prune.SWEEP_DEFAULTS["metric"] == sweep["metric"]
    args = parser_defaults("distill", ["a/", "-o", "s.keras"])
    assert (args.epochs, args.learning_rate, args.hop_size) == (50, 1e-3, 0.5)


# --------------------------------------------------------------------------- the docs


def documented_command_lines() -> list[str]:
    """The ``$ edgel3 ...`` / ``$ python -m edgel3 ...`` lines of docs/cli.rst's examples."""
    lines = []
    for line in CLI_DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\s*\$ (?:\w+=\S+ )*(?:python -m )?edgel3\b(.*)", line)
        if match:
            lines.append(match.group(1).split("|")[0].strip())
    return lines


def test_the_docs_list_every_command_and_short_flag():
    text = CLI_DOC.read_text(encoding="utf-8")
    for command in COMMANDS:
        assert f"``{command}``" in text, command
    for short, long in SHORT_FLAGS.items():
        assert re.search(rf"``{short}``\s+``{long}``", text), (short, long)
    assert "docs/cli.rst" in cli.build_parser().format_help()  # the help points there


@pytest.mark.parametrize("line", documented_command_lines())
def test_every_documented_example_parses(line):
    command, arguments = cli.split_command(shlex.split(line))
    cli.build_parser(command).parse_args(arguments)  # SystemExit (status 2) on a bad example


def test_the_docs_have_examples_of_every_command():
    used = {cli.split_command(shlex.split(line))[0] for line in documented_command_lines()}
    assert used >= set(COMMANDS) - {"download"}
