"""Bad configuration is rejected before anything starts, naming the key."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent

BAD = [
    # (yaml, the key the message must name, a fragment of the reason)
    ("sparkk:\n  - url: http://localhost:4040\n", "sparkk", "unknown key"),
    ("spark:\n  - urll: http://localhost:4040\n", "spark[0].urll", "unknown key"),
    ("spark:\n  - url: http://a:4040\n  - url: localhost:4040\n", "spark[1].url", "http:// or https://"),
    ("spark:\n  - url: http://user:pw@a:4040\n", "spark[0].url", "credentials"),
    ("spark:\n  - url: http://a:99999\n", "spark[0].url", "port"),
    ("spark:\n  url: http://a:4040\n", "spark", "list"),
    ("spark:\n  - url: http://a:4040\n    timeout: -1\n", "spark[0].timeout", "greater than 0"),
    ("spark:\n  - url: http://a:4040\n    timeout: ten\n", "spark[0].timeout", "number"),
    ("exporter:\n  scrape_timeout: soon\n", "exporter.scrape_timeout", "number"),
    ("exporter:\n  probe:\n    allowed_targets: http://x\n", "exporter.probe.allowed_targets", "list"),
    ("spark:\n  - url: http://a:4040\n    basic_auth:\n      password: x\n", "spark[0].basic_auth.username", "Field required"),
    ("spark:\n  - url: http://a:4040\n    basic_auth:\n      username: u\n      password_file: /nonexistent/pw\n",
     "spark[0].basic_auth", "does not exist"),
    ("spark:\n  - url: http://a:4040\n    bearer_token_env: SPARKWATCH_TEST_UNSET_VAR\n", "spark[0]", "SPARKWATCH_TEST_UNSET_VAR"),
    ("spark:\n  - url: http://a:4040\n    bearer_token_env: HOME\n    basic_auth: {username: u, password: p}\n",
     "spark[0]", "only one of"),
    ("spark:\n  - url: http://a:4040\n    tls_config:\n      ca_file: /nonexistent/ca.pem\n", "spark[0].tls_config", "does not exist"),
    ("spark:\n  - url: http://a:4040\n    tls_config:\n      verify: false\n", "spark[0].tls_config.verify", "unknown key"),
    ("spark:\n  - {url: http://a:4040, name: x}\n  - {url: http://b:4040, name: x}\n", "spark[1].name", "already used"),
    ("spark:\n  - url: http://a:4040\n    include_completed: maybe\n", "spark[0].include_completed", "boolean"),
    ("- spark\n", "top level", "mapping"),
    ("spark: [url: {\n", "", "not valid YAML"),
]


@pytest.mark.parametrize("text,key,reason", BAD, ids=[b[1] or b[2] for b in BAD])
def test_bad_config_names_the_key(tmp_path, text, key, reason, capsys):
    f = tmp_path / "bad.yml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(f))
    msg = str(e.value)
    assert key in msg and reason in msg, msg
    assert str(f) in msg
    # and the command line says the same and exits non-zero
    assert main(["check-config", str(f)]) == 2
    err = capsys.readouterr().err
    assert key in err and reason in err


def test_serve_with_bad_config_exits_before_listening(tmp_path):
    f = tmp_path / "bad.yml"
    f.write_text("spark:\n  - url: ftp://a\n")
    from testbed.procs import free_port

    port = free_port()
    p = subprocess.run([sys.executable, "-m", "exporter", f"--config.file={f}",
                        f"--web.listen-address=127.0.0.1:{port}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "spark[0].url" in p.stderr and "listening" not in p.stderr


def test_missing_config_file_is_an_error(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "nope.yml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_bad_listen_address_is_rejected(capsys):
    assert main(["--web.listen-address=nonsense"]) == 2
    assert "--web.listen-address" in capsys.readouterr().err


def test_valid_config_passes(tmp_path, capsys):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    f = tmp_path / "ok.yml"
    f.write_text(textwrap.dedent(f"""
        exporter:
          scrape_timeout: 20
          probe:
            allowed_targets: ["http://spark-*.example:4040"]
        spark:
          - url: http://localhost:4040/
          - name: history
            url: https://history.example:18080
            include_completed: true
            basic_auth: {{username: spark, password_file: {pw}}}
            tls_config: {{insecure_skip_verify: true}}
    """))
    assert main(["check-config", str(f)]) == 0
    assert "OK (2 targets)" in capsys.readouterr().out
    cfg = load_config(str(f))
    assert cfg.spark[0].url == "http://localhost:4040"  # trailing slash dropped
    assert cfg.spark[0].display_name() == "localhost:4040"
    assert cfg.spark[1].basic_auth.resolve_password() == "s3cret"
    assert cfg.exporter.probe.allows("http://spark-7.example:4040")
    assert not cfg.exporter.probe.allows("http://evil.example:4040")


def test_empty_file_is_valid_and_has_no_targets(tmp_path):
    f = tmp_path / "empty.yml"
    f.write_text("")
    cfg = load_config(str(f))
    assert cfg.spark == []


def test_default_config_watches_local_spark_ui():
    cfg = load_config(None)
    assert [t.url for t in cfg.spark] == ["http://localhost:4040"]


def test_secrets_are_not_in_the_config_repr():
    cfg = parse_config({"spark": [{"url": "http://a:1", "basic_auth": {"username": "u", "password": "hunter2"}}]})
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())
