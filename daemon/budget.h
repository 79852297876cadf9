/*
 * The rows budget: admits the batches of requests by the memory their
 * results will take (--max-held-mb). One per process, owned by the event
 * loop (no locks). It counts the bytes of results that live requests hold
 * (held) and the estimates of batches in flight (reserved), queues the
 * batches that do not fit (FIFO), and learns from each statement's result
 * how large the next one of the same SQL text will be. It knows nothing of
 * plans, libpq or HTTP: its users are execs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "err.h"

struct budget;
struct budget_user;

/* limit in bytes, 0 = no limit (then everything is admitted, held is still
 * counted); a batch waits at most wait_timeout_ms (<= 0: no limit). NULL
 * when out of memory. */
struct budget *budget_new(struct event_base *base, size_t limit,
			  int wait_timeout_ms);
/* Users still alive are detached: freeing them later touches nothing of
 * the budget. NULL ok. */
void budget_free(struct budget *b);

/* ---- the learned sizes ---- */

/* A statement's identity in the table: a hash of its SQL text, which
 * depends on the request's shape only (never 0). */
uint64_t budget_sql_hash(const char *sql);

/* The bytes a statement is expected to take: nkeys times its bytes per key
 * last time (keyed, nkeys > 0), or its bytes last time (unkeyed, nkeys ==
 * 0). false when this process has not seen it (or forgot it: the table is
 * small and a collision overwrites). */
bool budget_estimate(const struct budget *b, uint64_t hash, size_t nkeys,
		     size_t *bytes);
/* Remembers what a statement took (nkeys as above). */
void budget_learn(struct budget *b, uint64_t hash, size_t nkeys, size_t bytes);

/* ---- admission ---- */

/* One per request, from its start: the order of starts decides which
 * request is the oldest. NULL when out of memory. */
struct budget_user *budget_user_new(struct budget *b);
/* Gives back everything the user holds or reserves and leaves the queue
 * (its callback never fires then). NULL ok. */
void budget_user_free(struct budget_user *u);

/* err NULL: admitted (the estimate is reserved); else 503 after
 * wait_timeout_ms in the queue. Fires from the loop. */
typedef void (*budget_admit_cb)(const struct pf_err *err, void *arg);

/*
 * Asks to send one batch expected to take est bytes; unknown: some of its
 * statements have no learned size yet, and then the batch reserves at
 * least all that is free, so that batches nobody can size go one at a time
 * until their sizes are learned. Admitted at once when nothing waits and
 * it fits (held + reserved + est <= limit), or when its user is the oldest
 * that holds, reserves or waits (which guarantees progress: the oldest
 * always goes). Returns 1 when admitted at once (cb will not fire), 0 when
 * queued (cb fires later, from the loop), -1 when out of memory. One batch
 * per user at a time.
 */
int budget_ask(struct budget_user *u, size_t est, bool unknown,
	       budget_admit_cb cb, void *arg);

/* The user's batch leaves the queue (the client left): its callback will
 * not fire. Nothing happens when it does not wait. */
void budget_cancel(struct budget_user *u);

/* The admitted batch is in: its reservation goes, and the bytes of the
 * results its user keeps (0 for a failed batch) count as held until the
 * user is freed. */
void budget_arrived(struct budget_user *u, size_t bytes);

struct budget_stats {
	size_t limit, held, reserved;
	int waiting;	     /* batches in the queue now */
	unsigned long waits; /* batches that were queued, ever */
};
void budget_get_stats(const struct budget *b, struct budget_stats *out);
