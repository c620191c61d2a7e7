"""Error types whose messages a technician can act on."""


class AccessCtlError(Exception):
    """Base class: the message is shown to the user as it is."""


class ConfigError(AccessCtlError):
    """The configuration file is wrong: the message names file, section, key and value."""


class RosterError(AccessCtlError):
    """A roster change was refused; nothing was written."""


class IdNumberError(ValueError):
    """A resident ID number is malformed (length, region, birth date or check digit)."""


class StoreError(AccessCtlError):
    """The event store cannot be opened or written."""


class SecretError(StoreError):
    """The device secret file cannot be created, or exists but is not safe to use."""
