"""The nurture dispatcher: runs the due steps of enrolments and sends their mail.

Beat calls `nurture_dispatch` every few seconds; it finds the tenants with due work
and queues one `nurture_dispatch_tenant` per tenant, which works through that
tenant's due enrolments a batch at a time:

1. Claim (one statement, committed): the batch's due enrolments are taken with
   `FOR UPDATE SKIP LOCKED` and their due time pushed out by a lease, so parallel
   workers never take the same enrolment, and one whose worker died comes back when
   the lease ends.
2. Steps that send nothing (wait, branch, task, field/stage change, enrol, end) run
   in memory; a send step checks consent and suppression, quiet hours and the
   tenant's rate limits. A step that writes (task, field/stage change, enrol) runs in
   a savepoint and cannot fail the batch: refused by the service it calls (a
   ValidationError: enrolling into a draft sequence, a value the field does not
   take), it does nothing for that enrolment, which goes on (logged, and an
   enrolment.step_skipped audit entry with the reason); failing otherwise (a bug, the
   database), that enrolment alone tries the step again later.
3. The outgoing-message rows of the batch are written (committed) *before* any
   mail goes out, one per (enrolment, step). A row already there is a retry: sent
   means "advance without sending"; queued/sending whose lease ended means the
   previous worker died before knowing the outcome, so it is sent again with the
   same Message-ID (receivers that dedupe on it show one).
   The same statement re-reads the enrolments: one paused, removed or exited by
   someone else since the claim (or claimed again by another worker after its lease
   ended) gets no mail.
4. Each mail is sent and its row marked sent in its own short transaction at once,
   so a worker killed mid-batch leaves only the mail it was in the middle of in
   doubt. Transient SMTP errors (4xx, connection trouble) retry with exponential
   backoff; permanent ones (5xx, or a mail provider refusing the recipients or
   answering 4xx) mark the message bounced, suppress the address, record an
   email_bounced activity and end the enrolment.
5. The enrolments' new positions and due times are written in one statement, only to
   rows still active and still holding this run's lease (the due time the claim set):
   a pause, removal, reply, unsubscribe or exit made meanwhile by another transaction
   wins over the batch.
"""

import datetime
import json
import logging
import smtplib
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings as django_settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Tenant
from accounts.redis import redis_client
from accounts.services import SYSTEM, audit_record
from accounts.tenancy import tenant_scope, unscoped
from campaigns.models import (
    EmailTemplate,
    Enrolment,
    OutgoingMessage,
    SenderIdentity,
    SendingSettings,
    Sequence,
    SequenceStep,
    StepKind,
)
from campaigns.nurture.sending import build_email, may_receive_marketing
from campaigns.nurture.services import BRANCH_LEAD_FIELDS, enrol_leads, lead_exit_sequences
from campaigns.nurture.timing import in_quiet_hours, quiet_hours_end, wait_until
from leads.models import Activity, ActivityType, Channel, Lead, LeadScore, Suppression

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
LEASE = datetime.timedelta(minutes=2)
MAX_ATTEMPTS = 8
BACKOFF_BASE = datetime.timedelta(seconds=30)
MAX_STEPS_PER_RUN = 50  # branches only go forward, so a run always ends; this is a guard
STEP_RETRY = datetime.timedelta(minutes=15)  # an enrolment whose step failed unexpectedly

State = Enrolment.State
Exit = Enrolment.ExitReason
Status = OutgoingMessage.Status


def backoff(attempts: int) -> datetime.timedelta:
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), datetime.timedelta(hours=6))


def tenants_with_due_work(now: datetime.datetime | None = None) -> list[int]:
    """Platform job: one index probe per tenant (enrolment_due_idx leads with tenant)."""
    now = now or timezone.now()
    with unscoped("nurture dispatch: find tenants with due steps"), connection.cursor() as cur:
        cur.execute(
            f"""
            SELECT t.id FROM {Tenant._meta.db_table} t
            WHERE EXISTS (
                SELECT 1 FROM {Enrolment._meta.db_table} e
                WHERE e.tenant_id = t.id AND e.state = 'active' AND e.next_due_at <= %s)
            ORDER BY t.id
            """,
            [now],
        )
        return [row[0] for row in cur.fetchall()]


def lease_of(now: datetime.datetime) -> datetime.datetime:
    """The due time a claim at `now` gives its enrolments: it marks them as this run's
    until the run writes them back (or the lease ends and another worker takes them)."""
    return now + LEASE


def claim(tenant_id: int, now: datetime.datetime, limit: int = BATCH_SIZE) -> list[Enrolment]:
    """Take up to `limit` due enrolments of the tenant for this worker (committed)."""
    table = Enrolment._meta.db_table
    with tenant_scope(tenant_id), connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} e SET next_due_at = %(lease)s
            WHERE e.id IN (
                SELECT id FROM {table}
                WHERE tenant_id = %(tenant)s AND state = 'active' AND next_due_at <= %(now)s
                ORDER BY next_due_at
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED)
            RETURNING e.id, e.lead_id, e.sequence_id, e.version, e.step_order, e.enrolled_at
            """,
            {"tenant": tenant_id, "now": now, "lease": lease_of(now), "limit": limit},
        )
        rows = cursor.fetchall()
    return [
        Enrolment(
            id=row[0],
            tenant_id=tenant_id,
            lead_id=row[1],
            sequence_id=row[2],
            version=row[3],
            step_order=row[4],
            enrolled_at=row[5],
            state=State.ACTIVE,
            next_due_at=now,
        )
        for row in rows
    ]


@dataclass
class Batch:
    tenant: Tenant
    now: datetime.datetime
    settings: SendingSettings
    leads: dict[int, Lead]
    steps: dict[tuple[int, int], list[SequenceStep]]
    sequences: dict[int, Sequence]
    templates: dict[int, EmailTemplate]
    senders: dict[int, SenderIdentity]
    suppressed: set[str]
    scores: dict[int, int]
    # The "opened/clicked the previous email" branches: each enrolment's sent mails by
    # step order, and the (message, activity type) pairs tracking recorded for them.
    mails: dict[int, dict[int, int]]  # enrolment id -> {step order: message id}
    tracked: set[tuple[int, str]]
    # The "visited a page" / "attended a webinar" branches: the leads' page views and
    # webinar attendances since the batch's earliest enrolment (lead id -> rows).
    visits: dict[int, list[tuple[datetime.datetime, str]]] = field(default_factory=dict)
    webinars: dict[int, list[datetime.datetime]] = field(default_factory=dict)
    to_send: list[tuple[Enrolment, SequenceStep]] = field(default_factory=list)
    report: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.report[key] = self.report.get(key, 0) + n

    @property
    def lease(self) -> datetime.datetime:
        """The claim's mark on the batch's enrolments (see lease_of)."""
        return lease_of(self.now)


def _load(tenant_id: int, enrolments: list[Enrolment], now) -> Batch:
    lead_ids = {e.lead_id for e in enrolments}
    with tenant_scope(tenant_id):
        tenant = Tenant.objects.get(pk=tenant_id)
        leads = Lead.objects.select_related("company", "owner").in_bulk(lead_ids)
        sequences = Sequence.objects.in_bulk({e.sequence_id for e in enrolments})
        steps: dict[tuple[int, int], list[SequenceStep]] = {}
        versions = {(e.sequence_id, e.version) for e in enrolments}
        for step in SequenceStep.objects.filter(
            sequence_id__in={s for s, _ in versions}, version__in={v for _, v in versions}
        ).order_by("order"):
            steps.setdefault((step.sequence_id, step.version), []).append(step)
        template_ids = {s.template_id for group in steps.values() for s in group if s.template_id}
        templates = EmailTemplate.objects.in_bulk(template_ids)
        senders = SenderIdentity.objects.in_bulk(
            {s.sender_id for s in sequences.values() if s.sender_id}
        )
        emails = {lead.email.lower() for lead in leads.values() if lead.email}
        suppressed = set(
            Suppression.objects.filter(email__in=emails).values_list("email", flat=True)
        )
        settings = SendingSettings.objects.first() or SendingSettings(tenant_id=tenant_id)
        has_branch = any(s.kind == StepKind.BRANCH for group in steps.values() for s in group)
        scores: dict[int, int] = {}
        mails: dict[int, dict[int, int]] = {}
        tracked: set[tuple[int, str]] = set()
        if has_branch:
            scores = dict(
                LeadScore.objects.filter(lead_id__in=lead_ids, model__is_primary=True).values_list(
                    "lead_id", "total"
                )
            )
        conditions = {
            (s.config.get("condition") or {}).get("type")
            for group in steps.values()
            for s in group
            if s.kind == StepKind.BRANCH
        }
        if conditions & TRACKED_CONDITIONS.keys():
            mails, tracked = _tracking(lead_ids, enrolments)
        visits, webinars = _behaviour(lead_ids, enrolments, conditions)
    return Batch(
        tenant=tenant,
        now=now,
        settings=settings,
        leads=leads,
        steps=steps,
        sequences=sequences,
        templates=templates,
        senders=senders,
        suppressed=suppressed,
        scores=scores,
        mails=mails,
        tracked=tracked,
        visits=visits,
        webinars=webinars,
    )


TRACKED_CONDITIONS = {
    "opened_previous": ActivityType.EMAIL_OPENED,
    "clicked_previous": ActivityType.EMAIL_CLICKED,
}


def _tracking(
    lead_ids: set[int], enrolments: list[Enrolment]
) -> tuple[dict[int, dict[int, int]], set[tuple[int, str]]]:
    """The batch's sent mails (per enrolment, by step order) and the opens/clicks that
    tracking recorded for those very mails (the activity's message_id)."""
    mails: dict[int, dict[int, int]] = {}
    for enrolment_id, order, message_id in OutgoingMessage.objects.filter(
        enrolment_id__in=[e.id for e in enrolments], status=Status.SENT
    ).values_list("enrolment_id", "step__order", "id"):
        mails.setdefault(enrolment_id, {})[order] = message_id
    message_ids = [m for by_order in mails.values() for m in by_order.values()]
    if not message_ids:
        return mails, set()
    tracked = {
        (int(message_id), kind)
        for message_id, kind in Activity.objects.filter(
            lead_id__in=lead_ids,
            type__in=list(TRACKED_CONDITIONS.values()),
            occurred_at__gte=min(e.enrolled_at for e in enrolments),
            properties__message_id__in=message_ids,
        ).values_list("properties__message_id", "type")
        if isinstance(message_id, int)
    }
    return mails, tracked


def _behaviour(
    lead_ids: set[int], enrolments: list[Enrolment], conditions: set
) -> tuple[dict[int, list[tuple[datetime.datetime, str]]], dict[int, list[datetime.datetime]]]:
    """Page views (time, URL) and webinar attendances (time) of the batch's leads since
    its earliest enrolment, read once for the batch when a branch asks for them."""
    types = []
    if "visited_page" in conditions:
        types.append(ActivityType.PAGE_VIEW)
    if "attended_webinar" in conditions:
        types.append(ActivityType.WEBINAR_ATTENDANCE)
    visits: dict[int, list[tuple[datetime.datetime, str]]] = {}
    webinars: dict[int, list[datetime.datetime]] = {}
    if not types:
        return visits, webinars
    for lead_id, kind, at, url in Activity.objects.filter(
        lead_id__in=lead_ids,
        type__in=types,
        occurred_at__gte=min(e.enrolled_at for e in enrolments),
    ).values_list("lead_id", "type", "occurred_at", "properties__url"):
        if kind == ActivityType.PAGE_VIEW:
            visits.setdefault(lead_id, []).append((at, url if isinstance(url, str) else ""))
        else:
            webinars.setdefault(lead_id, []).append(at)
    return visits, webinars


def _finish(e: Enrolment, batch: Batch, state: str, reason: str = "") -> None:
    e.state, e.exit_reason, e.finished_at, e.next_due_at = state, reason, batch.now, None
    batch.count(f"{state}:{reason}" if reason else state)


def _branch(e: Enrolment, lead: Lead, condition: dict, batch: Batch) -> bool:
    kind = condition.get("type")
    if kind == "score_at_least":
        try:
            threshold = int(condition.get("value", 0))
        except (TypeError, ValueError):
            return False  # not a number: never reached (the builder only saves numbers)
        return batch.scores.get(lead.id, 0) >= threshold
    if kind == "stage_is":
        return lead.lifecycle_stage == condition.get("value")
    if kind == "field_equals":
        name = condition.get("field")
        if name in BRANCH_LEAD_FIELDS:
            return getattr(lead, name) == condition.get("value")
        return (lead.custom_fields or {}).get(name) == condition.get("value")
    if kind in TRACKED_CONDITIONS:
        # The previous email of this enrolment: the mail of the last send step before
        # this branch (branches only go forward, so the one it passed most recently).
        # An open of another mail, of this sequence or any other, does not count.
        sent = batch.mails.get(e.id, {})
        earlier = [order for order in sent if order < e.step_order]
        if not earlier:
            return False
        return (sent[max(earlier)], TRACKED_CONDITIONS[kind]) in batch.tracked
    if kind == "visited_page":
        # A page view since this enrolment whose address contains the value (any case).
        part = str(condition.get("value") or "").lower()
        return bool(part) and any(
            at >= e.enrolled_at and part in url.lower() for at, url in batch.visits.get(lead.id, [])
        )
    if kind == "attended_webinar":
        return any(at >= e.enrolled_at for at in batch.webinars.get(lead.id, []))
    return False


ACTIONS = frozenset({StepKind.CREATE_TASK, StepKind.CHANGE_FIELD, StepKind.ENROL})


def _run(e: Enrolment, batch: Batch, *, send_now: bool = True) -> None:
    """Advance one enrolment over the steps that send nothing; stop at a send step
    (queued in batch.to_send), a wait, or the end. With send_now=False, right after a
    mail went out, it also stops before a step that writes (task, field/stage change,
    enrol) or sends: due now instead, the next claim runs it. An error stays with
    this enrolment (see the module docstring, 2)."""
    try:
        _advance(e, batch, send_now=send_now)
    except Exception:
        logger.exception("nurture enrolment %s: step %s failed", e.id, e.step_order)
        e.next_due_at = batch.now + STEP_RETRY
        batch.count("step_error")


def _advance(e: Enrolment, batch: Batch, *, send_now: bool) -> None:
    steps = batch.steps.get((e.sequence_id, e.version), [])
    lead = batch.leads.get(e.lead_id)
    if lead is None:
        return _finish(e, batch, State.EXITED, Exit.REMOVED)
    for _ in range(MAX_STEPS_PER_RUN):
        if e.step_order >= len(steps):
            return _finish(e, batch, State.COMPLETED)
        step = steps[e.step_order]
        if step.kind == StepKind.SEND_EMAIL:
            if not send_now:
                e.next_due_at = batch.now
                return None
            if not may_receive_marketing(lead, batch.suppressed):
                return _finish(e, batch, State.EXITED, Exit.NO_CONSENT)
            settings = batch.settings
            tz = batch.tenant.time_zone
            if in_quiet_hours(batch.now, settings.quiet_start, settings.quiet_end, tz):
                e.next_due_at = quiet_hours_end(
                    batch.now, settings.quiet_start, settings.quiet_end, tz
                )
                return batch.count("quiet_hours")
            batch.to_send.append((e, step))
            return None
        if step.kind == StepKind.WAIT:
            e.step_order += 1
            e.next_due_at = wait_until(batch.now, step.config, batch.tenant.time_zone)
            return None
        if step.kind == StepKind.BRANCH:
            taken = _branch(e, lead, step.config.get("condition", {}), batch)
            e.step_order = step.config["then"] if taken else step.config["else"]
            continue
        if step.kind == StepKind.END:
            return _finish(e, batch, State.COMPLETED)
        if step.kind in ACTIONS:
            if not send_now:
                # Right after a mail: the step that writes runs from the next claim,
                # which sees a pause, removal or exit made while the batch was sending.
                e.next_due_at = batch.now
                return None
            try:
                # Its own savepoint: whatever fails in it, the batch's transaction
                # (and the other enrolments' steps in it) stays usable.
                with transaction.atomic():
                    _act(e, lead, step, batch)
            except ValidationError as exc:
                _skip(e, step, batch, exc)
        e.step_order += 1
    e.next_due_at = batch.now  # a guard only: the rest on the next run
    return None


def _act(e: Enrolment, lead: Lead, step: SequenceStep, batch: Batch) -> None:
    """A step that writes: a task request, a field or stage change, an enrolment."""
    from accounts import events
    from leads.services import lead_change_stage, lead_update

    if step.kind == StepKind.CREATE_TASK:
        # pipeline owns tasks; it learns of the request through the outbox.
        events.emit(
            "nurture.task_requested",
            tenant_id=e.tenant_id,
            payload={
                "v": 1,
                "lead_id": lead.id,
                "owner_id": lead.owner_id,
                "title": step.config.get("title", ""),
                "due_in_days": step.config.get("due_in_days"),
                "requested_at": batch.now.isoformat(),
                "sequence_id": e.sequence_id,
                "enrolment_id": e.id,
                # With the enrolment, the key that makes the step's task once.
                "step_id": step.id,
            },
        )
    elif step.kind == StepKind.CHANGE_FIELD:
        if "stage" in step.config:
            lead_change_stage(
                lead=lead,
                to_stage=step.config["stage"],
                origin=SYSTEM,
                channel=Channel.SYSTEM,
                reason=f"sequence:{e.sequence_id}",
            )
        else:
            lead_update(
                lead=lead,
                fields={step.config["field"]: step.config["value"]},
                origin=SYSTEM,
                channel=Channel.SYSTEM,
            )
    elif step.kind == StepKind.ENROL:
        # A draft target (or one deleted since) is refused with a ValidationError; a
        # paused one takes the lead paused, as enrolling by hand does.
        enrol_leads(
            tenant_id=e.tenant_id,
            sequence_id=step.config["sequence_id"],
            lead_ids=[lead.id],
            source=Enrolment.Source.SEQUENCE,
        )


def _skip(e: Enrolment, step: SequenceStep, batch: Batch, exc: ValidationError) -> None:
    """A step its service refused does nothing for this enrolment, which goes on; the
    reason is logged and kept in the audit log against the enrolment."""
    reason = " ".join(exc.messages)[:500]
    logger.warning(
        "nurture enrolment %s: step %s (%s) skipped: %s", e.id, step.order, step.kind, reason
    )
    audit_record(
        tenant_id=e.tenant_id,
        origin=SYSTEM,
        action="enrolment.step_skipped",
        target=e,
        metadata={
            "sequence_id": e.sequence_id,
            "version": e.version,
            "step": step.order,
            "kind": str(step.kind),
            "reason": reason,
        },
    )
    batch.count("step_skipped")


def _rate_grant(
    tenant_id: int, settings: SendingSettings, wanted: int, now, time_zone: str = "UTC"
) -> int:
    """How many of `wanted` mails the tenant's per-minute and per-day limits allow now
    (Redis counters; without Redis, no limit is kept). The day is the tenant's local
    day (its time zone): a Tokyo tenant's allowance starts again at midnight in Tokyo,
    not at 09:00 there (midnight UTC)."""
    client = redis_client()
    if client is None or wanted == 0:
        return wanted
    minute = int(now.timestamp() // 60)
    day = now.astimezone(ZoneInfo(time_zone)).date().isoformat()
    keys = [
        (f"nurture:rate:{tenant_id}:m:{minute}", settings.per_minute, 120),
        (f"nurture:rate:{tenant_id}:d:{day}", settings.per_day, 90_000),
    ]
    granted = wanted
    pipe = client.pipeline()
    for key, _limit, ttl in keys:
        pipe.incrby(key, wanted)
        pipe.expire(key, ttl)
    totals = pipe.execute()[::2]
    for (_key, limit, _ttl), total in zip(keys, totals, strict=True):
        granted = min(granted, max(0, limit - (total - wanted)))
    if granted < wanted:
        pipe = client.pipeline()
        for key, _limit, _ttl in keys:
            pipe.decrby(key, wanted - granted)
        pipe.execute()
    return granted


def _write_rows(tenant_id: int, batch: Batch) -> dict[int, tuple[int | None, str]]:
    """INSERT the batch's outgoing rows (or re-lease in-doubt ones whose lease ended);
    returns enrolment id -> (row id, "send" | "sent" | "busy"), or (None, "stopped")
    for an enrolment no longer active under this run's lease (paused, removed, exited
    by another transaction since the claim): it gets no row and no mail. One
    statement: the enrolments are re-read in it, not once per mail."""
    table = OutgoingMessage._meta.db_table
    pairs = [(e.id, step.id, batch.leads[e.lead_id].email) for e, step in batch.to_send]
    result: dict[int, tuple[int | None, str]] = {}
    with tenant_scope(tenant_id), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH live AS (
                SELECT e.id, e.lead_id FROM {Enrolment._meta.db_table} e
                WHERE e.tenant_id = %(tenant)s AND e.id = ANY(%(enrolments)s::bigint[])
                  AND e.state = 'active' AND e.next_due_at = %(lease)s
            ), written AS (
                INSERT INTO {table} AS o
                    (tenant_id, enrolment_id, step_id, lead_id, to_email, subject, status,
                     attempts, next_attempt_at, provider_message_id, raw_headers, error,
                     created_at)
                SELECT %(tenant)s, p.enrolment_id, p.step_id, live.lead_id, p.email, '',
                       'sending', 1, %(lease)s, '', '{{}}'::jsonb, '', %(now)s
                FROM unnest(%(enrolments)s::bigint[], %(steps)s::bigint[], %(emails)s::text[])
                     AS p(enrolment_id, step_id, email)
                JOIN live ON live.id = p.enrolment_id
                ON CONFLICT (tenant_id, enrolment_id, step_id) DO UPDATE
                    SET attempts = o.attempts + 1, next_attempt_at = EXCLUDED.next_attempt_at,
                        status = 'sending'
                    WHERE o.status IN ('queued', 'sending') AND o.next_attempt_at <= %(now)s
                RETURNING o.enrolment_id, o.id
            )
            SELECT live.id, written.id FROM live
            LEFT JOIN written ON written.enrolment_id = live.id
            """,
            {
                "tenant": tenant_id,
                # The claim's lease is also the new rows' (both end at now + LEASE).
                "lease": batch.lease,
                "now": batch.now,
                "enrolments": [p[0] for p in pairs],
                "steps": [p[1] for p in pairs],
                "emails": [p[2] for p in pairs],
            },
        )
        live = set()
        for enrolment_id, row_id in cursor.fetchall():
            live.add(enrolment_id)
            if row_id is not None:
                result[enrolment_id] = (row_id, "send")
        for enrolment_id, _step, _email in pairs:
            if enrolment_id not in live:
                result[enrolment_id] = (None, "stopped")
        missing = {(p[0], p[1]) for p in pairs if p[0] not in result}
        if missing:
            for enrolment_id, step_id, row_id, status in OutgoingMessage.objects.filter(
                enrolment_id__in={p[0] for p in missing}, step_id__in={p[1] for p in missing}
            ).values_list("enrolment_id", "step_id", "id", "status"):
                if (enrolment_id, step_id) not in missing:
                    continue  # the enrolment's row of another step (the filter is a grid)
                done = status in (Status.SENT, Status.BOUNCED, Status.FAILED)
                result[enrolment_id] = (row_id, "sent" if done else "busy")
    return result


def _mark_sent(tenant_id: int, row_id: int, built) -> None:
    """The row of a mail just sent, in a transaction of its own. Committed without
    waiting for the WAL flush (synchronous_commit off, this transaction only): a
    killed worker loses nothing by it; only a crash of PostgreSQL itself within
    a fraction of a second could drop the mark, and the mail would go out again with
    the same Message-ID. Waiting for the flush would cost more than the send."""
    headers = {key: str(value) for key, value in built.message.extra_headers.items()}
    update = f"""
        UPDATE {OutgoingMessage._meta.db_table}
        SET status = 'sent', sent_at = %s, subject = %s, provider_message_id = %s,
            raw_headers = %s::jsonb, error = ''
        WHERE id = %s"""
    params = [timezone.now(), built.subject, built.message_id, json.dumps(headers), row_id]
    if connection.in_atomic_block or not _one_query_many_statements():
        # Inside a caller's transaction (tests), or not PostgreSQL with client-side
        # binding (one statement per query): the scope's own statements.
        with tenant_scope(tenant_id, savepoint=False), connection.cursor() as cursor:
            cursor.execute(
                update + " AND set_config('synchronous_commit', 'off', true) = 'off'", params
            )
        return
    # One round trip instead of four (BEGIN, the scope's SET LOCALs, UPDATE, COMMIT):
    # statements sent as one simple-protocol query run as one implicit transaction
    # (PostgreSQL protocol, "Multiple Statements in a Simple Query"), so the SET LOCALs
    # (the app role and the tenant: row-level security as in tenant_scope) end with
    # it and a failure rolls all of it back. Per mail, between two sends, it counts.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('role', %s, true), set_config('app.tenant_id', %s, true),"
            " set_config('synchronous_commit', 'off', true);" + update,
            [django_settings.DB_APP_ROLE, str(tenant_id), *params],
        )


def _one_query_many_statements() -> bool:
    options = connection.settings_dict.get("OPTIONS", {})
    return connection.vendor == "postgresql" and not options.get("server_side_binding")


# A provider's 4xx answers that are about our account or the moment, not about the
# mail or its recipient: unauthorised, forbidden (a suspended account, an unverified
# sending domain), proxy authentication, timeout, rate limit. As bounces, one bad API
# key would suppress every address the tenant mails; they retry like a 5xx instead.
PROVIDER_NOT_BOUNCES = frozenset({401, 403, 407, 408, 429})


def _permanent(exc: Exception) -> bool:
    """A refusal that makes the mail a bounce: an SMTP 5xx, or a mail provider (anymail)
    refusing the recipients or answering 4xx (but see PROVIDER_NOT_BOUNCES). A refused
    sender (MAIL FROM) never gets here: _send_all defers it, whatever its code."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return 500 <= exc.smtp_code < 600
    if isinstance(exc, AnymailRecipientsRefused):
        return True
    if isinstance(exc, AnymailAPIError):
        code = exc.status_code
        return isinstance(code, int) and 400 <= code < 500 and code not in PROVIDER_NOT_BOUNCES
    return False


def _bounce(tenant_id: int, e: Enrolment, row_id: int, lead: Lead, error: str, batch) -> None:
    """The address does not take mail: the message is bounced, the address suppressed,
    an email_bounced activity recorded, and the lead leaves every sequence it is in
    (none of them could mail it again): this enrolment in memory (the batch writes
    it), the others at once, so a mail of another of its sequences later in this
    batch is skipped (see _skip_bounced)."""
    from leads.services import activity_record, email_clean, suppression_add

    with tenant_scope(tenant_id):
        OutgoingMessage.objects.filter(pk=row_id).update(status=Status.BOUNCED, error=error[:2000])
        suppression_add(
            tenant_id=tenant_id,
            email=lead.email,
            reason=Suppression.Reason.BOUNCED,
            note=error[:500],
        )
        activity_record(
            tenant_id=tenant_id,
            type=ActivityType.EMAIL_BOUNCED,
            lead=lead,
            channel=Channel.SYSTEM,
            properties={"message_id": row_id, "error": error[:500]},
        )
        lead_exit_sequences(tenant_id=tenant_id, lead_id=lead.id, reason=Exit.BOUNCED, keep=[e.id])
    batch.suppressed.add(email_clean(lead.email))
    _finish(e, batch, State.EXITED, Exit.BOUNCED)


def _skip_bounced(tenant_id: int, e: Enrolment, row_id: int, batch: Batch) -> None:
    """A mail to an address that bounced earlier in this batch: not sent, its row
    skipped, the enrolment exits (bounced). The bounced lead's enrolments left in the
    database already (_save leaves them so); another lead with that address leaves
    through _save."""
    with tenant_scope(tenant_id):
        OutgoingMessage.objects.filter(pk=row_id).update(
            status=Status.SKIPPED, error="address bounced"
        )
    _finish(e, batch, State.EXITED, Exit.BOUNCED)
    batch.count("skipped_bounced")


def _send_all(tenant_id: int, batch: Batch) -> None:
    if not batch.to_send:
        return
    granted = _rate_grant(
        tenant_id, batch.settings, len(batch.to_send), batch.now, batch.tenant.time_zone
    )
    if granted < len(batch.to_send):
        next_minute = batch.now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        for e, _step in batch.to_send[granted:]:
            e.next_due_at = next_minute
        batch.count("rate_limited", len(batch.to_send) - granted)
        batch.to_send = batch.to_send[:granted]
    if not batch.to_send:
        return
    rows = _write_rows(tenant_id, batch)
    connection_ = mail.mailers.default
    opened = False
    down: Exception | None = None
    # From addresses the server refused in this batch (a relay that does not take the
    # tenant's domain, say): their other mails wait too, without asking again.
    refused_senders: dict[str, Exception] = {}
    try:
        for e, step in batch.to_send:
            row_id, what = rows[e.id]
            lead = batch.leads[e.lead_id]
            if what == "stopped":  # changed by someone else since the claim: theirs stands
                batch.count("stopped_meanwhile")
                continue
            if what == "busy":  # another worker holds it (a lease not yet ended)
                e.next_due_at = batch.now + LEASE
                continue
            if what == "sent":
                batch.count("already_sent")
                e.step_order += 1
                _run(e, batch, send_now=False)
                continue
            if not may_receive_marketing(lead, batch.suppressed):
                # Bounced earlier in this batch, in another of the lead's sequences.
                _skip_bounced(tenant_id, e, row_id, batch)
                continue
            if down is None and not opened:
                try:
                    connection_.open()
                    opened = True
                except Exception as exc:  # any failure to connect is transient
                    down = exc
            if down is not None:
                _defer(tenant_id, e, row_id, down, batch)
                continue
            try:
                built = build_email(
                    outgoing=OutgoingMessage(id=row_id),
                    lead=lead,
                    template=batch.templates[step.template_id],
                    sender=batch.senders.get(batch.sequences[e.sequence_id].sender_id),
                    tenant=batch.tenant,
                )
            except Exception as exc:
                # A mail that cannot be built (a sequence left without a sender before
                # activation required one): this mail waits and retries like a refused
                # one, then fails and the journey goes on; the rest of the batch is sent.
                logger.exception("nurture mail %s could not be built", row_id)
                _defer(tenant_id, e, row_id, exc, batch)
                continue
            sender_refused = refused_senders.get(built.message.from_email)
            if sender_refused is not None:
                _defer(tenant_id, e, row_id, sender_refused, batch)
                continue
            try:
                connection_.send_messages([built.message])
            except Exception as exc:  # classified below
                if isinstance(exc, smtplib.SMTPSenderRefused):
                    logger.error(
                        "nurture: the mail server refuses the sender %s of tenant %s: %s",
                        exc.sender,
                        tenant_id,
                        exc,
                    )
                    refused_senders[built.message.from_email] = exc
                    _defer(tenant_id, e, row_id, exc, batch)
                    continue
                if _permanent(exc):
                    _bounce(tenant_id, e, row_id, lead, str(exc), batch)
                    batch.count("bounced")
                    continue
                logger.warning("nurture send to %s deferred: %s", lead.email, exc)
                _defer(tenant_id, e, row_id, exc, batch)
                if isinstance(exc, OSError | smtplib.SMTPServerDisconnected):
                    down = exc  # the server is gone: defer the rest of the batch
                    opened = False
                continue
            _mark_sent(tenant_id, row_id, built)
            batch.count("sent")
            e.step_order += 1
            _run(e, batch, send_now=False)
    finally:
        if opened:
            try:
                connection_.close()
            except Exception:
                logger.debug("closing the SMTP connection failed", exc_info=True)


def _defer(tenant_id: int, e: Enrolment, row_id: int, exc: Exception, batch: Batch) -> None:
    with tenant_scope(tenant_id):
        attempts = OutgoingMessage.objects.values_list("attempts", flat=True).get(pk=row_id)
        if attempts >= MAX_ATTEMPTS:
            OutgoingMessage.objects.filter(pk=row_id).update(
                status=Status.FAILED, error=str(exc)[:2000]
            )
            batch.count("failed")
            e.step_order += 1  # given up on this mail; the journey goes on
            e.next_due_at = batch.now
            return
        retry_at = batch.now + backoff(attempts)
        OutgoingMessage.objects.filter(pk=row_id).update(
            status=Status.QUEUED, next_attempt_at=retry_at, error=str(exc)[:2000]
        )
    e.next_due_at = retry_at
    batch.count("deferred")


def _save(tenant_id: int, enrolments: list[Enrolment], claimed: datetime.datetime) -> int:
    """The batch's new positions in one UPDATE … FROM unnest (linear, where
    bulk_update's CASE per column grows with the square of the batch), only into rows
    still active and still marked with this run's lease (`claimed`): what another
    transaction did since the claim (pause, remove, replied, unsubscribe, an exit on a
    stage change) stands, and a row another worker claimed after the lease ended is
    its own. Returns how many rows were written."""
    with tenant_scope(tenant_id), connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Enrolment._meta.db_table} e
            SET step_order = v.step_order, next_due_at = v.next_due_at, state = v.state,
                exit_reason = v.exit_reason, finished_at = v.finished_at
            FROM unnest(%s::bigint[], %s::integer[], %s::timestamptz[], %s::text[],
                        %s::text[], %s::timestamptz[])
                 AS v(id, step_order, next_due_at, state, exit_reason, finished_at)
            WHERE e.id = v.id AND e.tenant_id = %s
              AND e.state = 'active' AND e.next_due_at = %s
            """,
            [
                [e.id for e in enrolments],
                [e.step_order for e in enrolments],
                [e.next_due_at for e in enrolments],
                [str(e.state) for e in enrolments],
                [str(e.exit_reason or "") for e in enrolments],
                [e.finished_at for e in enrolments],
                tenant_id,
                claimed,
            ],
        )
        return cursor.rowcount


def dispatch_batch(tenant_id: int, *, now: datetime.datetime | None = None) -> dict[str, int]:
    """Claim and run one batch of the tenant's due enrolments; returns counts
    ({"claimed": n, "sent": n, ...}); claimed 0 when nothing is due."""
    now = now or timezone.now()
    enrolments = claim(tenant_id, now)
    if not enrolments:
        return {"claimed": 0}
    batch = _load(tenant_id, enrolments, now)
    batch.count("claimed", len(enrolments))
    # Steps that send nothing may write (stage changes, events): in one transaction.
    with tenant_scope(tenant_id):
        for e in enrolments:
            _run(e, batch)
    _send_all(tenant_id, batch)
    written = _save(tenant_id, enrolments, batch.lease)
    if written < len(enrolments):
        batch.count("changed_meanwhile", len(enrolments) - written)
    return batch.report


def dispatch_tenant(
    tenant_id: int, *, now: datetime.datetime | None = None, max_batches: int = 50
) -> dict[str, int]:
    """Batches until nothing is due (or max_batches: the next beat tick goes on)."""
    total: dict[str, int] = {}
    for _ in range(max_batches):
        report = dispatch_batch(tenant_id, now=now)
        for key, value in report.items():
            total[key] = total.get(key, 0) + value
        if report.get("claimed", 0) < BATCH_SIZE:
            break
    return total
