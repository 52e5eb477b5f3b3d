/*
 * core/limits: counters of calls refused or cut by a configured limit
 * (docs/ARCHITECTURE.md, "Limits"), kept since start and reported by Stats. Any layer counts
 * with gd_limit_hit; the counters are process-wide atomics.
 */
#ifndef GD_CORE_LIMITS_H
#define GD_CORE_LIMITS_H

#include <stdint.h>

/* XX(name, what was refused or cut, and the flag that sets the limit) */
#define GD_LIMITS_MAP(XX)                                                              \
  XX(RESULT_CAP, "result_cap", "a limit over --result-cap")                             \
  XX(BATCH_ITEMS, "batch_items", "an UpsertRequest over --max-batch-items")            \
  XX(REPLY_BYTES, "reply_bytes", "a reply over --max-message-bytes")                   \
  XX(MAX_CALLS, "max_calls", "a call over --max-calls in flight")                       \
  XX(DEADLINE_CLAMPED, "deadline_clamped", "a deadline cut to --max-deadline-ms")       \
  XX(DEADLINE_DEFAULTED, "deadline_defaulted", "a call without a deadline (--default-deadline-ms)") \
  XX(DEADLINE_EXPIRED, "deadline_expired", "a call cancelled at its deadline by the server")  \
  XX(UNAUTHENTICATED, "unauthenticated", "a missing or unknown token")                  \
  XX(PERMISSION, "permission", "a role below the method's")                             \
  XX(AUDIT, "audit", "a call refused because the audit trail cannot be written")        \
  XX(ALLOC_BUDGET, "alloc_budget", "a request over --max-request-alloc-bytes to decode") \
  XX(STREAM_SHARE, "stream_share", "a stream over --max-calls minus --reserved-calls")  \
  XX(PEER_CALLS, "peer_calls", "a call over --max-calls-per-peer")                      \
  XX(STREAM_IDLE, "stream_idle", "a client stream idle past --stream-idle-ms")           \
  XX(WRITE_BUDGET, "write_budget", "an Upsert refused, or an Ingest message held back, by --write-budget-bytes")

typedef enum gd_limit {
#define XX(name, key, desc) GD_LIMIT_##name,
  GD_LIMITS_MAP(XX)
#undef XX
  GD_LIMIT__COUNT
} gd_limit;

void gd_limit_hit(gd_limit l);
uint64_t gd_limit_count(gd_limit l);
/* "result_cap" ...; NULL outside the range. */
const char *gd_limit_key(gd_limit l);

#endif
