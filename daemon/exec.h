/*
 * Runs a plan: takes a pooled connection, opens one REPEATABLE READ READ
 * ONLY transaction, sends the queries level by level (every query whose
 * parents are known goes in the same pipeline; a prefetch level on the
 * plan that planmode picks, and its time goes back to planmode), hands
 * each result to the
 * graph and asks it for the keys of the next level, commits and gives the
 * connection back. With a rows budget, the request first waits until the
 * budget admits it, once, before it takes a connection. PostgreSQL errors
 * are mapped once here (57014 -> 504, class 22 -> 422 bad_value, lost
 * connection -> 503, else 500 + log).
 */
#pragma once

#include <stdbool.h>

#include <event2/buffer.h>

#include "budget.h"
#include "err.h"
#include "graph.h"
#include "plan.h"
#include "planmode.h"
#include "pool.h"

struct exec;

struct exec_options {
	int pool_timeout_ms;
	long max_rows; /* 413 too_many_rows past it; <= 0: no limit */
	bool debug;    /* keep every statement's SQL, params, rows, ms */
	/* Admission by memory: the request asks it once, before the pool,
	 * and the bytes of its results count in it until exec_free. NULL: no
	 * admission. */
	struct budget *budget;
	/* Times the plans of each keyed statement and picks the faster
	 * (planmode.h). NULL: a keyed statement of fewer than 1,000 keys
	 * always runs on its generic plan. */
	struct planmode *plans;
	/* --plan-mode custom|generic: every statement on the session's
	 * plan_cache_mode, which the pool set; no choice, no SET. */
	bool session_plans;
};

struct exec_stats {
	int queries; /* data statements sent (not BEGIN/COMMIT) */
	long rows;
	double db_ms; /* from the first send to the last result */
};

/* done fires exactly once, never before exec_start returns: err NULL on
 * success (then exec_graph has every result). The connection is back in the
 * pool by then, and done may free the exec. */
typedef void (*exec_done_cb)(struct exec *ex, const struct pf_err *err,
			     void *arg);

/* plan must outlive the exec. Returns NULL only when out of memory. */
struct exec *exec_start(struct pool *pool, const struct plan *plan,
			const struct exec_options *opt, exec_done_cb done,
			void *arg);

struct graph *exec_graph(struct exec *ex);
void exec_get_stats(const struct exec *ex, struct exec_stats *out);

/* "[{"sql":..,"params":[..],"rows":n,"ms":x},...]" of the data statements
 * sent, in order (not BEGIN/COMMIT/ROLLBACK); ms is the elapsed time of the
 * batch the statement was in. The keys ($1) are kept only with debug set. */
void exec_write_debug(const struct exec *ex, struct evbuffer *out);

/* The client left: stop (the connection is discarded if mid-batch), done
 * will not fire. The exec must still be freed. */
void exec_cancel(struct exec *ex);
void exec_free(struct exec *ex); /* NULL ok */
