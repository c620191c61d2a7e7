"""The station's TOML configuration: the example loads, every problem is named, the command line overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_py.errors import ConfigError
from firmware_py.station.config import load_station_config, with_overrides
from tests.fixtures.constants import REPO

EXAMPLE = REPO / "config" / "station.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "station.toml"
    p.write_text(text)
    return p


def test_the_example_configuration_loads_with_its_documented_values():
    cfg = load_station_config(EXAMPLE)
    assert cfg.broker.url == "mqtts://broker.archive.lan:8883" and cfg.broker.protocol == 5
    assert cfg.archive.path == Path("/var/lib/accessctl/station-archive.db")
    web = (cfg.web.host, cfg.web.port, cfg.web.https, cfg.web.timezone.key)
    assert web == ("127.0.0.1", 8080, False, "Asia/Shanghai")


def test_every_problem_is_reported_with_its_section_and_key_at_once(tmp_path):
    path = write(tmp_path, """
[broker]
url = "http://broker:80"
protocol = 4
colour = "red"
[archive]
path = ":memory:"
[web]
listen = "everywhere"
timezone = "Mars/Olympus"
certificate = "station.crt"
[extra]
""")
    with pytest.raises(ConfigError) as e:
        load_station_config(path)
    text = str(e.value)
    for where in ("[broker] url: 'http://broker:80'", "[broker] protocol: 4", "[broker] colour: is not a known setting",
                  "[archive] path: the archive must be a file on disk", "[web] listen: 'everywhere'",
                  "[web] timezone: 'Mars/Olympus'", "[web] certificate: certificate and key go together", "[extra]"):
        assert f"{path}: {where}" in text, where


def test_the_command_line_overrides_broker_archive_and_listener(tmp_path):
    cfg = with_overrides(load_station_config(EXAMPLE), broker="mqtt://127.0.0.1:1884", archive=str(tmp_path / "a.db"),
                         listen="[::1]:9443")
    assert (cfg.broker.url, cfg.archive.path, cfg.web.host, cfg.web.port) == (
        "mqtt://127.0.0.1:1884", tmp_path / "a.db", "::1", 9443)


def test_the_nodes_of_a_cluster_are_listed_in_the_file_or_on_the_command_line(tmp_path):
    nodes = ["mqtt://10.0.0.1:1883", "mqtt://10.0.0.2:1883", "mqtt://10.0.0.3:1883"]
    text = EXAMPLE.read_text().replace('url = "mqtts://broker.archive.lan:8883"', f"url = {nodes!r}".replace("'", '"'))
    cfg = load_station_config(write(tmp_path, text))
    assert (cfg.broker.url, cfg.broker.fallback_urls) == (nodes[0], tuple(nodes[1:]))
    cfg = with_overrides(load_station_config(EXAMPLE), broker="mqtt://127.0.0.1:1884, mqtt://127.0.0.1:1885")
    assert (cfg.broker.url, cfg.broker.fallback_urls) == ("mqtt://127.0.0.1:1884", ("mqtt://127.0.0.1:1885",))


@pytest.mark.parametrize("value, problem", [
    ('["mqtts://a:8883", "mqtt://b:1883"]', "mixes mqtt:// and mqtts://"),
    ('["mqtts://a:8883", 8883]', "must be a string or an array of strings"),
    ("[]", "must be a string or an array of strings"),
    ('["mqtts://a:8883", "ftp://b:21"]', "'ftp://b:21' is not like"),
])
def test_a_broken_list_of_nodes_is_named(tmp_path, value, problem):
    text = EXAMPLE.read_text().replace('url = "mqtts://broker.archive.lan:8883"', f"url = {value}")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"{path}: \\[broker\\] url: .*{problem}"):
        load_station_config(path)


def test_a_broker_list_on_the_command_line_may_not_mix_tls_and_plain(tmp_path):
    with pytest.raises(ConfigError, match="--broker .* mixes mqtt:// and mqtts://"):
        with_overrides(load_station_config(EXAMPLE), broker="mqtts://a:8883,mqtt://b:1883")


def test_a_postgresql_archive_is_taken_from_the_file_or_the_command_line(tmp_path):
    path = write(tmp_path, """
[broker]
url = "mqtt://127.0.0.1:1883"
[archive]
path = "postgresql://station:secret@db.archive.lan:5432/archive"
""")
    cfg = load_station_config(path)
    assert (cfg.archive.path, cfg.archive.url) == (None, "postgresql://station:secret@db.archive.lan:5432/archive")
    assert "secret" not in cfg.archive.where
    cfg = with_overrides(load_station_config(EXAMPLE), archive="postgresql://postgres@127.0.0.1:5433/a", protocol=311)
    url = "postgresql://postgres@127.0.0.1:5433/a"
    assert (cfg.archive.path, cfg.archive.url, cfg.broker.protocol) == (None, url, 311)


@pytest.mark.parametrize("option, value, message", [
    ("broker", "tcp://x:1", "--broker 'tcp://x:1'"), ("listen", "8080", "--listen: '8080'"),
    ("listen", "h:70000", "--listen: 'h:70000'"), ("archive", "postgresql://x y", "is not like postgresql://"),
    ("protocol", 4, "--protocol 4"),
])
def test_a_bad_override_is_a_clear_error(option, value, message):
    with pytest.raises(ConfigError, match=message):
        with_overrides(load_station_config(EXAMPLE), **{option: value})


def test_with_a_certificate_the_station_serves_https_and_its_session_cookie_is_secure(tmp_path):
    import signal
    import ssl
    import subprocess
    import sys
    import time
    import urllib.parse
    import urllib.request

    from tests.fixtures.station import PASSWORD, add_user_cli, free_port

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "web.key"),
                    "-out", str(tmp_path / "web.crt")], check=True, capture_output=True)
    port = free_port()
    config = write(tmp_path, f"""[broker]
url = "mqtt://127.0.0.1:{free_port()}"
beacon_interval_s = 0
[archive]
path = "archive.db"
[web]
listen = "127.0.0.1:{port}"
certificate = "web.crt"
key = "web.key"
""")
    assert add_user_cli(config, "olga", "operator").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "firmware_py.cli.main", "station", "serve", "--config", str(config)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(tmp_path / "web.crt"))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                opener.open(f"https://127.0.0.1:{port}/login", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the station did not serve HTTPS"
                time.sleep(0.1)
        body = urllib.parse.urlencode({"username": "olga", "password": PASSWORD}).encode()
        try:
            opener.open(urllib.request.Request(f"https://127.0.0.1:{port}/login", data=body), timeout=10)
            raise AssertionError("no redirect after logging in")
        except urllib.error.HTTPError as e:
            assert e.code == 303
            cookie = e.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_building_the_command_line_loads_neither_the_web_framework_nor_its_server():
    import subprocess
    import sys

    code = ("import sys; from firmware_py.cli.main import build_parser; "
            "build_parser().parse_args(['station', 'user', 'add', 'x', '--role', 'viewer']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'anyio')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
