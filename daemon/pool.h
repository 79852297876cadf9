/*
 * PostgreSQL connections for the event loop: a bounded pool of libpq
 * connections that never block (PQconnectStartParams/PQconnectPoll,
 * PQsetnonblocking, pipeline mode), a FIFO wait queue with a timeout, and
 * reconnection with backoff when the database goes away. It also runs one
 * pipelined batch of statements on a connection and hands back the results.
 * It knows nothing of plans or JSON. Only pool, exec and the schema loader
 * include libpq.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "err.h"

struct pool;
struct pool_conn;
struct pool_wait;

struct pool_options {
	const char *conninfo;	     /* libpq conninfo or URL; "" = PG* env */
	int size;		     /* max connections; <= 0 = 1 */
	int statement_timeout_ms;    /* session statement_timeout; 0 = none */
	int connect_timeout_ms;	     /* one connection attempt; 0 = 10000 */
	int backoff_min_ms;	     /* reconnect backoff after a failure; */
	int backoff_max_ms;	     /* 0 = 100 and 5000, doubling between */
	int prepare_cache;	     /* prepared statements kept per connection
				     (least recently used goes); 0 = none */
	const char *plan_cache_mode; /* the session's; NULL = the server's */
};

/* Session settings applied to every connection (in the startup packet, so
 * they cost no round trip): TimeZone=UTC, DateStyle=ISO, IntervalStyle=
 * postgres, extra_float_digits=1, statement_timeout (0 is sent too, so a
 * role's default does not apply), plan_cache_mode when set, and application_name "prefetchd" unless
 * the conninfo names one. They are appended to the conninfo's own
 * "options" (or PGOPTIONS), so those are kept but cannot override ours.
 * pool_new opens one connection at once, to learn whether the database is
 * up; it returns NULL only when out of memory (a bad conninfo shows as a
 * pool that is down). Copies what it needs from opt. */
struct pool *pool_new(struct event_base *base, const struct pool_options *opt);

/* Closes every connection, including those handed out (their handles
 * become invalid; a batch in flight is dropped as by pool_abandon), and
 * frees pending waits without calling them. NULL ok. Not from inside a
 * pool callback: at shutdown, after the loop. */
void pool_free(struct pool *pool);

/*
 * Asks for a connection. cb fires exactly once, never before pool_acquire
 * returns: with a connection that is idle and in pipeline mode, or with
 * conn == NULL and err set (503 database_unavailable when the database
 * cannot be reached — at once, not after the timeout, while the pool is
 * known to be down; 503 when timeout_ms passes in the queue; timeout_ms
 * <= 0 waits without limit). Waiters are served oldest first. The returned
 * handle can cancel the wait (then cb never fires); it is invalid after cb.
 * Returns NULL only when out of memory, and then cb never fires.
 */
typedef void (*pool_acquire_cb)(struct pool_conn *conn,
				const struct pf_err *err, void *arg);
struct pool_wait *pool_acquire(struct pool *pool, int timeout_ms,
			       pool_acquire_cb cb, void *arg);
void pool_cancel(struct pool_wait *wait);

/* Gives a connection back. reusable=false (error mid-batch, unknown state)
 * closes it; the pool opens a new one when needed. It is also closed when
 * its last batch failed with err, when it is still inside a transaction
 * (not PQTRANS_IDLE), and when a batch is still in flight (as
 * pool_abandon). */
void pool_release(struct pool_conn *conn, bool reusable);

/* One statement of a batch. params are text, NULL for SQL NULL. result is
 * filled by pool_run (owned by the batch's caller afterwards: PQclear it),
 * and done_ms with it: clock_ms() when the whole result had been read. */
struct pool_stmt {
	const char *sql;
	bool prepare; /* run as a named prepared statement, kept per
				   connection (its text is parsed once) */
	int nparams;
	const char *const *params;
	/* NULL: every parameter is text; else per parameter, 1 for binary
	 * (its bytes in lengths[i]) and 0 for text */
	const int *formats;
	const int *lengths;
	PGresult *result;
	double done_ms;
};

/*
 * Sends n statements in one pipeline followed by a sync, without waiting in
 * between, and calls cb once when the sync arrives or the connection fails.
 * On success (err == NULL) every stmts[i].result is set (a PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK result, or the PGRES_FATAL_ERROR of the first statement
 * that failed; statements after it are PGRES_PIPELINE_ABORTED and have
 * result NULL). On a lost connection err is 503 database_unavailable and
 * results may be partly set. The caller owns stmts until cb fires, and owns
 * the results after. cb may release the connection or run the next batch
 * (the same session, so a transaction begun in one batch continues).
 * Returns -1 with err set if it could not even send (503 for a lost
 * connection, 500 internal otherwise, or when a batch is already in
 * flight); cb never fires then, and the connection is not reusable.
 */
typedef void (*pool_run_cb)(struct pool_conn *conn, struct pool_stmt *stmts,
			    size_t n, const struct pf_err *err, void *arg);
int pool_run(struct pool_conn *conn, struct pool_stmt *stmts, size_t n,
	     pool_run_cb cb, void *arg, struct pf_err *err);

/* Abandons a batch in flight (the client left): cb will not fire, results
 * are cleared, and the connection is closed rather than reused. */
void pool_abandon(struct pool_conn *conn);

/* Whether statements marked prepare are prepared (--prepare-cache > 0):
 * else every statement is sent unnamed, and planned at every execution. */
bool pool_prepares(const struct pool *pool);

/* open counts connections being opened too; busy = handed out. */
struct pool_stats {
	int size, open, idle, busy, waiting;
	bool up; /* the last connection attempt succeeded */
	unsigned long connects, connect_failures;
};
void pool_get_stats(const struct pool *pool, struct pool_stats *out);

/* Called whenever the pool goes from down to up (a connection succeeded
 * after failures or at start): the daemon loads the schema then. It fires
 * from the loop, so registering right after pool_new catches the start. */
void pool_on_up(struct pool *pool, void (*cb)(void *arg), void *arg);
