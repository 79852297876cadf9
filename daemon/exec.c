/*
 * Runs a plan (see exec.h): one state machine per request, [WAIT_BUDGET,
 * when the rows budget queues it] -> WAIT_CONN -> RUNNING (one pipelined
 * batch per round) -> [ROLLBACK] -> DONE, or CANCELLED when the client
 * leaves. Admitted once, before it takes a connection, a request never
 * waits for the budget again. Each round sends every query whose parents
 * are known; results go to the graph, which gives the next keys.
 * Owns the batch's statements and the keys arrays; never holds a PGresult
 * past the batch callback (the graph owns the data results).
 */
#include "exec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "hash.h"
#include "log.h"
#include "planmode.h"

static const char SQL_BEGIN[] =
	"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
/* plan_cache_mode for the rest of the transaction, by enum plan_mode: see
 * set_plan_mode. A transaction starts on auto, which the main query (the
 * only query on it, and always the first) uses, so auto is sent only if a
 * query on it ever followed a forced one. */
static const char *const SQL_PLAN_MODE[] = {
	[PLAN_AUTO] = "SET LOCAL plan_cache_mode = auto",
	[PLAN_GENERIC] = "SET LOCAL plan_cache_mode = force_generic_plan",
	[PLAN_CUSTOM] = "SET LOCAL plan_cache_mode = force_custom_plan",
};

enum exec_state {
	EX_WAIT_BUDGET, /* queued by the rows budget: no connection yet */
	EX_WAIT_CONN,	/* pool_acquire under way */
	EX_RUNNING,	/* a batch of the transaction in flight */
	EX_ROLLBACK,	/* the ROLLBACK after an error in flight */
	EX_DONE,	/* done fired */
	EX_CANCELLED,	/* exec_cancel: done never fires */
};

/* Per plan query. */
struct exec_query {
	bool known; /* its result (or NULL: skipped) is in the graph */
	bool sent;  /* in a batch */
	struct graph_keys keys; /* $1 of a keyed query, as sent */
	const char **params;	/* as sent */
	int *formats;		/* NULL: all text; else nparams, $1 binary */
	int *lengths;		/* with formats: the binary $1's bytes */
	long rows;
	double ms;
	enum plan_mode mode; /* the plan it ran on */
	uint64_t plan_key;   /* its planmode_key, when planmode chose */
};

/* A statement of the batch in flight: q is its plan query, or -1 for
 * BEGIN/COMMIT/ROLLBACK/SET. */
struct exec {
	struct pool *pool;
	const struct plan *plan;
	struct exec_options opt;
	exec_done_cb done;
	void *arg;
	enum exec_state state;
	struct pool_wait *wait;
	struct pool_conn *conn;
	struct graph *g;
	struct exec_query *qs;
	int *order; /* queries in the order they were sent */
	int nsent;
	/* 2 * nqueries + 2: BEGIN, each query with a SET before it at
	 * most, COMMIT */
	struct pool_stmt *stmts;
	int *stmt_query;
	size_t nstmts;
	bool began;	     /* BEGIN sent */
	bool in_tx;	     /* BEGIN sent, no COMMIT done yet */
	enum plan_mode mode; /* the transaction's plan_cache_mode so far */
	double t_first;	     /* ms, monotonic; 0 = nothing sent */
	double t_batch;
	double t_last;
	struct exec_stats stats;
	struct pf_err err;	/* the error done reports */
	struct budget_user *bu; /* NULL without a rows budget */
	size_t batch_bytes;	/* of its results that the graph keeps */
};

static void on_conn(struct pool_conn *conn, const struct pf_err *err,
		    void *arg);

/* ---- the end ---- */

/* Fires done (err NULL on success) after giving the connection back. Last
 * thing done with ex: the callback may free it. */
static void finish(struct exec *ex, struct pool_conn *conn, bool reusable,
		   const struct pf_err *err)
{
	if (conn)
		pool_release(conn, reusable);
	ex->conn = NULL;
	ex->state = EX_DONE;
	/* Its results are all in: the next request of its shape will know
	 * what it takes. A failure would teach too small a size. */
	if (!err && ex->bu && ex->began)
		budget_done(ex->bu);
	if (ex->t_first > 0)
		ex->stats.db_ms = ex->t_last - ex->t_first;
	if (err && err != &ex->err)
		ex->err = *err;
	ex->done(ex, err ? &ex->err : NULL, ex->arg);
}

static void on_rollback(struct pool_conn *conn, struct pool_stmt *stmts,
			size_t n, const struct pf_err *err, void *arg)
{
	struct exec *ex = arg;
	PGresult *res = n > 0 ? stmts[0].result : NULL;
	bool ok = !err && res && PQresultStatus(res) == PGRES_COMMAND_OK;

	PQclear(res);
	stmts[0].result = NULL;
	if (!ok)
		log_warn("exec: ROLLBACK failed: %s",
			 res ? PQresultErrorMessage(res) : "no result");
	finish(ex, conn, ok, &ex->err);
}

/* Ends the request with ex->err: rolls back first when the transaction is
 * open (a failed statement aborted it), so the connection can be reused. */
static void fail(struct exec *ex)
{
	struct pool_conn *conn = ex->conn;
	struct pf_err err;

	if (!ex->in_tx) {
		finish(ex, conn, true, &ex->err);
		return;
	}
	ex->in_tx = false;
	ex->state = EX_ROLLBACK;
	ex->stmts[0] = (struct pool_stmt){.sql = SQL_ROLLBACK};
	ex->stmt_query[0] = -1;
	ex->nstmts = 1;
	if (pool_run(conn, ex->stmts, 1, on_rollback, ex, &err))
		finish(ex, conn, false, &ex->err);
}

/* ---- results ---- */

/* For log lines: the lookup path, "main", or "control" (BEGIN/COMMIT). */
static const char *query_name(const struct plan *plan, int q)
{
	if (q < 0)
		return "control";
	return plan->queries[q].path[0] ? plan->queries[q].path : "main";
}

/* SQLSTATE -> error, once for the whole daemon (STYLE.md). */
static void map_error(const PGresult *res, int q, const struct plan *plan,
		      struct pf_err *err)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (!state)
		state = "";
	if (!strcmp(state, "57014")) {
		pf_err_set(err, 504, "statement_timeout", "",
			   "canceling statement due to statement timeout");
	} else if (!strncmp(state, "22", 2)) {
		pf_err_set(err, 422, "bad_value", "", "%s",
			   msg ? msg : "invalid value");
	} else if ((!strncmp(state, "08", 2) && strcmp(state, "08P01")) ||
		   !strncmp(state, "53", 2) || !strcmp(state, "57P01") ||
		   !strcmp(state, "57P02") || !strcmp(state, "57P03")) {
		log_warn("exec: database unavailable (SQLSTATE %s): %s", state,
			 msg ? msg : "");
		pf_err_set(err, 503, "database_unavailable", "",
			   "the database is unavailable");
	} else {
		log_error("exec: %s query failed (SQLSTATE %s): %s; sql: %s",
			  query_name(plan, q), state, msg ? msg : "",
			  q >= 0 ? plan->queries[q].sql : "");
		pf_err_set(err, 500, "internal", "", "internal error");
	}
}

/* Checks one statement's result; the first problem of a batch is the one
 * reported. Returns 0 when the result is what the statement should give. */
static int check_result(struct exec *ex, const PGresult *res, int q)
{
	ExecStatusType want = q >= 0 ? PGRES_TUPLES_OK : PGRES_COMMAND_OK;

	if (res && PQresultStatus(res) == want)
		return 0;
	if (ex->err.status)
		return -1;
	if (res && PQresultStatus(res) == PGRES_FATAL_ERROR) {
		map_error(res, q, ex->plan, &ex->err);
		return -1;
	}
	log_error("exec: unexpected result %s for the %s query",
		  res ? PQresStatus(PQresultStatus(res)) : "(none)",
		  query_name(ex->plan, q));
	return pf_err_set(&ex->err, 500, "internal", "", "internal error");
}

/* Keys are only kept for the debug listing. */
static void forget_params(struct exec *ex, int q)
{
	free(ex->qs[q].keys.value);
	free(ex->qs[q].params);
	free(ex->qs[q].formats);
	free(ex->qs[q].lengths);
	ex->qs[q].formats = ex->qs[q].lengths = NULL;
	ex->qs[q].keys = (struct graph_keys){0};
	ex->qs[q].params = NULL;
}

/* The bytes libpq keeps for result q and the graph's index over it, which
 * the graph holds until the request ends: counted in the rows budget
 * (budget_hold, per batch). */
static void count_bytes(struct exec *ex, const PGresult *res, int q)
{
	if (ex->bu)
		ex->batch_bytes +=
			PQresultMemorySize(res) + graph_index_bytes(ex->g, q);
}

/* Tells planmode how long query q took on its plan; a change of plan is
 * logged, since it changes what the database does for every request of
 * that shape. */
static void learn_plan(struct exec *ex, int q, double ms)
{
	struct planmode_choice now;

	if (planmode_learn(ex->opt.plans, ex->qs[q].plan_key, ex->qs[q].mode,
			   ms, &now))
		log_info("exec: the %s level now runs on its %s plan (fastest "
			 "of the last runs: generic %.3f ms, custom %.3f ms)",
			 query_name(ex->plan, q),
			 now.plan == PLAN_CUSTOM ? "custom" : "generic",
			 now.generic_ms, now.custom_ms);
}

static void take_result(struct exec *ex, size_t i, double ms)
{
	PGresult *res = ex->stmts[i].result;
	int q = ex->stmt_query[i];
	int bad = check_result(ex, res, q);

	ex->stmts[i].result = NULL;
	if (q < 0) {
		if (!bad && ex->stmts[i].sql == SQL_COMMIT)
			ex->in_tx = false;
		PQclear(res);
		return;
	}
	ex->qs[q].ms = ms;
	if (!bad && ex->qs[q].plan_key)
		learn_plan(ex, q, ex->stmts[i].done_ms - ex->t_batch);
	if (!ex->opt.debug)
		forget_params(ex, q);
	if (bad) {
		PQclear(res);
		return;
	}
	ex->qs[q].rows = PQntuples(res);
	ex->stats.rows += ex->qs[q].rows;
	graph_set_result(ex->g, q, res);
	count_bytes(ex, res, q);
	ex->qs[q].known = true;
}

static void run_round(struct exec *ex);

static void on_batch(struct pool_conn *conn, struct pool_stmt *stmts, size_t n,
		     const struct pf_err *err, void *arg)
{
	struct exec *ex = arg;

	ex->t_last = clock_ms();
	ex->batch_bytes = 0;
	if (err) {
		for (size_t i = 0; i < n; i++) {
			PQclear(stmts[i].result);
			stmts[i].result = NULL;
		}
		finish(ex, conn, false, err);
		return;
	}
	for (size_t i = 0; i < n; i++)
		take_result(ex, i, ex->t_last - ex->t_batch);
	if (ex->bu)
		budget_hold(ex->bu, ex->batch_bytes);
	if (!ex->err.status && ex->opt.max_rows > 0 &&
	    graph_rows(ex->g) > ex->opt.max_rows)
		pf_err_set(&ex->err, 413, "too_many_rows", "",
			   "the result would have more than %ld rows",
			   ex->opt.max_rows);
	if (ex->err.status)
		fail(ex);
	else if (!ex->in_tx)
		finish(ex, conn, true, NULL);
	else
		run_round(ex);
}

/* ---- rounds ---- */

/* The results that a node's objects are computed from are all known: its
 * src, and for joined/backref nodes the nodes they derive from. */
static bool node_ready(const struct exec *ex, int node)
{
	const struct plan_node *n;

	if (node < 0)
		return true;
	n = &ex->plan->nodes[node];
	if (!ex->qs[n->src].known)
		return false;
	switch (n->kind) {
	case NODE_QUERY:
		return true;
	case NODE_JOINED:
		return node_ready(ex, n->parent);
	case NODE_BACKREF:
		return node_ready(ex, n->parent) &&
		       (n->parent < 0 ||
			node_ready(ex, ex->plan->nodes[n->parent].parent));
	}
	return false;
}

/* Prepared: BEGIN, COMMIT and SET too are parsed once per connection. */
static void add_stmt(struct exec *ex, const char *sql, int q)
{
	ex->stmts[ex->nstmts] = (struct pool_stmt){.sql = sql, .prepare = true};
	ex->stmt_query[ex->nstmts] = q;
	ex->nstmts++;
}

/*
 * From this many keys a keyed query always runs on a custom plan, made for
 * its actual keys: timing its generic plan would cost too much. That plan
 * assumes a 10-element array: for 10,000 authors' books it picks the
 * author_id index and a sort that spills 13 MB, where the custom plan reads
 * the primary key in order (pgbench, one execution: 303 vs 227 ms at 10,000
 * keys, 97 vs 78 at 3,000); planning 10,000 keys costs 4 ms.
 */
#define CUSTOM_PLAN_MIN_KEYS 1000

/*
 * The plan query q runs on. Below CUSTOM_PLAN_MIN_KEYS, planmode's, which
 * times both (planmode.h). PostgreSQL's own choice compares estimated
 * costs, the generic plan's made for a 10-key array: with one key it plans
 * every execution anew for a plan of the same shape (one parent's [:5] of
 * its comments: 5,900 -> 8,000 requests/s on the generic plan). Without
 * planmode, the generic plan. The main query keeps PostgreSQL's choice:
 * its parameters are the client's filter values, where a custom plan can
 * matter; so does every query when the pool prepares nothing.
 */
static enum plan_mode choose_plan(struct exec *ex, int q, size_t nkeys)
{
	const struct plan_query *pq = &ex->plan->queries[q];

	/* Unprepared, a statement is planned for its values every time
	 * anyway: forcing the generic plan would only make it worse. */
	if (ex->opt.session_plans || !pq->keyed || !pool_prepares(ex->pool))
		return PLAN_AUTO;
	if (nkeys >= CUSTOM_PLAN_MIN_KEYS)
		return PLAN_CUSTOM;
	if (!ex->opt.plans)
		return PLAN_GENERIC;
	ex->qs[q].plan_key = planmode_key(text_hash(0, pq->sql), nkeys);
	return planmode_pick(ex->opt.plans, ex->qs[q].plan_key);
}

/* The transaction begins on PostgreSQL's choice; SET LOCAL changes it for
 * the statements after, until COMMIT. */
static void set_plan_mode(struct exec *ex, enum plan_mode mode)
{
	if (mode == ex->mode)
		return;
	add_stmt(ex, SQL_PLAN_MODE[mode], -1);
	ex->mode = mode;
}

/* Puts query q in the batch, with its keys as $1 when keyed (ex owns them
 * from now on, whatever this returns). */
static int add_query(struct exec *ex, int q, const struct graph_keys *keys)
{
	const struct plan_query *pq = &ex->plan->queries[q];
	struct exec_query *eq = &ex->qs[q];
	struct pool_stmt *st;

	eq->keys = *keys;
	eq->params = calloc((size_t)pq->nparams + 1, sizeof(*eq->params));
	if (!eq->params)
		return -1;
	if (keys->binary) {
		/* libpq reads a format (and a length) for every parameter */
		eq->formats = calloc((size_t)pq->nparams, sizeof(int));
		eq->lengths = calloc((size_t)pq->nparams, sizeof(int));
		if (!eq->formats || !eq->lengths)
			return -1;
		eq->formats[0] = 1;
		eq->lengths[0] = keys->len;
	}
	for (int i = 0; i < pq->nparams; i++)
		eq->params[i] = pq->params[i];
	if (pq->keyed && pq->nparams > 0)
		eq->params[0] = keys->value;
	eq->sent = true;
	eq->mode = choose_plan(ex, q, keys->n);
	set_plan_mode(ex, eq->mode);
	/* The SQL text depends on the request's shape only: prepared once
	 * per connection (add_stmt), it is parsed once per shape. */
	add_stmt(ex, pq->sql, q);
	st = &ex->stmts[ex->nstmts - 1];
	st->nparams = pq->nparams;
	st->params = eq->params;
	st->formats = eq->formats;
	st->lengths = eq->lengths;
	return 0;
}

static void skip_query(struct exec *ex, int q)
{
	graph_set_result(ex->g, q, NULL);
	ex->qs[q].known = true;
}

/* Adds to the batch every query whose parents are known. Skipping one (no
 * keys, or empty) makes its result known, which may make others ready:
 * repeat until nothing changes. Returns -1 when out of memory. */
static int add_ready(struct exec *ex)
{
	const struct plan *p = ex->plan;
	bool changed = true;

	while (changed) {
		changed = false;
		for (size_t q = 0; q < p->nqueries; q++) {
			const struct plan_query *pq = &p->queries[q];
			struct exec_query *eq = &ex->qs[q];
			struct graph_keys keys = {0};

			if (eq->known || eq->sent ||
			    (pq->keyed && !node_ready(ex, pq->parent_node)))
				continue;
			/* Binary keys, but in the debug listing, which shows
			 * $1 as the text PostgreSQL would take it in. */
			if (!pq->empty && pq->keyed &&
			    graph_keys(ex->g, (int)q, !ex->opt.debug, &keys))
				return -1;
			if (pq->empty || (pq->keyed && !keys.n)) {
				skip_query(ex, (int)q);
				changed = true;
			} else if (add_query(ex, (int)q, &keys)) {
				return -1;
			}
		}
	}
	return 0;
}

static bool all_sent(const struct exec *ex)
{
	for (size_t q = 0; q < ex->plan->nqueries; q++)
		if (!ex->qs[q].known && !ex->qs[q].sent)
			return false;
	return true;
}

/* One round: BEGIN (first round), every ready query, and COMMIT when no
 * query is left for a later round. */
static void run_round(struct exec *ex)
{
	struct pool_conn *conn = ex->conn;
	bool first = !ex->began;
	size_t ndata;
	bool last;

	ex->nstmts = 0;
	if (first)
		add_stmt(ex, SQL_BEGIN, -1);
	if (add_ready(ex)) {
		log_error("exec: out of memory");
		pf_err_set(&ex->err, 500, "internal", "", "internal error");
		fail(ex);
		return;
	}
	ndata = 0;
	for (size_t i = 0; i < ex->nstmts; i++)
		ndata += ex->stmt_query[i] >= 0;
	last = all_sent(ex);
	if (ndata == 0 && !last) {
		log_error("exec: plan cannot progress: a query's parents "
			  "never become known");
		pf_err_set(&ex->err, 500, "internal", "", "internal error");
		fail(ex);
		return;
	}
	if (ndata == 0 && first) {
		/* Nothing to read at all (the main query is empty): no
		 * transaction needed. */
		finish(ex, conn, true, NULL);
		return;
	}
	if (last)
		add_stmt(ex, SQL_COMMIT, -1);
	ex->state = EX_RUNNING;
	ex->began = true;
	ex->in_tx = true;
	ex->t_batch = clock_ms();
	if (ex->t_first == 0)
		ex->t_first = ex->t_batch;
	/* max_rows is checked once a batch is in (on_batch): every statement
	 * is capped one row past it (plan_build), which bounds what a batch
	 * can hold. */
	if (pool_run(conn, ex->stmts, ex->nstmts, on_batch, ex, &ex->err)) {
		finish(ex, conn, false, &ex->err);
		return;
	}
	for (size_t i = 0; i < ex->nstmts; i++)
		if (ex->stmt_query[i] >= 0)
			ex->order[ex->nsent++] = ex->stmt_query[i];
	ex->stats.queries += (int)ndata;
}

/* Asks the pool for a connection: on_conn fires from the loop, never
 * from here (so never before exec_start returns). -1: out of memory. */
static int acquire(struct exec *ex)
{
	ex->state = EX_WAIT_CONN;
	ex->wait = pool_acquire(ex->pool, ex->opt.pool_timeout_ms, on_conn, ex);
	return ex->wait ? 0 : -1;
}

/* The rows budget admitted the request (from the loop), or it waited past
 * --pool-timeout: then it has no connection and no transaction yet. */
static void on_admitted(const struct pf_err *err, void *arg)
{
	struct exec *ex = arg;

	if (err) {
		finish(ex, NULL, false, err);
		return;
	}
	if (acquire(ex)) {
		log_error("exec: out of memory");
		pf_err_set(&ex->err, 500, "internal", "", "internal error");
		finish(ex, NULL, false, &ex->err);
	}
}

static void on_conn(struct pool_conn *conn, const struct pf_err *err, void *arg)
{
	struct exec *ex = arg;

	ex->wait = NULL;
	if (!conn) {
		finish(ex, NULL, false, err);
		return;
	}
	ex->conn = conn;
	ex->state = EX_RUNNING;
	run_round(ex);
}

/* ---- the API ---- */

/* The power of two that n is under: 0 for 0, 1 for 1, 2 for 2-3, ... */
static unsigned size_class(long long n)
{
	unsigned c = 0;

	for (; n > 0; n >>= 1)
		c++;
	return c;
}

/* The elements of an array parameter's text, {1,2,3}: its commas and one
 * (a comma inside a quoted element counts too, which moves a list by one
 * class at most in its size). */
static long long array_length(const char *text)
{
	long long n = 1;

	for (const char *c = text; *c; c++)
		n += *c == ',';
	return n;
}

/* The rows budget's name for the request's shape, which it learns sizes
 * by: its SQL texts, which depend on the shape only (values go as
 * parameters), and the size class of the values that set how many rows
 * come back: each LIMIT and each list (id__in). Without them, [:100] and
 * [:10000] of the same queryset were one shape: after a small one, eight
 * large ones went at once on its size (306 MB held for an 80 MB budget).
 * Other values (a filter's constant) stay out: every id would be a shape
 * of its own, never learned. */
static uint64_t shape_of(const struct plan *plan)
{
	uint64_t h = 0;

	for (size_t q = 0; q < plan->nqueries; q++) {
		const struct plan_query *pq = &plan->queries[q];

		h = text_hash(h, pq->sql);
		for (int i = pq->keyed ? 1 : 0; i < pq->nparams; i++) {
			const char *v = pq->params[i];
			char class[16];

			if (i == pq->limit_param)
				snprintf(class, sizeof(class), "l%u",
					 size_class(atoll(v)));
			else if (v && v[0] == '{')
				snprintf(class, sizeof(class), "a%u",
					 size_class(array_length(v)));
			else
				continue;
			h = text_hash(h, class);
		}
	}
	return h;
}

struct exec *exec_start(struct pool *pool, const struct plan *plan,
			const struct exec_options *opt, exec_done_cb done,
			void *arg)
{
	struct exec *ex = calloc(1, sizeof(*ex));
	size_t nq = plan->nqueries;

	if (!ex)
		return NULL;
	ex->pool = pool;
	ex->plan = plan;
	ex->opt = *opt;
	ex->done = done;
	ex->arg = arg;
	ex->state = EX_WAIT_BUDGET;
	ex->g = graph_new(plan);
	ex->qs = calloc(nq + 1, sizeof(*ex->qs));
	ex->order = calloc(nq + 1, sizeof(*ex->order));
	ex->stmts = calloc(2 * nq + 2, sizeof(*ex->stmts));
	ex->stmt_query = calloc(2 * nq + 2, sizeof(*ex->stmt_query));
	if (!ex->g || !ex->qs || !ex->order || !ex->stmts || !ex->stmt_query)
		goto fail;
	if (opt->budget) {
		ex->bu = budget_user_new(opt->budget, shape_of(plan));
		if (!ex->bu)
			goto fail;
		/* Last: from here on_admitted and on_conn may fire (from the
		 * loop, never before we return). */
		switch (budget_ask(ex->bu, on_admitted, ex)) {
		case 0:
			return ex;
		case 1:
			break;
		default:
			goto fail;
		}
	}
	if (acquire(ex))
		goto fail;
	return ex;
fail:
	exec_free(ex);
	return NULL;
}

struct graph *exec_graph(struct exec *ex)
{
	return ex->g;
}

void exec_get_stats(const struct exec *ex, struct exec_stats *out)
{
	*out = ex->stats;
}

static void write_params(const struct exec *ex, int q, struct evbuffer *out)
{
	const struct plan_query *pq = &ex->plan->queries[q];
	const char **params = ex->qs[q].params;

	evbuffer_add(out, "[", 1);
	for (int i = 0; i < pq->nparams; i++) {
		const char *v = params ? params[i] : NULL;

		if (i > 0)
			evbuffer_add(out, ",", 1);
		if (v)
			graph_write_string(out, v, strlen(v));
		else
			evbuffer_add(out, "null", 4);
	}
	evbuffer_add(out, "]", 1);
}

void exec_write_debug(const struct exec *ex, struct evbuffer *out)
{
	evbuffer_add(out, "[", 1);
	for (int i = 0; i < ex->nsent; i++) {
		int q = ex->order[i];
		const char *sql = ex->plan->queries[q].sql;

		if (i > 0)
			evbuffer_add(out, ",", 1);
		evbuffer_add(out, "{\"sql\":", 7);
		graph_write_string(out, sql, strlen(sql));
		evbuffer_add(out, ",\"params\":", 10);
		write_params(ex, q, out);
		evbuffer_add_printf(out, ",\"rows\":%ld,\"ms\":%.3f}",
				    ex->qs[q].rows, ex->qs[q].ms);
	}
	evbuffer_add(out, "]", 1);
}

void exec_cancel(struct exec *ex)
{
	switch (ex->state) {
	case EX_WAIT_CONN:
		if (ex->wait)
			pool_cancel(ex->wait);
		ex->wait = NULL;
		break;
	case EX_WAIT_BUDGET:
		/* No connection, no transaction yet: it only leaves the
		 * queue. */
		budget_cancel(ex->bu);
		break;
	case EX_RUNNING:
	case EX_ROLLBACK:
		/* Closes the connection: the server stops, and the results
		 * in flight are cleared by the pool. */
		pool_abandon(ex->conn);
		ex->conn = NULL;
		break;
	case EX_DONE:
	case EX_CANCELLED:
		return;
	}
	ex->state = EX_CANCELLED;
}

void exec_free(struct exec *ex)
{
	if (!ex)
		return;
	if (ex->state == EX_WAIT_CONN || ex->state == EX_RUNNING ||
	    ex->state == EX_WAIT_BUDGET || ex->state == EX_ROLLBACK)
		exec_cancel(ex);
	for (size_t q = 0; ex->qs && q < ex->plan->nqueries; q++)
		forget_params(ex, q);
	graph_free(ex->g);
	/* Last: its rows are freed, the budget may admit others. */
	budget_user_free(ex->bu);
	free(ex->qs);
	free(ex->order);
	free(ex->stmts);
	free(ex->stmt_query);
	free(ex);
}
