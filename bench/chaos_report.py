"""Writes the report of a chaos run (bench/chaos) from its history, as markdown on standard output.

The history is the JSON lines `Outcome::write_history_to` writes (tests/api/support/load.rs):
phase markers `{"at_ms", "phase"}` and attempts `{"sent_ms", "took_ms", "worker", "call", "key",
"code", "reason", "answer"}`, in time order, then what the checks after the drain counted
(`{"check", "count"}`; written once they all passed). Each attempt belongs to the phase marked last before
it was sent. Usage: chaos_report.py HISTORY COMMAND SCALE
"""

import collections
import datetime
import json
import sys

WRITES = {
    "CreateTicket",
    "ImportTickets",
    "AddComment",
    "UpdateTicket",
    "CreateCharge",
    "RefundCharge",
    "UploadAttachment",
}
# Logins are counted apart: the run's login quota refuses most of them, as it should.
LOGINS = {"Login"}


def percentile(values, fraction):
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def share(part, whole):
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


def main():
    history_path, command, scale = sys.argv[1], sys.argv[2], sys.argv[3]
    phases = []
    attempts = []
    counted = []
    with open(history_path) as history:
        for line in history:
            record = json.loads(line)
            if "phase" in record:
                phases.append(record)
            elif "check" in record:
                counted.append(record)
            else:
                attempts.append(record)
    if not phases or not attempts:
        sys.exit(f"{history_path}: no phases or no attempts")
    if not counted:
        sys.exit(f"{history_path}: no counts of the checks: the run's checker did not pass")
    bounds = [phase["at_ms"] for phase in phases] + [
        max(max(a["sent_ms"] + a["took_ms"] for a in attempts), phases[-1]["at_ms"])
    ]
    by_phase = collections.defaultdict(list)
    for attempt in attempts:
        index = 0
        while index + 1 < len(phases) and attempt["sent_ms"] >= phases[index + 1]["at_ms"]:
            index += 1
        by_phase[index].append(attempt)

    out = []
    out.append("# Reliability: faults under a steady load\n")
    out.append(
        "Written by `bench/chaos` from the history of its run; do not edit by hand. The run is the "
        "suite's `scale_out::under_load::faults_together_lose_no_write_pay_nothing_twice_and_answer_only_as_documented` "
        f"with each phase held {scale} times longer (`SUPPORTDESK_CHAOS_SCALE={scale}`): three "
        "instances behind Envoy, each on a proxy of its own to a PostgreSQL of the run's own whose "
        "streaming replica the dashboard reads from, a Redis of their own, the "
        "payment simulator, an SMTP server (aiosmtpd) two instances send their mail through and the "
        "email provider's API (its simulator) the third sends through, an S3 "
        "store (SeaweedFS, verifying signatures) every attachment is uploaded to, the "
        "reconciler every 2 s, and a steady load of reads (GetTicket, SearchTickets, "
        "GetDashboard), logins (Login, against a quota of 20 per 60 s for the address and name) "
        "and keyed writes (CreateTicket, AddComment, UpdateTicket with the etag just read, "
        "CreateCharge, RefundCharge, UploadAttachment, ImportTickets), every failed write sent again under its key as a client "
        "does, until it is acknowledged or definitively refused (a stale etag, nothing left to "
        "refund), while the provider delivers its signed payment events through Envoy and the "
        "account's own systems subscribe to its events (one webhook endpoint, registered through "
        "Envoy, on a receiver that verifies every delivery with the Standard Webhooks reference "
        "library; it answers 503s, then not at all, for a phase). Instance 1 is sent an import "
        "of 20,000 rows and stopped with SIGTERM while it runs it. "
        "PostgreSQL is crashed for real (`pg_ctl -m immediate stop`) and restarted. After the last phase the load stops and the run waits for the queues to drain "
        "(the \"draining\" phase's length is that time: the subscriber's deliveries go one "
        "endpoint lease at a time, in event order, so it grows with the backlog the load left "
        "and with how busy the machine is; the run fails when a queue stops moving, no "
        "delivery done for 20 s, longer than a lost lease of 15 s, or after 5 minutes), then "
        "for a reconciliation run. The report "
        "is written only when the run's checker passed: every acknowledged write exactly once in "
        "PostgreSQL (an update's change record, a refund's row), every charge and refund once in "
        "the simulator's ledger and none left pending, a reconciliation run after the drain "
        "finding nothing; every notification due written once and sent, each message received "
        "once by its Message-ID (twice only for a send interrupted after the server accepted it, "
        "docs/notifications.md); no more logins admitted than the quota over each life of Redis "
        "plus those sent while the limiter could not reach Redis (it fails open, "
        "docs/rate-limits.md); every event of the account delivered to its subscriber and "
        "verified at least once, none given up on, the endpoint still enabled; the import the "
        "stopped instance held given back unfinished (its log says so), finished by another "
        "worker, each of its rows a ticket once; no answer the API does not document, no panic "
        "in any instance's log. A call in flight on instance 0 when it is killed may be cut "
        "mid-answer (its answer's headers out, its end not: Envoy can only reset the stream, and "
        "the client's gRPC library reports the reset as INTERNAL with no status from the server); "
        "the refusals list it as \"cut mid-answer\", and the checker fails the run on such a "
        "cut at any other moment.\n"
    )
    out.append(
        f"- Command: `{command}`\n"
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- Attempts: {len(attempts)}; acknowledged writes: "
        f"{sum(1 for a in attempts if a['call'] in WRITES and a['code'] == 'Ok')}; "
        f"history: `{history_path}`, the instances' logs in `bench/results/chaos-logs/` (kept, "
        "for an investigation; not committed)\n"
    )
    out.append("## Per phase\n")
    out.append(
        "Availability is the share of attempts answered OK (a write refused and then acknowledged "
        "under the same key counts once each way). Latency is of every attempt, failed ones "
        "included. A phase lasts until the next one starts; a recovery time is the length of a "
        "phase whose name says what it waits for (\"healing\", \"not serving\").\n"
    )
    out.append("| phase | from s | lasted s | attempts | reads OK | writes OK | logins admitted | p50 ms | p99 ms | refusals (code reason: count) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for index, phase in enumerate(phases):
        rows = by_phase.get(index, [])
        reads = [a for a in rows if a["call"] not in WRITES | LOGINS]
        writes = [a for a in rows if a["call"] in WRITES]
        logins = [a for a in rows if a["call"] in LOGINS]
        latencies = [a["took_ms"] for a in rows]
        refusals = collections.Counter(
            f"{a['code']} {'cut mid-answer' if a.get('cut') else a['reason'] or '(none)'}"
            for a in rows
            if a["code"] != "Ok"
        )
        refused = ", ".join(f"{name}: {count}" for name, count in refusals.most_common()) or "none"
        out.append(
            f"| {phase['phase']} | {phase['at_ms'] / 1000:.1f} | {(bounds[index + 1] - phase['at_ms']) / 1000:.1f} "
            f"| {len(rows)} | {share(sum(a['code'] == 'Ok' for a in reads), len(reads))} "
            f"| {share(sum(a['code'] == 'Ok' for a in writes), len(writes))} "
            f"| {sum(a['code'] == 'Ok' for a in logins)} of {len(logins)} "
            f"| {percentile(latencies, 0.5)} | {percentile(latencies, 0.99)} | {refused} |"
        )
    out.append("")
    out.append("## Recovery\n")
    out.append(
        "For each heal (a phase whose name says something is back, healed, unstalled or serving "
        "again): how long after it the first write sent after it was acknowledged, and the first "
        "read answered; the fleet's own recovery (an instance SERVING again, Envoy's health check "
        "passed) is the length of the phases that wait for it above.\n"
    )
    out.append("| heal | at s | first write acknowledged after, s | first read answered after, s |")
    out.append("|---|---:|---:|---:|")
    healing_words = ("back", "healed", "healing", "unstalled", "serving again")
    for phase in phases:
        if not any(word in phase["phase"] for word in healing_words):
            continue
        at = phase["at_ms"]

        def first_ok(calls):
            done = [
                a["sent_ms"] + a["took_ms"]
                for a in attempts
                if a["call"] in calls and a["code"] == "Ok" and a["sent_ms"] >= at
            ]
            return f"{(min(done) - at) / 1000:.2f}" if done else "-"

        read_calls = {a["call"] for a in attempts} - WRITES - LOGINS
        out.append(f"| {phase['phase']} | {at / 1000:.1f} | {first_ok(WRITES)} | {first_ok(read_calls)} |")
    out.append("")
    out.append("## Per call, over the whole run\n")
    out.append("| call | attempts | OK | p50 ms | p99 ms |")
    out.append("|---|---:|---:|---:|---:|")
    for call in sorted({a["call"] for a in attempts}):
        rows = [a for a in attempts if a["call"] == call]
        latencies = [a["took_ms"] for a in rows]
        out.append(
            f"| {call} | {len(rows)} | {share(sum(a['code'] == 'Ok' for a in rows), len(rows))} "
            f"| {percentile(latencies, 0.5)} | {percentile(latencies, 0.99)} |"
        )
    out.append("")
    out.append("## What the checker held, after the drain\n")
    out.append(
        "Each acknowledged write below was found exactly once where it lives (PostgreSQL, the "
        "simulator's ledger, the store), each with the notification it was due sent once; "
        "besides: a reconciliation run after the drain found nothing, every payment event the "
        "service acknowledged to the provider was applied, no read (GetTicket, SearchTickets) "
        "returned a ticket of the neighbouring account whose tickets match the search, and the "
        "login quota held but for the fail-open windows.\n"
    )
    out.append("| write | acknowledged (one key each) | refused for good | attempts |")
    out.append("|---|---:|---:|---:|")
    for call in sorted(WRITES):
        rows = [a for a in attempts if a["call"] == call]
        acknowledged = {a["key"] for a in rows if a["code"] == "Ok"}
        # The load sends a write again until it is acknowledged or refused for good.
        refused_for_good = {a["key"] for a in rows} - acknowledged
        out.append(f"| {call} | {len(acknowledged)} | {len(refused_for_good)} | {len(rows)} |")
    out.append("")
    out.append("Counted besides, each found as it must be:\n")
    out.append("| check | count |")
    out.append("|---|---:|")
    for record in counted:
        out.append(f"| {record['check']} | {record['count']} |")
    out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
