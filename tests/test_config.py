"""Connection settings: env and flags, timeouts that hold, and no password ever shown."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.client import ClusterTimeout, connect
from bridge.config import DEFAULT_CONNECT_TIMEOUT, DEFAULT_URL, ConnectionSettings
from bridge.errors import BadInput, ConnectionFailed
from tests.silent_server import full_backlog, silent_server


def test_defaults_and_env(monkeypatch):
    for var in ("OPENSEARCH_URL", "OPENSEARCH_USER", "OPENSEARCH_PASSWORD", "OPENSEARCH_CA_CERTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("OPENSEARCH_TIMEOUT", raising=False)
    monkeypatch.delenv("OPENSEARCH_CONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("OPENSEARCH_VERIFY_CERTS", raising=False)
    settings = ConnectionSettings.from_env()
    assert settings.url == DEFAULT_URL and settings.verify_certs
    monkeypatch.setenv("OPENSEARCH_URL", "https://search.example:9200")
    monkeypatch.setenv("OPENSEARCH_USER", "admin")
    monkeypatch.setenv("OPENSEARCH_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("OPENSEARCH_CA_CERTS", "/etc/ca.pem")
    settings = ConnectionSettings.from_env(user="other")
    assert (settings.url, settings.user, settings.password, settings.ca_certs) == (
        "https://search.example:9200",
        "other",
        "s3cret-pw",
        "/etc/ca.pem",
    )
    assert settings.verify_certs
    assert "s3cret-pw" not in repr(settings)


def test_safe_url_drops_credentials():
    settings = ConnectionSettings(url="https://admin:s3cret-pw@search.example:9200/x")
    assert settings.safe_url == "https://search.example:9200/x"


def test_connection_error_names_the_url_not_the_password():
    settings = ConnectionSettings(url="http://admin:s3cret-pw@127.0.0.1:9", password="s3cret-pw")
    with pytest.raises(ConnectionFailed) as err:
        connect(settings)
    assert "127.0.0.1:9" in err.value.message and "s3cret-pw" not in err.value.message


def test_cli_never_prints_the_password():
    env = {"OPENSEARCH_URL": "http://127.0.0.1:9", "OPENSEARCH_PASSWORD": "s3cret-pw"}
    result = CliRunner().invoke(main, ["opensearch", "status", "--user", "admin"], env=env)
    assert result.exit_code == 1
    # Nothing answered, so no engine is named (--backend would name one).
    assert "No OpenSearch or Elasticsearch answers at http://127.0.0.1:9" in result.output
    assert "s3cret-pw" not in result.output
    help_text = CliRunner().invoke(main, ["search", "--help"], env=env).output
    assert "s3cret-pw" not in help_text


# ---- timeouts, passwords and the process list: real sockets, no search engine needed ---------


def test_server_that_never_answers_is_reported_within_the_read_timeout():
    with silent_server() as server:
        start = time.monotonic()
        url = f"http://127.0.0.1:{server.port}"
        args = ["opensearch", "status", "--url", url, "--timeout", "1.5"]
        result = CliRunner().invoke(main, args)
        waited = time.monotonic() - start
        accepted = server.accepted
    assert result.exit_code == 1
    line = result.output.strip()
    assert line == (
        f"Error: http://127.0.0.1:{server.port} accepted the connection but sent no answer "
        "within 1.5 s: check that it is a healthy OpenSearch or Elasticsearch node, or raise "
        "--timeout."
    )
    # One connection, one wait: a timeout is not retried (it was 6 x 60 s before).
    assert accepted == 1
    assert waited >= 1.5


def test_connect_timeout_is_its_own_sentence_and_not_retried(monkeypatch):
    monkeypatch.setenv("OPENSEARCH_CONNECT_TIMEOUT", "1")
    with full_backlog() as port:
        settings = ConnectionSettings.from_env(url=f"http://127.0.0.1:{port}")
        start = time.monotonic()
        with pytest.raises(ClusterTimeout) as err:
            connect(settings)
        waited = time.monotonic() - start
    assert err.value.message == (
        f"Nothing at http://127.0.0.1:{port} accepted a connection within 1 s: check the URL "
        "and the network, or raise --connect-timeout."
    )
    assert waited < 1 + 1  # one connect timeout, not six


def test_timeouts_from_env_and_flags(monkeypatch):
    monkeypatch.setenv("OPENSEARCH_TIMEOUT", "7.5")
    settings = ConnectionSettings.from_env()
    assert (settings.timeout, settings.connect_timeout) == (7.5, DEFAULT_CONNECT_TIMEOUT)
    assert ConnectionSettings.from_env(connect_timeout=3.0).connect_timeout == 3.0
    monkeypatch.setenv("OPENSEARCH_TIMEOUT", "soon")
    with pytest.raises(BadInput, match="OPENSEARCH_TIMEOUT='soon' is not a number of seconds"):
        ConnectionSettings.from_env()


def test_there_is_no_password_flag_and_no_password_in_the_url_flag(monkeypatch):
    monkeypatch.delenv("OPENSEARCH_PASSWORD", raising=False)
    result = CliRunner().invoke(main, ["opensearch", "status", "--password", "s3cret-pw"])
    assert result.exit_code == 2 and "No such option '--password'" in result.output
    url = "http://admin:s3cret-pw@127.0.0.1:9"
    result = CliRunner().invoke(main, ["opensearch", "status", "--url", url])
    assert result.exit_code == 1
    assert "--url carries a password" in result.output and "s3cret-pw" not in result.output


def test_user_without_password_and_without_a_terminal_is_told_to_set_it(monkeypatch):
    monkeypatch.delenv("OPENSEARCH_PASSWORD", raising=False)
    result = CliRunner().invoke(
        main, ["opensearch", "status", "--url", "http://127.0.0.1:9", "--user", "admin"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: User 'admin' has no password: set OPENSEARCH_PASSWORD (dotbridge asks for it "
        "only on a terminal, and takes no password flag)."
    )


def test_with_password_asks_the_prompt_only_when_needed():
    asked = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed-pw"

    given = ConnectionSettings(user="admin", password="env-pw").with_password(prompt)
    assert given.password == "env-pw" and not asked
    assert ConnectionSettings().with_password(prompt).password is None and not asked
    typed = ConnectionSettings(user="admin", url="https://h:9200").with_password(prompt)
    assert typed.password == "typed-pw"
    assert asked == ["Password for admin at https://h:9200"]


def test_password_is_not_in_any_process_command_line():
    """While a CLI subprocess waits on a connection, no /proc/*/cmdline holds the password."""
    password = f"pw-{uuid.uuid4().hex}"
    with silent_server() as server:
        env = {
            **os.environ,
            "OPENSEARCH_URL": f"http://127.0.0.1:{server.port}",
            "OPENSEARCH_USER": "admin",
            "OPENSEARCH_PASSWORD": password,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "opensearch", "status", "--timeout", "20"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while server.accepted == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.accepted == 1, "the CLI never connected"
            own = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert b"bridge" in own
            holders = [
                entry.name
                for entry in Path("/proc").iterdir()
                if entry.name.isdigit() and password.encode() in _cmdline(entry)
            ]
            assert holders == []
        finally:
            proc.kill()
            out, err = proc.communicate()
    assert password.encode() not in out + err


def _cmdline(entry: Path) -> bytes:
    try:
        return (entry / "cmdline").read_bytes()
    except OSError:
        return b""


def test_describe_failure_without_settings_names_no_url_or_timeout():
    """The CLI's outer boundary may have no settings at hand: the sentence still holds."""
    from opensearchpy.exceptions import ConnectionError as OSConnectionError

    from bridge.client import describe_failure

    with silent_server() as server:
        settings = ConnectionSettings(
            url=f"http://127.0.0.1:{server.port}", timeout=0.5, backend="opensearch"
        )
        with pytest.raises(OSConnectionError) as raised:
            connect(settings, check=False).info()
    error = describe_failure(raised.value)
    assert isinstance(error, ClusterTimeout)
    assert error.message == (
        "The cluster accepted the connection but sent no answer in time: check that it is a "
        "healthy OpenSearch node, or raise --timeout."
    )


def test_minilm_names_the_packaged_model_unless_a_folder_is_called_so(tmp_path, monkeypatch):
    from bridge.config import minilm_model_dir, resolve_model

    assert resolve_model("minilm") == str(minilm_model_dir()) == resolve_model("MiniLM")
    assert resolve_model("org/model") == "org/model"
    (tmp_path / "minilm").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("minilm") == "minilm"  # the user's own folder of that name


def test_every_option_of_every_command_says_what_it_does():
    """No flag without a help text; stopping or asking about a node takes no --heap/--version."""

    def commands(group, path=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    for path, command in commands(main):
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"dotbridge {' '.join(path)} {param.opts[0]} has no help"
    for engine in ("opensearch", "elasticsearch"):
        for name in ("stop", "status"):
            opts = {o for p in main.commands[engine].commands[name].params for o in p.opts}
            assert not {"--heap", "--version"} & opts, (engine, name)
            assert "--port" in opts
