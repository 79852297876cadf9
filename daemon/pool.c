/*
 * The PostgreSQL connection pool: see pool.h. Owns the libpq connections,
 * the wait queue, the reconnect timer and the health state (unknown at
 * start, then up or down). User callbacks never fire from inside the pool_*
 * call that caused them: acquire callbacks and on_up fire from one deferred
 * "dispatch" event or a wait's timer, batch callbacks from the connection's
 * socket event, and each is the last thing the pool does with what it hands
 * over, so a callback may release, abandon or reuse it.
 */
#include "pool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event_struct.h>

#include "clock.h"
#include "hash.h"
#include "log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 10000

/* Every transition goes through conn_set_state, which keeps the counters
 * and the idle list in step. */
enum conn_state {
	CONN_NEW,	 /* not counted anywhere yet, or destroyed */
	CONN_CONNECTING, /* PQconnectPoll under way */
	CONN_IDLE,	 /* in pool->idle; socket watched to notice death */
	CONN_HELD,	 /* handed to a caller, no batch in flight */
	CONN_RUNNING,	 /* handed to a caller, batch in flight */
};

enum pool_health { HEALTH_UNKNOWN, HEALTH_UP, HEALTH_DOWN };

/* A statement prepared on one connection: its text, under a name. */
struct prepared {
	char *sql;
	uint64_t hash;
	unsigned long last_used;
	char name[16];
};

/* What each command of the batch in flight answers for: a statement of the
 * caller's (its index), the Parse of one (its index, prepare set: only an
 * error is kept), or a DEALLOCATE of ours (stmt -1). */
struct slot {
	int stmt;
	bool prepare;
};

struct pool_conn {
	struct pool *pool;
	PGconn *pg;
	enum conn_state state;
	/* The one event of the connection, re-assigned whenever its socket or
	 * the awaited readiness changes. */
	struct event ev;
	int64_t deadline_ms; /* connect deadline (monotonic) */
	bool broken;	     /* failed mid-batch or mid-send: never reuse */
	bool doomed;	     /* the server said FATAL while we were idle */
	TAILQ_ENTRY(pool_conn) all_link;
	TAILQ_ENTRY(pool_conn) idle_link;
	/* Prepared statements, most of prepare_cache of them. */
	struct prepared *prepared;
	size_t nprepared;
	unsigned long use_clock, next_name;
	/* The batch in flight: its commands in slots, cur the one whose
	 * results arrive now. */
	struct pool_stmt *stmts;
	size_t n, cur;
	struct slot *slots;
	size_t nslots;
	bool seen; /* cur has produced at least one result */
	pool_run_cb cb;
	void *arg;
};

struct pool_wait {
	struct pool *pool;
	unsigned long seq;
	pool_acquire_cb cb;
	void *arg;
	struct event *timer; /* NULL when the wait has no timeout */
	TAILQ_ENTRY(pool_wait) link;
};

struct pool {
	struct event_base *base;
	char *conninfo;
	char *options; /* startup "options": the user's, then ours */
	int size, connect_timeout_ms, backoff_min_ms, backoff_max_ms;
	int prepare_cache;
	int backoff_ms; /* the next retry delay */
	enum pool_health health;
	bool up_pending; /* on_up is due at the next dispatch */
	TAILQ_HEAD(, pool_conn) conns;
	TAILQ_HEAD(, pool_conn) idle; /* LIFO: most recently used first */
	TAILQ_HEAD(, pool_wait) waits;
	int nopen, nconnecting, nidle, nheld, nwaiting;
	unsigned long wait_seq;
	struct event *dispatch_ev, *retry_ev;
	void (*on_up)(void *arg);
	void *on_up_arg;
	unsigned long connects, connect_failures;
};

static void conn_on_event(evutil_socket_t fd, short what, void *arg);
static void conn_start(struct pool *pool);

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_to_tv(int64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
			     .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	return tv;
}

/* libpq's message on one line: its messages span lines ("\n\t...") and
 * end in a newline, a log line should not. */
static const char *pg_error(const PGconn *pg)
{
	static char buf[256];
	const char *m = pg ? PQerrorMessage(pg) : "out of memory";
	size_t len = 0;

	for (; *m && len < sizeof(buf) - 1; m++) {
		char ch = *m == '\n' || *m == '\t' ? ' ' : *m;

		if (ch != ' ' || (len && buf[len - 1] != ' '))
			buf[len++] = ch;
	}
	while (len && buf[len - 1] == ' ')
		len--;
	buf[len] = '\0';
	return buf;
}

static void pool_schedule(struct pool *pool)
{
	/* Activating an event that is already active is a no-op, so many
	 * releases in one loop iteration cost one dispatch. */
	event_active(pool->dispatch_ev, EV_TIMEOUT, 0);
}

/* ---- connection state and events ---- */

static void conn_set_state(struct pool_conn *c, enum conn_state to)
{
	struct pool *pool = c->pool;

	switch (c->state) {
	case CONN_CONNECTING:
		pool->nconnecting--;
		break;
	case CONN_IDLE:
		TAILQ_REMOVE(&pool->idle, c, idle_link);
		pool->nidle--;
		break;
	case CONN_HELD:
	case CONN_RUNNING:
		pool->nheld--;
		break;
	case CONN_NEW:
		break;
	}
	switch (to) {
	case CONN_CONNECTING:
		pool->nconnecting++;
		break;
	case CONN_IDLE:
		TAILQ_INSERT_HEAD(&pool->idle, c, idle_link);
		pool->nidle++;
		break;
	case CONN_HELD:
	case CONN_RUNNING:
		pool->nheld++;
		break;
	case CONN_NEW:
		break;
	}
	c->state = to;
}

static void conn_disarm(struct pool_conn *c)
{
	if (event_initialized(&c->ev))
		event_del(&c->ev);
}

/* Waits for `what` on the connection's current socket. PQsocket is read
 * again on every wait because libpq may open a new socket while connecting
 * (another host or address, an SSL or GSS retry). timeout_ms < 0: none,
 * and the event persists: a connected socket keeps its read event from
 * batch to batch and while idle, so waiting again costs nothing. */
static int conn_arm(struct pool_conn *c, short what, int64_t timeout_ms)
{
	struct timeval tv = ms_to_tv(timeout_ms < 0 ? 0 : timeout_ms);
	int fd = PQsocket(c->pg);

	if (timeout_ms < 0)
		what |= EV_PERSIST;
	if (timeout_ms < 0 && event_initialized(&c->ev) &&
	    event_pending(&c->ev, EV_READ | EV_WRITE, NULL) &&
	    event_get_events(&c->ev) == what && event_get_fd(&c->ev) == fd)
		return 0;
	conn_disarm(c);
	if (fd < 0)
		return -1;
	if (event_assign(&c->ev, c->pool->base, fd, what, conn_on_event, c))
		return -1;
	return event_add(&c->ev, timeout_ms < 0 ? NULL : &tv);
}

static void conn_destroy(struct pool_conn *c)
{
	struct pool *pool = c->pool;

	conn_set_state(c, CONN_NEW);
	conn_disarm(c);
	TAILQ_REMOVE(&pool->conns, c, all_link);
	pool->nopen--;
	/* Sends Terminate without waiting (the socket is non-blocking or the
	 * connection never finished) and closes the socket; an open
	 * transaction is rolled back by the server. */
	PQfinish(c->pg);
	for (size_t i = 0; i < c->nprepared; i++)
		free(c->prepared[i].sql);
	free(c->prepared);
	free(c->slots);
	free(c);
}

/* Closes a connection the pool will not reuse. If it died (rather than
 * being put away), probe with a fresh connection at once: that either
 * replaces it or tells us the database is down. */
static void conn_close(struct pool_conn *c)
{
	struct pool *pool = c->pool;
	bool dead = c->broken || c->doomed || PQstatus(c->pg) != CONNECTION_OK;

	conn_destroy(c);
	if (dead && pool->health == HEALTH_UP && pool->nconnecting == 0 &&
	    pool->nopen < pool->size)
		conn_start(pool);
	pool_schedule(pool); /* a waiter may use the free slot */
}

static void conn_on_notice(void *arg, const PGresult *res)
{
	struct pool_conn *c = arg;
	const char *sev =
		PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

	/* Outside a query an ErrorResponse reaches us as a notice, and the
	 * server only sends one right before hanging up ("terminating
	 * connection due to administrator command"): the connection is dead
	 * even if the socket has not reported EOF yet. */
	if (sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC")))
		c->doomed = true;
	else
		log_debug("postgres: %s", PQresultErrorMessage(res));
}

/* ---- health ---- */

static void pool_mark_up(struct pool *pool)
{
	if (pool->health == HEALTH_UP)
		return;
	if (pool->health == HEALTH_DOWN)
		log_info("pool: the database is reachable again");
	pool->health = HEALTH_UP;
	pool->up_pending = true;
	pool->backoff_ms = pool->backoff_min_ms;
	event_del(pool->retry_ev);
	pool_schedule(pool);
}

/* Exponential backoff between backoff_min_ms and backoff_max_ms. */
static void pool_schedule_retry(struct pool *pool)
{
	struct timeval tv = ms_to_tv(pool->backoff_ms);

	evtimer_add(pool->retry_ev, &tv);
	pool->backoff_ms = pool->backoff_ms > pool->backoff_max_ms / 2
				   ? pool->backoff_max_ms
				   : pool->backoff_ms * 2;
}

/* The last connection attempt failed: waiters get 503 at the next
 * dispatch, and one retry is scheduled (unless one already is). */
static void pool_mark_down(struct pool *pool, const char *why)
{
	if (pool->health != HEALTH_DOWN)
		log_warn("pool: cannot connect to the database: %s", why);
	else
		log_debug("pool: reconnect failed: %s", why);
	pool->health = HEALTH_DOWN;
	if (!evtimer_pending(pool->retry_ev, NULL))
		pool_schedule_retry(pool);
	pool_schedule(pool);
}

static void pool_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct pool *pool = arg;

	/* One attempt at a time: a connect already under way decides. */
	if (pool->health == HEALTH_UP || pool->nconnecting > 0)
		return;
	if (pool->nopen < pool->size)
		conn_start(pool);
	else
		pool_schedule_retry(pool); /* every slot is in use: later */
}

/* ---- connecting ---- */

static void conn_connect_failed(struct pool_conn *c, const char *why)
{
	struct pool *pool = c->pool;
	char msg[256];

	snprintf(msg, sizeof(msg), "%s", why); /* why may live in c->pg */
	pool->connect_failures++;
	conn_destroy(c);
	pool_mark_down(pool, msg);
}

static void conn_to_idle(struct pool_conn *c)
{
	conn_set_state(c, CONN_IDLE);
	if (conn_arm(c, EV_READ, -1) < 0) {
		c->broken = true;
		conn_close(c);
		return;
	}
	pool_schedule(c->pool); /* the oldest waiter gets it */
}

static void conn_connected(struct pool_conn *c)
{
	struct pool *pool = c->pool;

	/* Non-blocking, so PQsendQueryParams/PQflush never wait for the
	 * socket; pipeline mode, so a batch is one round trip. */
	if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg)) {
		conn_connect_failed(c, pg_error(c->pg));
		return;
	}
	pool->connects++;
	pool_mark_up(pool);
	conn_to_idle(c);
}

static void conn_connect_step(struct pool_conn *c, short what)
{
	int64_t left = c->deadline_ms - now_ms();
	char msg[64];
	int rc = 0;

	if ((what & EV_TIMEOUT) || left <= 0) {
		snprintf(msg, sizeof(msg), "timed out connecting after %d ms",
			 c->pool->connect_timeout_ms);
		conn_connect_failed(c, msg);
		return;
	}
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_OK:
		conn_connected(c);
		return;
	case PGRES_POLLING_READING:
		rc = conn_arm(c, EV_READ, left);
		break;
	case PGRES_POLLING_WRITING:
		rc = conn_arm(c, EV_WRITE, left);
		break;
	default:
		rc = -1;
		break;
	}
	if (rc < 0)
		conn_connect_failed(c, pg_error(c->pg));
}

static void conn_start(struct pool *pool)
{
	/* expand_dbname=1: the first dbname may be a whole conninfo or URL;
	 * the keywords after it override what it sets, which is why our
	 * options already include the user's. */
	const char *const keys[] = {"dbname", "options",
				    "fallback_application_name", NULL};
	const char *const vals[] = {pool->conninfo, pool->options, "prefetchd",
				    NULL};
	struct pool_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		pool->connect_failures++;
		pool_mark_down(pool, "out of memory");
		return;
	}
	c->pool = pool;
	TAILQ_INSERT_TAIL(&pool->conns, c, all_link);
	pool->nopen++;
	conn_set_state(c, CONN_CONNECTING);
	c->deadline_ms = now_ms() + pool->connect_timeout_ms;
	c->pg = PQconnectStartParams(keys, vals, 1);
	if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_connect_failed(c, pg_error(c->pg));
		return;
	}
	PQsetNoticeReceiver(c->pg, conn_on_notice, c);
	/* libpq's contract: start polling as if PQconnectPoll had returned
	 * PGRES_POLLING_WRITING. */
	if (conn_arm(c, EV_WRITE, pool->connect_timeout_ms) < 0)
		conn_connect_failed(c, pg_error(c->pg));
}

/* ---- idle connections ---- */

/* Reads whatever the server sent to a connection nobody uses: EOF, or a
 * FATAL notice before it hangs up (a restart, pg_terminate_backend). */
static bool conn_idle_alive(struct pool_conn *c)
{
	if (!PQconsumeInput(c->pg))
		return false;
	/* PQconsumeInput only buffers; PQisBusy parses, which hands an
	 * ErrorResponse to conn_on_notice. */
	PQisBusy(c->pg);
	return !c->doomed && PQstatus(c->pg) == CONNECTION_OK;
}

static void conn_idle_event(struct pool_conn *c)
{
	if (!conn_idle_alive(c)) {
		log_debug("pool: an idle connection closed: %s",
			  pg_error(c->pg));
		conn_close(c);
		return;
	}
	if (conn_arm(c, EV_READ, -1) < 0) {
		c->broken = true;
		conn_close(c);
	}
}

/* The most recently used idle connection that is still alive, or NULL. */
static struct pool_conn *pool_take_idle(struct pool *pool)
{
	struct pool_conn *c;

	while ((c = TAILQ_FIRST(&pool->idle))) {
		/* Its read event may not have run yet this iteration. */
		if (conn_idle_alive(c)) {
			conn_set_state(c, CONN_HELD);
			return c;
		}
		conn_close(c);
	}
	return NULL;
}

/* ---- running a batch ---- */

/* Waits for results, and also for write readiness while PQflush reports
 * unsent output (flushed == 1): the server may stop reading our
 * statements until we read its results. */
static int conn_wait_results(struct pool_conn *c, int flushed)
{
	return conn_arm(c, flushed ? EV_READ | EV_WRITE : EV_READ, -1);
}

static void conn_run_finish(struct pool_conn *c, const struct pf_err *err)
{
	pool_run_cb cb = c->cb;
	void *arg = c->arg;
	struct pool_stmt *stmts = c->stmts;
	size_t n = c->n;

	c->cb = NULL;
	c->stmts = NULL;
	if (err)
		c->broken = true;
	conn_set_state(c, CONN_HELD);
	cb(c, stmts, n, err, arg); /* last: cb may release or run again */
}

static void conn_run_failed(struct pool_conn *c)
{
	struct pf_err err;

	log_warn("pool: lost the database connection: %s", pg_error(c->pg));
	pf_err_set(&err, 503, "database_unavailable", NULL,
		   "lost the connection to the database");
	conn_run_finish(c, &err);
}

/* The prepared statement of sql on c, or NULL. */
static struct prepared *conn_find(struct pool_conn *c, const char *sql,
				  uint64_t hash)
{
	for (size_t i = 0; i < c->nprepared; i++)
		if (c->prepared[i].hash == hash &&
		    strcmp(c->prepared[i].sql, sql) == 0)
			return &c->prepared[i];
	return NULL;
}

/* Drops sql from the cache (its Parse failed: it does not exist). */
static void conn_forget(struct pool_conn *c, const char *sql)
{
	struct prepared *p = conn_find(c, sql, text_hash(0, sql));

	if (!p)
		return;
	free(p->sql);
	*p = c->prepared[--c->nprepared];
}

/* Gives a result to the statement its command answers for: a Parse's
 * result only when it failed (then the statement's own Execute is
 * aborted, and the error is the statement's). */
static void conn_keep_result(struct pool_conn *c, PGresult *res)
{
	const struct slot *sl = c->cur < c->nslots ? &c->slots[c->cur] : NULL;
	struct pool_stmt *st = sl && sl->stmt >= 0 ? &c->stmts[sl->stmt] : NULL;
	bool failed = PQresultStatus(res) == PGRES_FATAL_ERROR;

	if (sl && sl->prepare && failed && st)
		conn_forget(c, st->sql);
	if (st && !st->result && (!sl->prepare || failed)) {
		st->result = res;
		st->done_ms = clock_ms();
	} else
		PQclear(res);
}

/* Collects every complete result. Returns 1 at the batch's sync, 0 when
 * more input is needed, -1 when the connection failed. */
static int conn_collect(struct pool_conn *c)
{
	PGresult *res;

	/* PQgetResult would block on a partial result: only call it when
	 * PQisBusy says a whole one is buffered. */
	while (!PQisBusy(c->pg)) {
		res = PQgetResult(c->pg);
		if (!res) {
			/* In pipeline mode a NULL ends each statement's
			 * results; a NULL before any result means nothing
			 * is buffered yet. */
			if (!c->seen)
				break;
			c->seen = false;
			c->cur++;
			continue;
		}
		c->seen = true;
		switch (PQresultStatus(res)) {
		case PGRES_PIPELINE_SYNC:
			PQclear(res); /* no NULL follows a sync */
			return 1;
		case PGRES_PIPELINE_ABORTED: /* after an earlier error */
			/* An aborted Parse never ran: not prepared. */
			if (c->cur < c->nslots && c->slots[c->cur].prepare)
				conn_forget(
					c, c->stmts[c->slots[c->cur].stmt].sql);
			PQclear(res);
			break;
		default:
			conn_keep_result(c, res);
			break;
		}
	}
	return PQstatus(c->pg) == CONNECTION_OK ? 0 : -1;
}

static void conn_run_event(struct pool_conn *c, short what)
{
	int flushed, r;

	/* Read first: consuming input is what frees the server to accept
	 * the rest of our output, which PQflush then sends. */
	if ((what & EV_READ) && !PQconsumeInput(c->pg)) {
		conn_run_failed(c);
		return;
	}
	flushed = PQflush(c->pg);
	r = flushed < 0 ? -1 : conn_collect(c);
	if (r > 0)
		conn_run_finish(c, NULL);
	else if (r < 0 || conn_wait_results(c, flushed) < 0)
		conn_run_failed(c);
}

static void conn_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct pool_conn *c = arg;

	switch (c->state) {
	case CONN_CONNECTING:
		conn_connect_step(c, what);
		break;
	case CONN_IDLE:
		conn_idle_event(c);
		break;
	case CONN_RUNNING:
		conn_run_event(c, what);
		break;
	case CONN_HELD:
		/* Input while its holder runs no batch: left for the next
		 * batch (or the idle check) to read. Until then the socket
		 * stays readable, so stop watching it. */
		conn_disarm(c);
		break;
	case CONN_NEW:
		break;
	}
}

static int conn_add_slot(struct pool_conn *c, int stmt, bool prepare)
{
	struct slot *s = realloc(c->slots, (c->nslots + 1) * sizeof(*s));

	if (!s)
		return -1;
	c->slots = s;
	s[c->nslots++] = (struct slot){stmt, prepare};
	return 0;
}

/* Room for one more prepared statement: the least recently used one is
 * deallocated, in the same pipeline. */
static struct prepared *conn_cache_slot(struct pool_conn *c)
{
	struct prepared *p, *lru;
	char sql[48];

	if ((int)c->nprepared < c->pool->prepare_cache) {
		p = realloc(c->prepared, (c->nprepared + 1) * sizeof(*p));
		if (!p)
			return NULL;
		c->prepared = p;
		p = &c->prepared[c->nprepared++];
		p->sql = NULL;
		return p;
	}
	lru = &c->prepared[0];
	for (size_t i = 1; i < c->nprepared; i++)
		if (c->prepared[i].last_used < lru->last_used)
			lru = &c->prepared[i];
	snprintf(sql, sizeof(sql), "DEALLOCATE \"%s\"", lru->name);
	if (conn_add_slot(c, -1, false) < 0 ||
	    !PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0))
		return NULL;
	free(lru->sql);
	lru->sql = NULL;
	return lru;
}

/* Sends one statement: by name when it is prepared on c, else Parse (kept
 * for next time) then Execute, both in this pipeline, so preparing costs
 * no round trip. */
static int conn_send(struct pool_conn *c, const struct pool_stmt *st, int i)
{
	uint64_t hash;
	struct prepared *p;

	if (!st->prepare || c->pool->prepare_cache <= 0)
		/* Extended protocol (the only one pipeline mode allows);
		 * NULL types let the server infer them (a binary parameter
		 * is cast in the SQL to the type it is sent as); results
		 * in text. */
		return conn_add_slot(c, i, false) == 0 &&
				       PQsendQueryParams(
					       c->pg, st->sql, st->nparams,
					       NULL, st->params, st->lengths,
					       st->formats, 0)
			       ? 0
			       : -1;
	hash = text_hash(0, st->sql);
	p = conn_find(c, st->sql, hash);
	if (!p) {
		p = conn_cache_slot(c);
		if (!p)
			return -1;
		if (!(p->sql = strdup(st->sql))) {
			*p = c->prepared[--c->nprepared];
			return -1;
		}
		p->hash = hash;
		snprintf(p->name, sizeof(p->name), "pf%lu", ++c->next_name);
		if (conn_add_slot(c, i, true) < 0 ||
		    !PQsendPrepare(c->pg, p->name, st->sql, st->nparams, NULL))
			return -1;
	}
	p->last_used = ++c->use_clock;
	return conn_add_slot(c, i, false) == 0 &&
			       PQsendQueryPrepared(c->pg, p->name, st->nparams,
						   st->params, st->lengths,
						   st->formats, 0)
		       ? 0
		       : -1;
}

int pool_run(struct pool_conn *c, struct pool_stmt *stmts, size_t n,
	     pool_run_cb cb, void *arg, struct pf_err *err)
{
	size_t i;
	int flushed;

	if (c->state != CONN_HELD)
		return pf_err_set(err, 500, "internal", NULL, "internal error");
	for (i = 0; i < n; i++) {
		stmts[i].result = NULL;
		stmts[i].done_ms = 0;
	}
	if (c->broken || PQstatus(c->pg) != CONNECTION_OK)
		goto lost;
	c->stmts = stmts;
	c->nslots = 0;
	for (i = 0; i < n; i++)
		if (conn_send(c, &stmts[i], (int)i) < 0)
			goto failed;
	if (!PQpipelineSync(c->pg))
		goto failed;
	c->n = n;
	c->cur = 0;
	c->seen = false;
	c->cb = cb;
	c->arg = arg;
	conn_set_state(c, CONN_RUNNING);
	flushed = PQflush(c->pg);
	if (flushed >= 0 && conn_wait_results(c, flushed) == 0)
		return 0;
	c->cb = NULL;
	c->stmts = NULL;
	conn_set_state(c, CONN_HELD);
failed:
	/* Part of a batch may sit in libpq's queue: the connection can no
	 * longer be trusted to line results up with statements. */
	c->broken = true;
	if (PQstatus(c->pg) == CONNECTION_OK) {
		log_error("pool: could not send a query: %s", pg_error(c->pg));
		return pf_err_set(err, 500, "internal", NULL, "internal error");
	}
lost:
	c->broken = true;
	return pf_err_set(err, 503, "database_unavailable", NULL,
			  "lost the connection to the database");
}

/* Forgets the batch in flight, if any: its callback will not fire and
 * the results it collected so far are cleared. */
static void conn_drop_batch(struct pool_conn *c)
{
	if (c->state != CONN_RUNNING)
		return;
	for (size_t i = 0; i < c->n; i++) {
		PQclear(c->stmts[i].result);
		c->stmts[i].result = NULL;
	}
	c->cb = NULL;
	c->stmts = NULL;
}

void pool_abandon(struct pool_conn *c)
{
	if (!c)
		return;
	conn_drop_batch(c);
	/* libpq 15 has no non-blocking cancel: closing the connection is
	 * what stops the server's work. */
	conn_close(c);
}

void pool_release(struct pool_conn *c, bool reusable)
{
	if (!c)
		return;
	if (c->state == CONN_RUNNING) {
		pool_abandon(c);
		return;
	}
	/* A connection left inside a transaction (a batch that did not end
	 * with COMMIT/ROLLBACK) would leak it into the next request. */
	if (!reusable || c->broken || PQstatus(c->pg) != CONNECTION_OK ||
	    PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		conn_close(c);
		return;
	}
	conn_to_idle(c);
}

/* ---- waiters ---- */

static void wait_free(struct pool_wait *w)
{
	struct pool *pool = w->pool;

	TAILQ_REMOVE(&pool->waits, w, link);
	pool->nwaiting--;
	if (w->timer)
		event_free(w->timer);
	free(w);
}

static void wait_finish(struct pool_wait *w, struct pool_conn *c,
			const struct pf_err *err)
{
	pool_acquire_cb cb = w->cb;
	void *arg = w->arg;

	wait_free(w);
	cb(c, err, arg); /* last: cb may acquire, release or cancel */
}

static void wait_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct pf_err err;

	pf_err_set(&err, 503, "database_unavailable", NULL,
		   "timed out waiting for a database connection");
	wait_finish(arg, NULL, &err);
}

/* Starts connections for waiters that no connect under way will serve.
 * Only while up: when down, the retry timer owns reconnecting, and at
 * start the first connect has to tell us first. */
static void pool_grow(struct pool *pool)
{
	while (pool->health == HEALTH_UP &&
	       pool->nwaiting > pool->nconnecting && pool->nopen < pool->size)
		conn_start(pool);
}

/* Only waits queued before this dispatch began (seq < limit) are served or
 * failed, so a callback that acquires again cannot keep us here. */
static void pool_on_dispatch(evutil_socket_t fd, short what, void *arg)
{
	struct pool *pool = arg;
	unsigned long limit = pool->wait_seq;
	struct pool_wait *w;
	struct pool_conn *c;
	struct pf_err err;

	if (pool->up_pending) {
		pool->up_pending = false;
		if (pool->on_up)
			pool->on_up(pool->on_up_arg);
	}
	while ((w = TAILQ_FIRST(&pool->waits)) && w->seq < limit &&
	       (c = pool_take_idle(pool)))
		wait_finish(w, c, NULL);
	pool_grow(pool);
	if (pool->health != HEALTH_DOWN)
		return;
	pf_err_set(&err, 503, "database_unavailable", NULL,
		   "the database is unavailable");
	while ((w = TAILQ_FIRST(&pool->waits)) && w->seq < limit)
		wait_finish(w, NULL, &err);
}

struct pool_wait *pool_acquire(struct pool *pool, int timeout_ms,
			       pool_acquire_cb cb, void *arg)
{
	struct pool_wait *w = calloc(1, sizeof(*w));
	struct timeval tv = ms_to_tv(timeout_ms);

	if (!w)
		return NULL;
	w->pool = pool;
	w->seq = pool->wait_seq++;
	w->cb = cb;
	w->arg = arg;
	if (timeout_ms > 0) {
		w->timer = evtimer_new(pool->base, wait_on_timeout, w);
		if (!w->timer || evtimer_add(w->timer, &tv) < 0) {
			if (w->timer)
				event_free(w->timer);
			free(w);
			return NULL;
		}
	}
	TAILQ_INSERT_TAIL(&pool->waits, w, link);
	pool->nwaiting++;
	pool_schedule(pool);
	return w;
}

void pool_cancel(struct pool_wait *w)
{
	if (w)
		wait_free(w);
}

/* ---- the pool ---- */

/* The startup packet's "options": the user's own (from the conninfo, else
 * PGOPTIONS, which libpq would otherwise have used), then ours, which come
 * last so that they win. */
static char *session_options(const char *conninfo, int statement_timeout_ms,
			     const char *plan_cache_mode)
{
	static const char fmt[] =
		"%s%s-c TimeZone=UTC -c DateStyle=ISO "
		"-c IntervalStyle=postgres -c extra_float_digits=1 "
		"-c statement_timeout=%d%s%s";
	const char *pcm = plan_cache_mode ? " -c plan_cache_mode=" : "";
	const char *mode = plan_cache_mode ? plan_cache_mode : "";
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	const char *user = NULL;
	char *out = NULL;
	int len;

	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "options") && o->val)
			user = o->val;
	if (!user)
		user = getenv("PGOPTIONS");
	if (!user)
		user = "";
	len = snprintf(NULL, 0, fmt, user, *user ? " " : "",
		       statement_timeout_ms, pcm, mode);
	if (len >= 0 && (out = malloc((size_t)len + 1)))
		snprintf(out, (size_t)len + 1, fmt, user, *user ? " " : "",
			 statement_timeout_ms, pcm, mode);
	PQconninfoFree(opts);
	return out;
}

struct pool *pool_new(struct event_base *base, const struct pool_options *opt)
{
	struct pool *pool = calloc(1, sizeof(*pool));

	if (!pool)
		return NULL;
	TAILQ_INIT(&pool->conns);
	TAILQ_INIT(&pool->idle);
	TAILQ_INIT(&pool->waits);
	pool->base = base;
	pool->size = opt->size > 0 ? opt->size : 1;
	pool->connect_timeout_ms = opt->connect_timeout_ms > 0
					   ? opt->connect_timeout_ms
					   : CONNECT_TIMEOUT_MS;
	pool->backoff_min_ms =
		opt->backoff_min_ms > 0 ? opt->backoff_min_ms : BACKOFF_MIN_MS;
	pool->prepare_cache = opt->prepare_cache;
	pool->backoff_max_ms =
		opt->backoff_max_ms > 0 ? opt->backoff_max_ms : BACKOFF_MAX_MS;
	if (pool->backoff_max_ms < pool->backoff_min_ms)
		pool->backoff_max_ms = pool->backoff_min_ms;
	pool->backoff_ms = pool->backoff_min_ms;
	pool->conninfo = strdup(opt->conninfo ? opt->conninfo : "");
	pool->options = session_options(
		pool->conninfo,
		opt->statement_timeout_ms > 0 ? opt->statement_timeout_ms : 0,
		opt->plan_cache_mode);
	pool->dispatch_ev = event_new(base, -1, 0, pool_on_dispatch, pool);
	pool->retry_ev = evtimer_new(base, pool_on_retry, pool);
	if (!pool->conninfo || !pool->options || !pool->dispatch_ev ||
	    !pool->retry_ev) {
		pool_free(pool);
		return NULL;
	}
	conn_start(pool); /* eagerly: learn whether the database is up */
	return pool;
}

void pool_free(struct pool *pool)
{
	struct pool_wait *w;
	struct pool_conn *c;

	if (!pool)
		return;
	while ((w = TAILQ_FIRST(&pool->waits)))
		wait_free(w);
	while ((c = TAILQ_FIRST(&pool->conns))) {
		conn_drop_batch(c);
		conn_destroy(c);
	}
	if (pool->dispatch_ev)
		event_free(pool->dispatch_ev);
	if (pool->retry_ev)
		event_free(pool->retry_ev);
	free(pool->conninfo);
	free(pool->options);
	free(pool);
}

bool pool_prepares(const struct pool *pool)
{
	return pool->prepare_cache > 0;
}

void pool_get_stats(const struct pool *pool, struct pool_stats *out)
{
	*out = (struct pool_stats){
		.size = pool->size,
		.open = pool->nopen,
		.idle = pool->nidle,
		.busy = pool->nheld,
		.waiting = pool->nwaiting,
		.up = pool->health == HEALTH_UP,
		.connects = pool->connects,
		.connect_failures = pool->connect_failures,
	};
}

void pool_on_up(struct pool *pool, void (*cb)(void *arg), void *arg)
{
	pool->on_up = cb;
	pool->on_up_arg = arg;
}
