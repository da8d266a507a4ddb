"""The start-up helper of short processes (patchpnp.startup)."""

import gc

import pytest
from patchpnp.startup import freeze_imported, untraced_imports


@pytest.fixture
def thawed():
    """Each test starts and ends with nothing frozen and the collector as it was."""
    enabled = gc.isenabled()
    gc.unfreeze()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_imports_run_without_collections_and_end_frozen(thawed):
    gc.enable()
    with untraced_imports():
        assert not gc.isenabled()
        import email.mime.multipart  # noqa: F401  (a module this process has not loaded)

        made = [[] for _ in range(1000)]  # tracked containers made inside the block
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(made)
    gc.collect()  # frozen objects are not traversed: still there, still frozen
    assert gc.get_freeze_count() >= len(made)


def test_a_disabled_collector_stays_disabled(thawed):
    gc.disable()
    with untraced_imports():
        pass
    assert not gc.isenabled() and gc.get_freeze_count() > 0


def test_an_error_inside_still_turns_the_collector_back_on(thawed):
    gc.enable()
    with pytest.raises(ImportError), untraced_imports():
        import patchpnp_no_such_module  # noqa: F401
    assert gc.isenabled()


def test_freeze_imported_freezes_what_exists(thawed):
    assert gc.get_freeze_count() == 0
    freeze_imported()
    assert gc.get_freeze_count() > 0


def test_the_command_line_imports_its_command_untraced(monkeypatch, thawed):
    """`patchpnp` imports the module of the command it runs inside untraced_imports."""
    from patchpnp import cli

    collector_during_import = []

    def resolve(target):
        collector_during_import.append(gc.isenabled())
        return lambda **kwargs: "ran"

    monkeypatch.setattr(cli, "resolve", resolve)
    gc.enable()
    args = cli.build_parser().parse_args(["check-config", "some.yaml"])
    assert cli.call(cli.COMMANDS["check-config"], args) == "ran"
    assert collector_during_import[0] is False
    assert gc.isenabled() and gc.get_freeze_count() > 0
