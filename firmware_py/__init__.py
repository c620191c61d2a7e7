"""The venue access controller: policy, state machine, storage, MQTT and CLI.

The core modules (policy, working hours, events, controller) import no hardware
library; drivers implement the small interfaces in :mod:`firmware_py.core.ports`.
"""

__version__ = "0.1.0"
