"""No secret ever in a log line, an error message, the landing page or a metric.

Secrets that could not be sent as they are (a token file with a second line,
a token with spaces, a password with a line break) are configuration errors
that name the key, never the value; a broken YAML line is reported by its
position, never quoted (it may be a password).
"""

import logging

import pytest
import requests

from sparkwatch.cli import main
from sparkwatch.config import ConfigError, load_config, parse_config
from testbed.exporter import running_exporter, scrape, value
from testbed.faulty_http import faulty_server

TOKEN = "Zq9tokenVALUE"
SECOND = "Xk7secondLINE"
PASSWORD = "Pw4hunter2"


def _assert_clean(*texts):
    for text in texts:
        for secret in (TOKEN, SECOND, PASSWORD):
            assert secret not in text, f"{secret!r} leaked into: {text}"


# ------------------------------------------------------------------ tokens


BAD_TOKENS = {
    "second line": f"{TOKEN}\n{SECOND}\n",
    "crlf second line": f"{TOKEN}\r\n{SECOND}\r\n",
    "inner space": f"{TOKEN} {SECOND}\n",
    "control character": f"{TOKEN}\x00{SECOND}\n",
    "non-ascii": f"{TOKEN}\u00e9{SECOND}\n",
}


@pytest.mark.parametrize("content", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_a_token_file_that_cannot_be_sent_is_a_config_error_without_the_token(tmp_path, content, capsys):
    tok = tmp_path / "token"
    tok.write_text(content, newline="")
    f = tmp_path / "c.yml"
    f.write_text(f"spark:\n  - url: http://a:4040\n    bearer_token_file: {tok}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(f))
    assert "spark[0].bearer_token_file" in str(e.value)
    assert main(["check-config", str(f)]) == 2
    err = capsys.readouterr().err
    assert "bearer_token_file" in err
    _assert_clean(str(e.value), err)


@pytest.mark.parametrize("content", [BAD_TOKENS["second line"], BAD_TOKENS["inner space"]], ids=["second line", "space"])
def test_a_token_env_that_cannot_be_sent_is_a_config_error_without_the_token(monkeypatch, content):
    monkeypatch.setenv("SPARKWATCH_TEST_TOKEN", content)
    with pytest.raises(ConfigError) as e:
        parse_config({"spark": [{"url": "http://a:4040", "bearer_token_env": "SPARKWATCH_TEST_TOKEN"}]})
    assert "spark[0].bearer_token_env" in str(e.value) and "SPARKWATCH_TEST_TOKEN" in str(e.value)
    _assert_clean(str(e.value))


def test_a_token_file_with_a_trailing_newline_is_one_token(tmp_path):
    tok = tmp_path / "token"
    tok.write_text(f"{TOKEN}\r\n", newline="")
    cfg = parse_config({"spark": [{"url": "http://a:4040", "bearer_token_file": str(tok)}]})
    assert cfg.spark[0].bearer_token() == TOKEN
    assert TOKEN not in repr(cfg)


def test_a_two_line_token_reaches_neither_log_nor_landing_page_nor_metrics(tmp_path, caplog):
    """The exporter either refuses the token at start (with a message that does
    not quote it), or runs without showing it anywhere."""
    caplog.set_level(logging.DEBUG)
    tok = tmp_path / "token"
    tok.write_text(f"{TOKEN}\n{SECOND}\n")
    seen = []
    with faulty_server("unauthorized") as srv:
        srv.accept_bearer(TOKEN)
        config = {"spark": [{"name": "tok", "url": srv.url, "bearer_token_file": str(tok)}],
                  "exporter": {"probe": {"allowed_targets": [srv.url],
                                         "modules": {"spark": {"bearer_token_file": str(tok)}}}}}
        try:
            with running_exporter(config) as (url, _):
                seen.append(scrape(url))
                seen.append(requests.get(url + "/probe", params={"module": "spark", "target": srv.url}, timeout=30).text)
                seen.append(requests.get(url + "/", timeout=10).text)
            refused = None
        except ConfigError as e:
            refused = str(e)
            seen.append(refused)
    seen.append(caplog.text)
    _assert_clean(*seen)
    assert refused is not None and "bearer_token_file" in refused


# ------------------------------------------------------------------ passwords


BAD_PASSWORD_FILES = {
    "second line": f"{PASSWORD}\n{SECOND}\n",
    "control character": f"{PASSWORD}\x1b{SECOND}\n",
}


@pytest.mark.parametrize("content", BAD_PASSWORD_FILES.values(), ids=BAD_PASSWORD_FILES.keys())
def test_a_password_file_that_cannot_be_sent_is_a_config_error_without_the_password(tmp_path, content):
    pw = tmp_path / "pw"
    pw.write_text(content)
    with pytest.raises(ConfigError) as e:
        parse_config({"spark": [{"url": "http://a:4040", "basic_auth": {"username": "u", "password_file": str(pw)}}]})
    assert "spark[0].basic_auth.password_file" in str(e.value)
    _assert_clean(str(e.value))


def test_an_inline_password_with_a_line_break_is_rejected_without_echo():
    with pytest.raises(ConfigError) as e:
        parse_config({"zookeeper": [{"hosts": "a:2181",
                                     "digest_auth": {"username": "u", "password": f"{PASSWORD}\n{SECOND}"}}]})
    assert "zookeeper[0].digest_auth.password" in str(e.value)
    _assert_clean(str(e.value))


def test_validation_errors_never_echo_credentials_or_secret_values():
    # a URL with credentials and a wrong scheme: the message quotes the URL without them
    with pytest.raises(ConfigError) as e:
        parse_config({"spark": [{"url": f"ftp://user:{PASSWORD}@a:4040"}]})
    assert "spark[0].url" in str(e.value) and "http://" in str(e.value)
    _assert_clean(str(e.value))
    # the same through a probe module, reported at load
    with pytest.raises(ConfigError) as e:
        parse_config({"exporter": {"probe": {"modules": {"livy": {
            "basic_auth": {"username": "u", "password": PASSWORD, "pasword": PASSWORD}}}}}})
    assert "exporter.probe.modules.livy.basic_auth.pasword: unknown key" in str(e.value)
    _assert_clean(str(e.value))


# ------------------------------------------------------------------ YAML errors on a secret's line


BROKEN_PASSWORD_LINES = {
    "mapping value": (f"      password: {PASSWORD}: x\n", "line 5"),
    "unclosed quote": (f'      password: "{PASSWORD}\n', "line 5"),
    "unknown tag": (f"      password: !{PASSWORD} x\n", "line 5"),
    "undefined alias": (f"      password: *{PASSWORD}\n", "line 5"),
    "bad indent": (f"      password: x\n     {PASSWORD}: y\n", "line 6"),
    "control character": (f"      password: {PASSWORD}\x07\n", "line 5"),
}


@pytest.mark.parametrize("line,where", BROKEN_PASSWORD_LINES.values(), ids=BROKEN_PASSWORD_LINES.keys())
def test_a_yaml_error_gives_the_position_not_the_line(tmp_path, capsys, line, where):
    f = tmp_path / "c.yml"
    f.write_text("spark:\n  - url: http://a:4040\n    basic_auth:\n      username: u\n" + line)
    assert main(["check-config", str(f)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and where in err, err
    _assert_clean(err)


def test_a_wrong_password_is_reported_without_it(tmp_path, caplog):
    """A live exporter with a password the target refuses: down, reason auth, secret nowhere."""
    caplog.set_level(logging.DEBUG)
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    with faulty_server("unauthorized") as srv:
        srv.accept_basic("spark", "another-password")
        cfg = {"spark": [{"name": "t", "url": srv.url, "basic_auth": {"username": "spark", "password_file": str(pw)}}]}
        with running_exporter(cfg) as (url, _):
            text = scrape(url)
            page = requests.get(url + "/", timeout=10).text
    assert value(text, "sparkwatch_target_scrape_errors_total", target="t", reason="auth") == 1
    _assert_clean(text, page, caplog.text)
