"""How the supervisor's tools reach the venue broker: settings, credentials, the paho client.

The monitor (and any later supervisor tool) logs in with a supervisor account over TLS
with a client certificate and keeps a persistent session named by its client id, so the
broker queues QoS 1 events while it is away (``max_queued_messages`` in the broker config).
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_py.errors import AccessCtlError


class MonitorError(AccessCtlError):
    """The monitor cannot start: no broker, refused login, unreadable credentials."""


@dataclass(frozen=True)
class BrokerSettings:
    """How the monitor reaches the broker: ``url`` is ``mqtt://host:port`` or ``mqtts://host:port``."""

    url: str
    username: str = ""
    password: str = ""
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_verify: bool = True
    protocol: int = 5  # 5 or 311
    client_id: str = ""  # default: accessctl-monitor-HOSTNAME (the persistent session's name)
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400  # how long the broker queues events for an absent monitor

    @property
    def host(self) -> str:
        return _parse_url(self.url)[1]

    @property
    def port(self) -> int:
        return _parse_url(self.url)[2]

    @property
    def tls(self) -> bool:
        return _parse_url(self.url)[0] == "mqtts"

    @classmethod
    def from_mqtt_config(cls, mqtt_cfg, **overrides) -> BrokerSettings:
        """From a controller-style ``[mqtt]`` section (:class:`firmware_py.config.schema.MqttConfig`);
        ``overrides`` whose value is not None win (the command line's options)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        password = overrides.pop("password", None)
        if password is None:
            password = read_password(mqtt_cfg.password_file) if mqtt_cfg.password_file else ""
        settings = cls(url=mqtt_cfg.broker, username=mqtt_cfg.username, password=password,
                       ca_file=mqtt_cfg.ca_file, cert_file=mqtt_cfg.cert_file, key_file=mqtt_cfg.key_file,
                       tls_verify=mqtt_cfg.tls_verify, protocol=mqtt_cfg.protocol, keepalive_s=mqtt_cfg.keepalive_s)
        return replace(settings, **overrides)


def _parse_url(url: str) -> tuple[str, str, int]:
    m = re.fullmatch(r"(mqtts?)://([^/:\s]+):(\d{1,5})", url or "")
    if not m:
        raise MonitorError(f"broker {url!r} is not like mqtt://host:1883 or mqtts://host:8883")
    return m.group(1), m.group(2), int(m.group(3))


def read_password(path: str | Path) -> str:
    """The first line of a password file (as the controller's ``[mqtt] password_file``)."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise MonitorError(f"{path}: cannot read the MQTT password: {getattr(exc, 'strerror', None) or 'empty file'}") from None


def make_client(settings: BrokerSettings) -> mqtt.Client:
    """A paho-mqtt 2.x client for ``settings`` (TLS, credentials, persistent session), not connected."""
    _parse_url(settings.url)
    client_id = settings.client_id or f"accessctl-monitor-{socket.gethostname()}"
    v5 = settings.protocol == 5
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else False)
    if settings.tls:
        client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None,
                       certfile=str(settings.cert_file) if settings.cert_file else None,
                       keyfile=str(settings.key_file) if settings.key_file else None,
                       cert_reqs=ssl.CERT_REQUIRED if settings.tls_verify else ssl.CERT_NONE)
        if not settings.tls_verify:
            client.tls_insecure_set(True)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client
