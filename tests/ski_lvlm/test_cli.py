from ski_lvlm import cli


def test_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "data synthetic" in out and "train lvlm" in out


def test_unknown_command_exits_2(capsys):
    assert cli.main(["nope"]) == 2
    assert "unknown command" in capsys.readouterr().err
