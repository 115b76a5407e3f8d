"""What a reviewer relies on besides the chain itself: where an imported chain came from,
and the last integrity verdict computed for a chain (a cache, see coordination/integrity.py).

"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from coordination.schemas import FrameError


class ChainState(models.TextChoices):
    VERIFIED = "verified", "verified"
    BROKEN = "broken", "broken"
    NO_CHAIN = "no_chain", "no chain"


class TraceImport(models.Model):
    """A coordination brought in from a trace recorded elsewhere. Such a coordination is
    read-only: no agent appends to it, no operator takes it over. The verdict found in the
    file at import time is kept as found (a broken chain is imported broken, never repaired)."""

    class Kind(models.TextChoices):
        AUDIT_TRACE = "audit_trace", "LTP audit trace"
        RAW_FRAMES = "raw_frames", "raw frames"

    coordination = models.OneToOneField(
        "coordination.Coordination", on_delete=models.CASCADE, related_name="trace_import"
    )
    filename = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=20, choices=Kind)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    imported_at = models.DateTimeField(default=timezone.now)
    # The file's own verdict (verify_trace over the file as read), e.g. "broken at entry 1".
    state = models.CharField(max_length=10, choices=ChainState)
    broken_at = models.IntegerField(null=True, blank=True)
    why = models.TextField(blank=True)

    class Meta:
        permissions = [("import_trace", "Can import audit traces")]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=ChainState.values), name="trace_import_state_valid"
            ),
        ]


class ChainCheck(models.Model):
    """The integrity verdict last computed for a coordination's chain, and the chain head
    (seq, hash) it was computed for. A cache: coordination/integrity.py decides when it is
    still good enough to show."""

    coordination = models.OneToOneField(
        "coordination.Coordination", on_delete=models.CASCADE, related_name="chain_check"
    )
    head_seq = models.IntegerField()
    head_hash = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=10, choices=ChainState)
    entries = models.IntegerField(default=0)
    broken_at = models.IntegerField(null=True, blank=True)
    why = models.TextField(blank=True)
    checked_at = models.DateTimeField(default=timezone.now)
    # When the whole chain was last re-hashed (an incremental check only hashes new entries).
    full_check_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=ChainState.values), name="chain_check_state_valid"
            ),
        ]


def is_imported(coordination_pk: int) -> bool:
    return TraceImport.objects.filter(coordination_id=coordination_pk).exists()


def ensure_writable(coordination_pk: int, frame_id: str | None = None) -> None:
    """Refuse to add to an imported coordination: its chain is a record of someone else's
    incident, shown as found."""
    if is_imported(coordination_pk):
        raise FrameError(
            "read_only",
            "This coordination was imported from a trace and is read-only; "
            "send frames to another coordination.",
            frame_id,
        )
