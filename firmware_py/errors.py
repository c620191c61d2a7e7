"""Every error type a user of ``accessctl`` or ``accessctl-sim`` can see, in one place.

Each message names what is wrong and what to do about it; the command-line tools print it as it
is and exit with status 2 (:func:`firmware_py.error_exit.run_reporting_errors`). Errors that are not
subclasses of :class:`AccessCtlError` are programming errors or checks of untrusted input that
their callers turn into one of these.
"""


class AccessCtlError(Exception):
    """Base class: the message is shown to the user as it is."""


class ConfigError(AccessCtlError):
    """The configuration file is wrong: the message names file, section, key and value."""


class RosterError(AccessCtlError):
    """A roster change was refused; nothing was written."""


class IdNumberError(ValueError):
    """A resident ID number is malformed (length, region, birth date or check digit)."""


class BundleError(AccessCtlError):
    """A roster bundle (or one of its messages) was refused; ``reason`` is one word for the
    ``roster_rejected`` event (``bad_signature``, ``old_version``, ``other_site``, ``other_key``,
    ``expired``, ``malformed``, ``too_large``), the message says what exactly is wrong."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class StoreError(AccessCtlError):
    """The event store cannot be opened or written."""


class SecretError(StoreError):
    """The device secret file cannot be created, or exists but is not safe to use."""


class MonitorError(AccessCtlError):
    """The monitor or the station cannot reach the broker: no broker, refused login, unreadable credentials."""


class AccountError(AccessCtlError):
    """A station account cannot be made as asked (name taken, bad role, weak password)."""


class AlarmError(AccessCtlError):
    """A station alarm cannot be acknowledged as asked (no such alarm, already acknowledged)."""


class ScenarioError(AccessCtlError):
    """A simulator scenario file is wrong; the message names the file and step."""


class DemoError(AccessCtlError):
    """``accessctl-sim demo`` cannot start or keep running one of its parts (broker, station, door)."""
