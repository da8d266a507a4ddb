"""The thin CLI, declared once: every command's function and option classes take exactly
what the table gives them, every flag parses one way, and no public function takes a
long list of parameters (parameter objects carry the option groups instead)."""

import argparse
import ast
import dataclasses
import inspect
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import patchpnp
import pytest
from patchpnp.cli import arguments, build_parser, main, resolve
from patchpnp.commands import (
    COMMANDS,
    HOMONYMS,
    OPTIONS,
    Group,
    inference_size,
    json_object,
    patch_batch,
    use,
)

PACKAGE = Path(patchpnp.__file__).parent
MAX_PARAMETERS = 10
MAX_CLI_LINES = 80


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _needed(params) -> set[str]:
    return {
        k for k, p in params.items()
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_options_are_the_functions_parameters(name):
    command = COMMANDS[name]
    params = dict(inspect.signature(resolve(command.target)).parameters)
    given = {g.param for g in command.groups if g.into}
    given |= {o.dest for g in command.groups if not g.into for o in g.resolved()}
    assert given <= set(params), f"{name}: {sorted(given - set(params))} not taken"
    assert _needed(params) <= given, f"{name}: {sorted(_needed(params) - given)} never given"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_option_classes_take_their_groups(name):
    for group in COMMANDS[name].groups:
        if not group.into:
            continue
        cls = resolve(group.into)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, group.into
        fields = {f.name: f for f in dataclasses.fields(cls)}
        dests = {o.dest for o in group.resolved()}
        assert dests <= set(fields), f"{group.into}: no fields {sorted(dests - set(fields))}"
        missing = dataclasses.MISSING
        needed = {k for k, f in fields.items() if f.default is missing and
                  f.default_factory is missing}  # fmt: skip
        assert needed <= dests, f"{name}: {group.into} needs {sorted(needed - dests)}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: patchpnp {name}") and COMMANDS[name].help.split()[0] in out


def test_the_parser_has_the_tables_commands():
    assert list(_subparsers()) == list(COMMANDS)


def test_no_flag_has_two_declarations():
    """Each flag is declared once in the registry; a homonym (one flag naming different
    things in different commands) is listed, each of its meanings parsing differently
    (else they would be one declaration)."""
    names = defaultdict(list)
    for name, option in OPTIONS.items():
        for flag in option.flags:
            names[flag].append(name)
    twice = {flag: tuple(n) for flag, n in names.items() if len(n) > 1}
    assert twice == HOMONYMS
    for flag, meanings in HOMONYMS.items():
        assert len({OPTIONS[n].parsing() for n in meanings}) == len(meanings), flag


def test_a_flag_parses_the_same_in_every_command():
    """The built parsers agree: one dest, type, nargs and action per flag (and per
    declaration of a homonym), whatever default, choices or help a command gives it."""
    seen = defaultdict(set)
    for sub in _subparsers().values():
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    kind = (action.dest, action.type, action.nargs, type(action).__name__)
                    seen[flag].add(kind)
    differ = {
        flag: kinds for flag, kinds in seen.items() if len(kinds) > len(HOMONYMS.get(flag, (flag,)))
    }
    assert not differ, differ
    assert {k[1] for k in seen["--patch-batch"]} == {patch_batch}  # infer's and mri-cell's


def test_a_use_changes_only_what_a_command_may():
    assert use("solver", choices=("dps",)).apply().type is None
    with pytest.raises(ValueError, match="not declared"):
        use("padding", choices=("circular",)).apply()
    with pytest.raises(TypeError):
        use("patch_batch", type=int)
    merged = Group((use("solver", choices=("dps",)),)).plus(use("solver", help="h")).resolved()
    assert merged[0].choices == ("dps",) and merged[0].help == "h"


def test_groups_become_the_objects_their_functions_take():
    from patchpnp.inference.mri_cell import Acquisition, Reconstruction
    from patchpnp.runtime import Runtime

    argv = ["mri-cell", "split.h5", "--recon", "r.h5", "--metrics", "m.csv", "--dataset", "d",
            "--method", "diffusion", "--acceleration", "4", "--center-fraction", "0.08",
            "--sigma-n", "0.01", "--solver", "dps", "--size", "32",
            "--patch-batch", "7"]  # fmt: skip
    kwargs = arguments(COMMANDS["mri-cell"], build_parser().parse_args(argv))
    assert kwargs["acquisition"] == Acquisition(4, 0.08, "equispaced", 0, 0.01, 10)
    assert kwargs["reconstruction"] == Reconstruction("diffusion", solver="dps", size=32)
    assert kwargs["runtime"] == Runtime(batch_images=12, patch_batch=7)
    assert (kwargs["recon_path"], kwargs["metrics_path"], kwargs["seed"]) == ("r.h5", "m.csv", 0)
    argv = ["profile", "--output", "o", "--prior", "p", "--eval", "e", "--solvers", "dps",
            "--image-size", "32", "--sizes", "whole", "16", "--sweep-patch", "16"]  # fmt: skip
    kwargs = arguments(COMMANDS["profile"], build_parser().parse_args(argv))
    assert kwargs["runtime"] == Runtime(threads=1, memory_budget=None)
    assert kwargs["sizes"] == ["whole", 16] and kwargs["image_sizes"] == []


def test_provenance_reads_the_table():
    from patchpnp.pipeline.provenance import command_modules, command_target

    for name, command in COMMANDS.items():
        assert command_target(name) == command.target
    infer = command_modules("infer")
    for module in ("inference.cell", "runtime", "metrics.quality"):  # function, classes
        assert f"patchpnp.{module}" in infer
    assert "patchpnp.commands" not in infer and "patchpnp.cli" not in infer


def test_option_types():
    assert inference_size("whole") == "whole" and inference_size("32") == 32
    for bad in ("p32", "0", "big"):
        with pytest.raises(argparse.ArgumentTypeError):
            inference_size(bad)
    assert patch_batch("auto") == "auto" and patch_batch("3") == 3
    for bad in ("all", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            patch_batch(bad)
    assert json_object('{"sigma_n": 0.1}') == {"sigma_n": 0.1}
    for bad in ("[1]", "{x"):
        with pytest.raises(argparse.ArgumentTypeError):
            json_object(bad)


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("seed: not-a-number\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("patchpnp check-config: error:") and "seed" in err
    assert main(["check-config", "config/config.yaml"]) == 0
    assert "valid" in capsys.readouterr().out


def test_help_imports_no_torch(repo_root):
    """Building the parser and every command's help load no command's module."""
    code = (
        "import sys\n"
        "from patchpnp.cli import main\n"
        "from patchpnp.commands import COMMANDS\n"
        "for argv in [['--help']] + [[name, '--help'] for name in COMMANDS]:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                         text=True)  # fmt: skip
    assert res.stderr.splitlines()[-1] == "False", res.stderr


def _functions(tree: ast.AST, private: bool = False):
    """(name, node) of every function and method of ``tree``, nested ones excluded."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef)):
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if private or not child.name.startswith("_"):
                        yield child


def _parameters(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def test_no_public_function_takes_more_than_10_parameters():
    """Long parameter lists become parameter objects (a cell, an acquisition, the runtime
    settings, ...), which the CLI builds from option groups."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for fn in _functions(ast.parse(path.read_text(), filename=str(path))):
            n = len(_parameters(fn))
            if n > MAX_PARAMETERS:
                long.append(f"{path.relative_to(PACKAGE)}:{fn.lineno} {fn.name}: {n}")
    assert not long, "\n".join(long)


def test_the_parameter_count_sees_methods_and_keywords():
    tree = ast.parse(
        "class A:\n    def m(self, a, *, b, **c): pass\n"
        "def f(a, /, b, *c, d=1): pass\ndef _g(a): pass\n"
    )
    found = {fn.name: _parameters(fn) for fn in _functions(tree)}
    assert found == {"m": ["a", "b", "c"], "f": ["a", "b", "d", "c"]}


@pytest.mark.parametrize("module", ["cli.py", "commands.py"])
def test_no_cli_function_is_over_80_lines(module):
    path = PACKAGE / module
    long = [
        f"{fn.name}: {fn.end_lineno - fn.lineno + 1} lines"
        for fn in _functions(ast.parse(path.read_text()), private=True)
        if fn.end_lineno - fn.lineno + 1 > MAX_CLI_LINES
    ]
    assert not long, long
