"""How every client of the venue broker connects: the door's link, the station and monitor, the doctor.

One :class:`BrokerSettings` says where and as whom; :meth:`BrokerSettings.from_config` builds it from
a door's ``[mqtt]`` or a station's ``[broker]`` section (after the command line's ``--broker``, whose
rule is :func:`firmware_py.config.schema.broker_override`); :func:`read_password` is the one reading of
a password file; :func:`make_client` builds the paho client and :func:`connect` connects it.

Two kinds of broker account work the same way here. Mosquitto (``deploy/mosquitto``) takes the
account from the client certificate's CN and ignores any password; RabbitMQ (``deploy/rabbitmq``)
takes a username and password. A client sends whatever its settings hold: certificate files over
``mqtts://`` and a username with its password when one is set.

A supervisor tool keeps a persistent session named by its client id, so the broker queues QoS 1
events while it is away (``max_queued_messages`` in the broker config); the door starts clean. On
MQTT 5 the session lasts :data:`SESSION_EXPIRY_S` after a disconnect, as long as the shipped brokers
keep an absent session (Mosquitto's ``persistent_client_expiration``, RabbitMQ's
``mqtt.subscription_ttl``). The station names its session with an id nobody can guess
(:func:`session_client_id`): RabbitMQ lets any account connect with any client id, and a
connection with the station's id ends the station's.
Given the addresses of a cluster's nodes (``fallback_urls``), the client tries them in turn, so the
station goes on through another node when its own is lost (its session queue is the cluster's).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from firmware_py.config.schema import BROKER_URL, BROKER_URL_EXAMPLE
from firmware_py.errors import ConfigError

if TYPE_CHECKING:  # paho is imported only when a client is made
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

RECONNECT_S = (1, 30)  # paho's reconnect back-off: first and longest wait
SESSION_EXPIRY_S = 30 * 86400  # as deploy/mosquitto (persistent_client_expiration 30d) and deploy/rabbitmq keep it
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what every broker here takes as a client id


@dataclass(frozen=True)
class BrokerSettings:
    """Where a client connects and as whom: ``url`` is ``mqtt://host:port`` or ``mqtts://host:port``.

    ``username``/``password``: a RabbitMQ account (Mosquitto takes the account from the certificate).
    ``ca_file``: the site CA that signed the broker's certificate; ``cert_file``/``key_file``: this
    client's certificate (its CN is the Mosquitto account). ``tls_verify``: check the broker's
    certificate (off only in a lab). ``protocol``: 5 or 311. ``client_id``: the session's name.
    ``persistent_session``: the broker keeps the session and queues QoS 1 messages for
    ``session_expiry_s`` while the client is away (supervisor tools); the door starts clean.
    ``fallback_urls``: the other nodes of the same broker (a cluster), tried in turn after ``url``.
    """

    url: str
    username: str = ""
    password: str = ""
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_verify: bool = True
    protocol: int = 5  # 5 or 311
    client_id: str = ""
    keepalive_s: int = 30
    persistent_session: bool = True
    session_expiry_s: int = SESSION_EXPIRY_S  # how long the broker queues events for an absent supervisor tool
    fallback_urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for url in (self.url, *self.fallback_urls):
            parse_broker_url(url)

    @property
    def host(self) -> str:
        return parse_broker_url(self.url)[1]

    @property
    def port(self) -> int:
        return parse_broker_url(self.url)[2]

    @property
    def tls(self) -> bool:
        return parse_broker_url(self.url)[0] == "mqtts"

    @classmethod
    def from_config(cls, section, **overrides) -> BrokerSettings:
        """From a door's ``[mqtt]`` (:class:`~firmware_py.config.schema.MqttConfig`) or a station's
        ``[broker]`` (:class:`~firmware_py.station.config.BrokerConfig`) section, its password file read;
        ``overrides`` whose value is not None win (the command line's options)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        url = getattr(section, "url", None) or section.broker
        password = overrides.pop("password", None)
        if password is None:
            password = read_password(section.password_file) if section.password_file else ""
        settings = cls(url=url, username=section.username, password=password, ca_file=section.ca_file,
                       cert_file=section.cert_file, key_file=section.key_file, tls_verify=section.tls_verify,
                       protocol=section.protocol, client_id=section.client_id,
                       keepalive_s=getattr(section, "keepalive_s", cls.keepalive_s),
                       session_expiry_s=getattr(section, "session_expiry_s", cls.session_expiry_s),
                       fallback_urls=getattr(section, "fallback_urls", ()))
        return replace(settings, **overrides)


def parse_broker_url(url: str) -> tuple[str, str, int]:
    """``mqtts://broker:8883`` → ``("mqtts", "broker", 8883)``; :class:`ConfigError` for anything else."""
    m = BROKER_URL.fullmatch(url or "")
    if not m:
        raise ConfigError(f"broker {url!r} is not like {BROKER_URL_EXAMPLE}")
    return m.group(1), m.group(2), int(m.group(3))


def read_password(path: str | Path) -> str:
    """The MQTT password: the first line of ``path`` without its line ending (``[mqtt] password_file``,
    ``[broker] password_file``, ``--password-file``); :class:`ConfigError` saying why it cannot be had."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{path}: cannot read the MQTT password: {why}; the file must be readable by "
                          "this user (0600, owned by the service user)") from None
    if not lines or not lines[0]:
        raise ConfigError(f"{path}: no MQTT password on its first line; write the account's password there "
                          "(deploy/rabbitmq/add-door.sh --password-out does)")
    return lines[0]


def session_client_id(path: str | Path, *, prefix: str = "accessctl-station-",
                      where: str = "[broker] client_id_file") -> str:
    """The client id kept in ``path``: ``prefix`` and 128 random bits, made the first time (the file
    mode 0600) and read every time after, so the broker's session outlives a restart.

    :class:`ConfigError` when the file cannot be read or written, or holds no usable client id;
    ``where`` names the setting that moves the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the MQTT client id kept there: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    if text is not None:
        if not CLIENT_ID.fullmatch(text):
            raise ConfigError(f"{path}: {text[:40]!r} is not a client id (letters, digits, - and _, at most 128); "
                              "delete the file to make a new one (the broker's old session then expires unread)")
        return text
    client_id = prefix + secrets.token_hex(16)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(client_id + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot keep the MQTT client id there: {exc.strerror or exc} (set "
                          f"{where} to a file that may be written)") from None
    log.warning("made the MQTT client id %s… (the broker session's name), kept in %s", prefix, path)
    return client_id


def make_client(settings: BrokerSettings) -> mqtt.Client:
    """A paho-mqtt 2.x client for ``settings`` (TLS, certificate, account, session), not connected.

    :class:`ConfigError` when the CA, certificate or key file cannot be used.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    if settings.persistent_session and not settings.client_id:
        raise ConfigError(f"{settings.url}: a persistent session needs a client id (its name at the broker)")
    v5 = settings.protocol == 5
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                         clean_session=None if v5 else not settings.persistent_session)
    if settings.tls:
        try:
            client.tls_set(ca_certs=_name(settings.ca_file), certfile=_name(settings.cert_file),
                           keyfile=_name(settings.key_file),
                           cert_reqs=ssl.CERT_REQUIRED if settings.tls_verify else ssl.CERT_NONE)
        except (OSError, ValueError, ssl.SSLError) as exc:
            files = ", ".join(str(f) for f in (settings.ca_file, settings.cert_file, settings.key_file) if f)
            raise ConfigError(f"ca_file/cert_file/key_file ({files or 'none set'}) cannot be used: {exc}; copy this "
                              "client's files from the certificate machine (deploy/mosquitto/README.md)") from None
        if not settings.tls_verify:
            client.tls_insecure_set(True)
    if settings.username:
        client.username_pw_set(settings.username, settings.password or None)
    client.reconnect_delay_set(min_delay=RECONNECT_S[0], max_delay=RECONNECT_S[1])
    if settings.fallback_urls:
        _take_turns(client, (settings.url, *settings.fallback_urls))
    return client


def _take_turns(client: mqtt.Client, urls: tuple[str, ...]) -> None:
    """Each connection attempt after the first goes to the next of ``urls`` (the nodes of one broker).

    paho has no public way to change the address between its own reconnects (its ``host`` and
    ``port`` setters refuse while its loop reconnects, in ``on_pre_connect`` too), so the address is
    set on the fields its ``reconnect()`` reads, in the callback it calls just before opening the socket.
    """
    addresses = [(url, *parse_broker_url(url)[1:]) for url in urls]
    attempts = itertools.count()

    def before_connecting(client, userdata) -> None:
        url, host, port = addresses[next(attempts) % len(addresses)]
        client._host, client._port = host, port
        log.debug("connecting to %s", url)

    client.on_pre_connect = before_connecting


def connect(client: mqtt.Client, settings: BrokerSettings, *, background: bool = True) -> None:
    """Connect ``client`` as ``settings`` say (a persistent session asks the broker to keep it).

    ``background``: return at once and let paho's loop connect (and reconnect); otherwise connect now
    and raise what connecting raises (refused, unresolvable, TLS, timeout).
    """
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    kwargs: dict = {}
    if settings.protocol == 5:
        props = Properties(PacketTypes.CONNECT)
        if settings.persistent_session:
            props.SessionExpiryInterval = settings.session_expiry_s
        kwargs = {"clean_start": not settings.persistent_session, "properties": props}
    if background:
        client.connect_async(settings.host, settings.port, settings.keepalive_s, **kwargs)
    else:
        client.connect(settings.host, settings.port, settings.keepalive_s, **kwargs)


def _name(path: Path | None) -> str | None:
    return str(path) if path is not None else None
