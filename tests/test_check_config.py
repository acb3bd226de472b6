"""``sparkwatch check-config``: the configuration file given as every other command takes it
(``--config.file FILE``) or positionally (``check-config FILE``)."""

from __future__ import annotations

import pytest

from sparkwatch.cli import main


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text("spark:\n  - url: http://127.0.0.1:4040\n    name: etl\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("spark:\n  - url: http://127.0.0.1:4040\n    timout: 5\n")
    return good, bad


@pytest.mark.parametrize("form", ["positional", "option", "option="])
def test_check_config_takes_the_file_either_way(form, files, capsys):
    good, bad = files

    def argv(path):
        return {"positional": [str(path)], "option": ["--config.file", str(path)],
                "option=": [f"--config.file={path}"]}[form]

    assert main(["check-config"] + argv(good)) == 0
    assert capsys.readouterr().out == f"{good}: OK (1 targets)\n"
    assert main(["check-config"] + argv(bad)) == 2
    assert "spark[0].timout: unknown key" in capsys.readouterr().err


def test_check_config_refuses_two_different_files(files, capsys):
    good, bad = files
    assert main(["check-config", str(good), "--config.file", str(good)]) == 0  # the same file, said twice
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["check-config", str(good), "--config.file", str(bad)])
    assert e.value.code == 2
    assert "two configuration files" in capsys.readouterr().err
