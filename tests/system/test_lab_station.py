"""The lab station (simulator/lab_station.py) that the page's tests and the benchmarks start."""

from __future__ import annotations

import socket
import urllib.request

from simulator.lab_station import StationProcess, write_station_config


def test_a_station_whose_port_was_taken_meanwhile_moves_to_a_free_one(mosquitto_broker, tmp_path):
    # Another process holds the port chosen for the station before the station binds it, as an
    # outgoing connection given that port by the kernel once did in a clean-clone run.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_station_config(tmp_path / "station.toml", mosquitto_broker, tmp_path / "archive.db",
                                      port=port, client_id="station-lab-moves")
        station = StationProcess(config, port, tmp_path / "station.log").start()
        try:
            assert station.port != port and f'listen = "127.0.0.1:{station.port}"' in config.read_text()
            with urllib.request.urlopen(station.url + "/login", timeout=5) as page:
                assert page.status == 200
            assert b"address already in use" in (tmp_path / "station.log").read_bytes()
        finally:
            station.stop()
