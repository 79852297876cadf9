/*
 * The rows budget: admits requests by the memory their results will take
 * (--max-held-mb, a share per event loop). One per loop, owned by its
 * thread (no locks). A request asks once, before it takes a pool
 * connection, with the bytes its shape held last time on this loop; it
 * counts the bytes of results that live requests hold (held) and what
 * admitted requests are expected to hold still (reserved), queues the
 * requests that do not fit (FIFO), and learns each shape's size from its
 * last complete request. It knows nothing of plans, libpq or HTTP: its
 * users are execs.
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
 * counted); a request waits at most wait_timeout_ms (<= 0: no limit). NULL
 * when out of memory. */
struct budget *budget_new(struct event_base *base, size_t limit,
			  int wait_timeout_ms);
/* Users still alive are detached: freeing them later touches nothing of
 * the budget. NULL ok. */
void budget_free(struct budget *b);

/* ---- the learned sizes ---- */

/* The bytes the last complete request of this shape held. false when this
 * process has not seen one (or forgot it: the table is small and a
 * collision overwrites). */
bool budget_estimate(const struct budget *b, uint64_t shape, size_t *bytes);

/* ---- admission ---- */

/* One per request, from its start: the order of starts decides which
 * request is the oldest. shape: a hash of its plan's SQL texts and of the
 * size classes of their LIMITs and lists (exec's shape_of). NULL when out
 * of memory. */
struct budget_user *budget_user_new(struct budget *b, uint64_t shape);
/* Gives back everything the user holds or reserves and leaves the queue
 * (its callback never fires then). NULL ok. */
void budget_user_free(struct budget_user *u);

/* err NULL: admitted (the estimate is reserved); else 503 after
 * wait_timeout_ms in the queue. Fires from the loop. */
typedef void (*budget_admit_cb)(const struct pf_err *err, void *arg);

/*
 * Asks, once per request, to go with the estimate of its shape. A shape
 * never seen reserves all that is free (and needs some free), so that
 * requests nobody can size go one at a time until their size is learned.
 * Admitted at once when nothing waits and it fits (held + reserved + est
 * <= limit), or when its user is the oldest that holds, reserves or waits
 * (which guarantees progress: the oldest always goes). Returns 1 when
 * admitted at once (cb will not fire; so does a second ask), 0 when
 * queued (cb fires later, from the loop), -1 when out of memory.
 */
int budget_ask(struct budget_user *u, budget_admit_cb cb, void *arg);

/* The user leaves the queue (the client left): its callback will not
 * fire. Nothing happens when it does not wait. */
void budget_cancel(struct budget_user *u);

/* Results the user keeps until it is freed came in: they count as held,
 * and its reservation shrinks by as much (never below 0), so that held +
 * reserved of the user is max(estimate, held). An admitted user never
 * waits again: past its estimate it holds more, up to what --max-rows
 * lets a request hold. */
void budget_hold(struct budget_user *u, size_t bytes);

/* The user's results are all in: what it holds now is its shape's size
 * from now on (for the next request of the shape), and the part of its
 * reservation it did not use goes back. Call it only for a request that
 * succeeded: a failed one would teach a size too small. */
void budget_done(struct budget_user *u);

struct budget_stats {
	size_t limit, held, reserved;
	int waiting;	     /* requests in the queue now */
	unsigned long waits; /* requests that were queued, ever */
};
void budget_get_stats(const struct budget *b, struct budget_stats *out);
