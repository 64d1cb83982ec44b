"""What each finding is called and what to do about it, as message ids the pages, the CSV, the PDF and the e-mail
translate for their reader (gateway/i18n.py); and the fix a finding offers on the page."""

from __future__ import annotations

from gateway.books_check.findings import Finding, Kind
from gateway.i18n import N_, Message

TITLES: dict[Kind, Message] = {
    Kind.MISSING_DOCUMENT: N_("In the shop, not in Exact"),
    Kind.MISSING_CREDIT_DOCUMENT: N_("Credit order without its credit document"),
    Kind.DELETED_DOCUMENT: N_("Deleted in Exact after booking"),
    Kind.CHANGED_DOCUMENT: N_("Changed in Exact after booking"),
    Kind.AMOUNT_DIFFERENCE: N_("Amounts differ"),
    Kind.SKIPPED_ORDER: N_("Skipped, but in a selected status"),
    Kind.DOUBLE_DOCUMENT: N_("More than one document in Exact"),
    Kind.DOCUMENT_WITHOUT_ORDER: N_("In Exact, not in the shop this month"),
    Kind.WRONG_DOCUMENT: N_("Booked on another shop's document"),
    Kind.IGNORED: N_("Ignored by you"),
}

ADVICE: dict[Kind, Message] = {
    Kind.MISSING_DOCUMENT: N_("Book it: retry the order, or check why it did not reach the gateway."),
    Kind.MISSING_CREDIT_DOCUMENT: N_("Book the credit order, so the return is in the books too."),
    Kind.DELETED_DOCUMENT: N_("Book it again, unless it was deleted on purpose; then mark it reviewed."),
    Kind.CHANGED_DOCUMENT: N_("Someone edited the document in Exact; check the change and mark it reviewed."),
    Kind.AMOUNT_DIFFERENCE: N_("Compare the document in Exact with the order: a VAT code or an amount was changed."),
    Kind.SKIPPED_ORDER: N_("The order reached a selected status later; book it now."),
    Kind.DOUBLE_DOCUMENT: N_("Keep one document in Exact and delete the others."),
    Kind.DOCUMENT_WITHOUT_ORDER: N_("The order is not in the shop's list for this month; check it in the shop."),
    Kind.WRONG_DOCUMENT: N_("The order was matched to a document of another shop; retry it to book its own."),
    Kind.IGNORED: N_("Not booked, on purpose."),
}

# The one-click fix each finding offers (when the order has a row in the gateway): the history pages' retry and
# ignore, the books check's own "book again" for a deleted document, and "mark reviewed" for what only a person
# can judge.
RETRY, REBOOK, REVIEW, FETCH = "retry", "rebook", "review", "fetch"
_FIXES: dict[Kind, str] = {
    Kind.MISSING_DOCUMENT: RETRY,
    Kind.MISSING_CREDIT_DOCUMENT: RETRY,
    Kind.SKIPPED_ORDER: RETRY,
    Kind.WRONG_DOCUMENT: REVIEW,
    Kind.DELETED_DOCUMENT: REBOOK,
    Kind.CHANGED_DOCUMENT: REVIEW,
    Kind.AMOUNT_DIFFERENCE: REVIEW,
    Kind.DOUBLE_DOCUMENT: REVIEW,
    Kind.DOCUMENT_WITHOUT_ORDER: REVIEW,
}
RETRYABLE_STATES = ("failed", "retrying", "needs_attention", "needs_review", "skipped", "ignored")


def fix_of(finding: Finding) -> str:
    """ "retry", "rebook", "review" or "" (nothing to click: ignored orders)."""
    fix = _FIXES.get(finding.kind, "")
    if fix == RETRY and finding.order_sync_id is None and finding.shop_status is not None:
        return FETCH  # never reached the gateway: feed it to the notice pipeline, as the poller would
    if fix == RETRY and (finding.order_sync_id is None or finding.gateway_state not in RETRYABLE_STATES):
        return REVIEW  # nothing the gateway can retry (never arrived, or on its way): a person looks
    if fix == REBOOK and finding.order_sync_id is None:
        return REVIEW
    return fix
