"""Bad configuration is rejected before anything starts, naming the key."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sparkwatch.cli import main
from sparkwatch.config import ConfigError, load_config, parse_config

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
    # durations reach sleeps, waits and socket timeouts: finite and bounded
    ("exporter:\n  scrape_timeout: 1e10\n", "exporter.scrape_timeout", "less than or equal to 3600"),
    ("exporter:\n  scrape_timeout: .inf\n", "exporter.scrape_timeout", "finite"),
    ("exporter:\n  timeout_offset: .nan\n", "exporter.timeout_offset", "finite"),
    ("spark:\n  - url: http://a:4040\n    timeout: 1e10\n", "spark[0].timeout", "less than or equal to 3600"),
    ("livy:\n  - url: http://a:8998\n    finished_retention: .inf\n", "livy[0].finished_retention", "finite"),
    ("jvm:\n  - {discover: true, attach_interval: .nan}\n", "jvm[0].attach_interval", "finite"),
    # probe modules are checked at load against their kind's target model
    ("exporter:\n  probe:\n    modules:\n      sparkk: {}\n", "exporter.probe.modules.sparkk", "unknown kind"),
    ("exporter:\n  probe:\n    modules:\n      jvm: {discover: true}\n", "exporter.probe.modules.jvm", "cannot be probed"),
    ("exporter:\n  probe:\n    modules:\n      spark: {timout: 5}\n", "exporter.probe.modules.spark.timout", "unknown key"),
    ("exporter:\n  probe:\n    modules:\n      livy: {basic_auth: {username: u, password_file: /nonexistent/pw}}\n",
     "exporter.probe.modules.livy.basic_auth.password_file", "does not exist"),
    ("exporter:\n  probe:\n    modules:\n      zookeeper: {mntr: maybe}\n", "exporter.probe.modules.zookeeper.mntr", "boolean"),
    ("exporter:\n  probe:\n    modules:\n      spark: {url: http://a:4040}\n", "exporter.probe.modules.spark.url",
     "set by /probe"),
    # allowed_targets entries are URL patterns
    ("exporter:\n  probe:\n    allowed_targets: ['*']\n", "exporter.probe.allowed_targets[0]", "URL pattern"),
    ("exporter:\n  probe:\n    allowed_targets: [http://a:4040, 'spark-*.internal']\n",
     "exporter.probe.allowed_targets[1]", "URL pattern"),
    # a key given twice is an error, not a silently dropped section
    ("spark:\n  - url: http://a:4040\nlivy: []\nspark: []\n", "spark", "duplicate key 'spark' (first given on line 1)"),
    ("spark:\n  - url: http://a:4040\n    url: http://b:4040\n", "url", "line 3"),
    ("spark:\n  - {url: http://a:4040, url: http://b:4040}\n", "url", "duplicate key"),
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
    p = subprocess.run([sys.executable, "-m", "sparkwatch", f"--config.file={f}",
                        f"--web.listen-address=127.0.0.1:{port}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "spark[0].url" in p.stderr and "listening" not in p.stderr


def _check_config_fails_cleanly(path, capsys, *fragments):
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err
    for fragment in fragments:
        assert fragment in str(e.value) and fragment in err, err


def test_non_utf8_config_is_a_clean_error(tmp_path, capsys):
    f = tmp_path / "latin1.yml"
    f.write_bytes("spark:\n  - url: http://a:4040\n    name: caf\u00e9\n".encode("latin-1"))
    _check_config_fails_cleanly(f, capsys, "not UTF-8", "line 3, column 14")


def test_deeply_nested_yaml_is_a_clean_error(tmp_path, capsys):
    f = tmp_path / "deep.yml"
    f.write_text("spark: " + "[" * 100_000 + "]" * 100_000 + "\n")
    _check_config_fails_cleanly(f, capsys, "nested deeper than")
    f.write_text("".join("  " * i + f"k{i}:\n" for i in range(3000)))
    _check_config_fails_cleanly(f, capsys, "nested deeper than")


def test_unreadable_yaml_value_is_a_clean_error(tmp_path, capsys):
    f = tmp_path / "date.yml"
    f.write_text("spark:\n  - url: http://a:4040\n    name: 2024-13-45\n")
    _check_config_fails_cleanly(f, capsys, "line 3, column 11")


def test_non_utf8_password_file_is_a_config_error(tmp_path, capsys):
    pw = tmp_path / "pw"
    pw.write_bytes(b"caf\xe9\n")
    f = tmp_path / "c.yml"
    f.write_text(f"spark:\n  - url: http://a:4040\n    basic_auth: {{username: u, password_file: {pw}}}\n")
    _check_config_fails_cleanly(f, capsys, "spark[0].basic_auth.password_file", "not UTF-8")


def test_yaml_merge_keys_may_still_override(tmp_path):
    f = tmp_path / "merge.yml"
    f.write_text("spark:\n  - &a {url: http://a:4040, timeout: 5}\n  - <<: *a\n    url: http://b:4040\n")
    cfg = load_config(str(f))
    assert [t.url for t in cfg.spark] == ["http://a:4040", "http://b:4040"] and cfg.spark[1].timeout == 5


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
            allowed_targets: ["http://spark-*.example:4040", "zk-*.example:2181"]
            modules:
              spark: {{basic_auth: {{username: probe, password_file: {pw}}}, timeout: 5}}
              zookeeper: {{mntr: false}}
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
    assert cfg.exporter.probe.modules["spark"]["timeout"] == 5  # the module stays a mapping for /probe


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
