/*
 * Counters for GET /metrics, in Prometheus' text format: requests by route
 * and status, a latency histogram per route, statements and rows read,
 * errors by code, plus the pool's and the schema's state given at write
 * time. Shared by every event loop's thread, behind a lock.
 */
#pragma once

#include <event2/buffer.h>

#include "budget.h"
#include "planmode.h"
#include "pool.h"

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m); /* NULL ok */

/* One finished request. route is a route's path or "other"; code is the
 * error code, or NULL on success. */
void metrics_observe(struct metrics *m, const char *route, int status,
		     const char *code, double ms, int queries, long rows);

struct metrics_state {
	struct pool_stats pool;
	struct budget_stats budget;
	struct planmode_stats plans;
	unsigned long reloads_ok, reloads_failed;
	int schema_loaded;
	int in_flight;
	int loops; /* event loops (--threads) */
};

void metrics_write(struct metrics *m, const struct metrics_state *st,
		   struct evbuffer *out);
