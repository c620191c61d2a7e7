"""Authorised personnel as the policy sees them: plain, frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

ROLES = ("staff", "supervisor", "visitor", "inspector")
ESCORTING_ROLES = ("staff", "supervisor")  # may escort visitors and inspectors in
ESCORTED_ROLES = ("visitor", "inspector")  # enter only with an escort (two-person rule)
EMPLOYER_TYPES = ("own", "agency")  # own unit, or an outsourcing agency's worker
STATUSES = ("active", "revoked")


@dataclass(frozen=True)
class Person:
    """One row of the roster.

    The resident ID number is never held in clear: ``id_hash`` is the keyed
    HMAC-SHA-256 used for matching, ``id_masked`` (first 6 and last 4 kept)
    is for display.
    """

    person_id: str
    name: str
    role: str
    organisation: str
    employer_type: str
    id_hash: str | None
    id_masked: str | None
    badge_uids: tuple[str, ...]
    review_date: date | None  # political/background review (article 11)
    training_hours: float
    commitment_date: date | None  # confidentiality commitment signed
    valid_from: date
    valid_until: date  # inclusive: the whole day in the site's time zone
    schedule_group: str
    status: str = "active"
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    # Second factor (GB/T 37078 §6.3-6.4): slow salted hashes (core/pin.py), never the PINs; not public.
    pin_hash: str | None = field(default=None, repr=False)
    duress_pin_hash: str | None = field(default=None, repr=False)

    def public(self) -> dict:
        """What events and MQTT may carry about this person."""
        return {"person_id": self.person_id, "name": self.name, "role": self.role}


@dataclass(frozen=True)
class Credential:
    """What was presented at a reader, in the form that may leave the device.

    ``kind`` is ``resident_id`` or ``badge``; ``masked`` is the masked ID
    number or the badge UID; ``valid`` is False for an ID number whose
    check digit, region or birth date is impossible.
    """

    kind: str
    masked: str
    valid: bool = True

    def public(self) -> dict:
        return {"kind": self.kind, "masked": self.masked}
