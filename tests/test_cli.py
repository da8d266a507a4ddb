"""The thin CLI: every subcommand's options are exactly what its function takes."""

import argparse
import inspect

import pytest
from patchpnp.cli import GLOBAL_DESTS, build_parser, inference_size, json_object, main, resolve


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_options_are_the_functions_parameters(name):
    sub = _subparsers()[name]
    fn = resolve(sub.get_default("target"))
    params = dict(inspect.signature(fn).parameters)
    if hasattr(fn, "forwards_to"):  # its **kwargs go to another function: those count too
        params = {**inspect.signature(fn.forwards_to).parameters, **params}
    dests = {a.dest for a in sub._actions if a.dest not in ("help", *GLOBAL_DESTS)}
    assert dests <= set(params), f"{name}: options {sorted(dests - set(params))} not taken"
    needed = {
        k for k, p in params.items()
        if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
    }  # fmt: skip
    assert needed <= dests, f"{name}: {sorted(needed - dests)} never given"


def test_option_types():
    assert inference_size("whole") == "whole" and inference_size("32") == 32
    for bad in ("p32", "0", "big"):
        with pytest.raises(argparse.ArgumentTypeError):
            inference_size(bad)
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
