"""Writes the report of a chaos run (bench/chaos) from its history, as markdown on standard output.

The history is the JSON lines `Outcome::write_history_to` writes (tests/api/support/load.rs):
phase markers `{"at_ms", "phase"}`, attempts `{"sent_ms", "took_ms", "worker", "call", "key",
"code", "reason", "answer"}` and the exporting tenant's streams `{"sent_ms", "took_ms", "stream",
"code", "reason", "tickets", "bytes"}`, in time order, then what the checks after the drain
counted (`{"check", "count"}`; written once they all passed). Each attempt belongs to the phase
marked last before it was sent. Usage: chaos_report.py HISTORY COMMAND SCALE
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
# The windows of the comparison with and without the exporting tenant's streams
# (tests/api/scale_out/under_load.rs: WITH_EXPORTS, WITHOUT_EXPORTS).
WITH_EXPORTS = "with ten slow exports"
WITHOUT_EXPORTS = "without the slow exports"


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
    exports = []
    with open(history_path) as history:
        for line in history:
            record = json.loads(line)
            if "phase" in record:
                phases.append(record)
            elif "check" in record:
                counted.append(record)
            elif "stream" in record:
                exports.append(record)
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
        "library; it answers 503s, then not at all, for a phase). Instance 1 sends its mail "
        "through an SMTP relay of its own (aiosmtpd), which for a phase keeps each message and "
        f"answers the end of its data only {10 * int(scale)} s later (a slow relay: longer than "
        "the instances once gave a send before cutting it and sending again). Beside the load "
        "runs a tenant of its own, an account with 20,000 tickets running ten ExportTickets "
        "streams through Envoy at once, each read through a 16 KiB HTTP/2 window a kilobyte at "
        f"a time with {4 * int(scale)} s after each, every stream refused (RESOURCE_EXHAUSTED "
        "`STREAM_LIMIT`, the export caps: 2 an account and 3 an instance on each instance) or "
        "ended started again a second later: first in three windows of six after the steady "
        "start (ABBAAB: without, with, with, without, without, with; no fault in any), then "
        "beside every fault to the end of the load. Instance 1 is sent an import "
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
        "docs/notifications.md), and each message the slow relay received arrived exactly once "
        "in all, through any provider, or twice only where the notification's row records a send "
        "whose outcome the service could not know, never three times; the other tenant's calls "
        "(all but logins) in the windows beside the slow exports answered OK no more than 1 "
        "percentage point less often than in the windows without them, and, at this scale, "
        "their p99 latency no more than 1.5 times longer; the exporting tenant held exactly "
        "the places the caps give it (2 on each of the three instances), was refused beyond, "
        "and was told only documented answers; no more logins admitted than the quota over each life of Redis "
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
    out.append("## The exporting tenant, and the other tenant beside it\n")
    out.append(
        "The other tenant's calls (all but logins, which their quota refuses by design) in each "
        "window of the comparison; the windows with the exporting tenant's ten slow streams and "
        "those without them alternate ABBAAB in the same fault state (none), so that a drift of "
        "the machine's load weighs alike on both sides. The checker requires the share answered "
        "OK beside the exports no more than 1 percentage point lower, and (at `bench/chaos`'s "
        "scale of 5 or more) their p99 no more than 1.5 times longer.\n"
    )
    out.append("| window | slow exports | from s | calls | OK | p50 ms | p99 ms |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    sides = {True: [], False: []}
    for index, phase in enumerate(phases):
        name = phase["phase"]
        if not (name.startswith(WITH_EXPORTS) or name.startswith(WITHOUT_EXPORTS)):
            continue
        with_exports = name.startswith(WITH_EXPORTS)
        rows = [a for a in by_phase.get(index, []) if a["call"] not in LOGINS]
        sides[with_exports].extend(rows)
        latencies = [a["took_ms"] for a in rows]
        out.append(
            f"| {name} | {'running' if with_exports else 'none'} | {phase['at_ms'] / 1000:.1f} "
            f"| {len(rows)} | {share(sum(a['code'] == 'Ok' for a in rows), len(rows))} "
            f"| {percentile(latencies, 0.5)} | {percentile(latencies, 0.99)} |"
        )
    out.append("")
    if sides[True] and sides[False]:
        p99 = {side: percentile([a["took_ms"] for a in rows], 0.99) for side, rows in sides.items()}
        ok = {side: 100.0 * sum(a["code"] == "Ok" for a in rows) / len(rows) for side, rows in sides.items()}
        out.append(
            f"Together: beside the slow exports {len(sides[True])} calls, {ok[True]:.2f} % OK, p99 "
            f"{p99[True]} ms; without them {len(sides[False])} calls, {ok[False]:.2f} % OK, p99 "
            f"{p99[False]} ms: {ok[True] - ok[False]:+.2f} percentage points, p99 "
            f"{p99[True] / max(p99[False], 1):.2f} times.\n"
        )
    endings = collections.Counter(
        f"{e['code']} {'cut mid-answer' if e.get('cut') else e['reason'] or ('(none)' if e['code'] != 'Ok' else 'stopped by the tenant or complete')}"
        for e in exports
    )
    out.append(
        f"The exporting tenant's streams over the run: {len(exports)}, "
        f"{sum(e['tickets'] for e in exports)} tickets read "
        f"({sum(e['bytes'] for e in exports) / 1024:.0f} KiB); how they ended: "
        + (", ".join(f"{name}: {count}" for name, count in endings.most_common()) or "none")
        + ".\n"
    )
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
