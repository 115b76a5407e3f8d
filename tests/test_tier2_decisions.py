"""An escalation that moved to the admins' tier at its deadline is theirs to decide."""

from coordination.decisions import APPROVE, decide
from coordination.models import Escalation, EscalationStatus, Frame
from tests.factories import seed


def test_approver_cannot_decide_an_escalation_moved_to_the_admins(agents, operators):
    escalation = seed(agents)
    Escalation.objects.filter(pk=escalation.pk).update(tier=2)
    frames_before = Frame.objects.count()

    result = decide(escalation.pk, operators["alice"], APPROVE, "go ahead")

    assert not result.decided
    assert "only an admin can decide it" in result.message
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.PENDING
    assert Frame.objects.count() == frames_before  # no decision frame


def test_admin_decides_an_escalation_moved_to_the_admins(agents, operators):
    escalation = seed(agents)
    Escalation.objects.filter(pk=escalation.pk).update(tier=2)

    result = decide(escalation.pk, operators["ada"], APPROVE, "go ahead")

    assert result.decided
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.APPROVED
    assert escalation.decided_by_name == "ada"
    assert escalation.decision_frame.sender == "human:ada"
