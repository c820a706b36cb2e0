"""The encrypted user profile: conversations, settings, consent, audit trail and blobs.

``Profile.open()`` unlocks (or creates) the profile; every user value is Fernet-encrypted before it
reaches the SQLite file. See README "How the profile protects your data".
"""

from tara_desktop.profile.audit import AuditEntry, AuditReport
from tara_desktop.profile.consent import CONSENT_KINDS, ConsentState
from tara_desktop.profile.errors import (
    ConsentError,
    ProfileError,
    ProfileLocked,
    RecordDamaged,
    WeakPassphrase,
    WrongPassphrase,
)
from tara_desktop.profile.profile import Profile
from tara_desktop.profile.store import BlobInfo, ConversationInfo, Message, ProfileStore

__all__ = [
    "CONSENT_KINDS",
    "AuditEntry",
    "AuditReport",
    "BlobInfo",
    "ConsentError",
    "ConsentState",
    "ConversationInfo",
    "Message",
    "Profile",
    "ProfileError",
    "ProfileLocked",
    "ProfileStore",
    "RecordDamaged",
    "WeakPassphrase",
    "WrongPassphrase",
]
