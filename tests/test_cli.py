import subprocess
import sys

import pytest

from rsoup_lib.cli import COMMANDS, main


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name, _ in COMMANDS:
        assert f"    {name}" in out


@pytest.mark.parametrize("name", [n for n, _ in COMMANDS])
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: rsoup " + name in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_user_errors_are_one_line_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "rsoup_lib.cli", "book", "--only", "99_nothing", "--no-html"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "rsoup book: error: no notebook '99_nothing'" in proc.stderr


def test_help_is_fast_without_torch():
    code = "import sys; from rsoup_lib.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_profiles_and_cache_commands(capsys):
    assert main(["profiles"]) == 0
    assert "cpu (default)" in capsys.readouterr().out
    assert main(["cache", "ls"]) == 0
    assert "0 entries" in capsys.readouterr().out


def test_train_help_shows_every_config_field_with_its_help_and_default(capsys, monkeypatch):
    import dataclasses

    from rsoup_lib.rl import RLConfig

    monkeypatch.setenv("COLUMNS", "400")  # argparse wraps (and may break at hyphens) at the terminal width
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(RLConfig):
        help_text = f.metadata.get("help")
        assert help_text, f"RLConfig.{f.name} has no help metadata"
        default = "''" if f.default == "" else f.default
        flag = "--" + f.name.replace("_", "-")
        assert f"{flag} " in out and f"{' '.join(help_text.split())} (default {default})" in out, f.name
    assert "--beta BETA KL coefficient beta (>= 0) (default 0.05)" in out
