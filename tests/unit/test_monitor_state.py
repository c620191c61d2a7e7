"""What the station's ingest says of its connection (its one MQTT loop): connected only while it listens."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from firmware_py.link.broker import BrokerSettings
from firmware_py.station.ingest.ingest import Ingest

OK = SimpleNamespace(is_failure=False)
REFUSED = SimpleNamespace(is_failure=True)


@pytest.fixture
def monitor(tmp_path):
    m = Ingest(BrokerSettings(url="mqtt://127.0.0.1:1883"), tmp_path / "archive.db", out=lambda line: None)
    yield m
    m.close()


def connect(m):
    m.loop._on_connect(SimpleNamespace(subscribe=lambda filters: None), None, None, OK, None)


def test_a_monitor_connected_but_not_yet_subscribed_is_not_connected(monitor):
    connect(monitor)
    assert not monitor.connected
    monitor.loop._on_subscribe(None, None, 1, [OK] * 4, None)
    assert monitor.connected


def test_a_refused_subscription_leaves_the_monitor_not_connected(monitor):
    connect(monitor)
    monitor.loop._on_subscribe(None, None, 1, [OK, REFUSED, OK, OK], None)
    assert not monitor.connected


def test_a_lost_connection_is_not_connected_until_subscribed_again(monitor):
    connect(monitor)
    monitor.loop._on_subscribe(None, None, 1, [OK] * 4, None)
    monitor.loop._on_disconnect(None, None, None, OK, None)
    connect(monitor)
    assert not monitor.connected
