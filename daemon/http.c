/*
 * evhttp server, route table and request lifecycle: see http.h. A request
 * to /query or /plan flows one way: spec_parse -> resolve -> plan_build ->
 * exec_start -> (done) the answer -> reply. Everything a request holds
 * lives in one struct request, freed in one place (request_free) once its
 * answer has been handed to libevent.
 *
 * The reply path. The answer of /query is rendered main object by main
 * object (graph_write_range) into one buffer. When all of it fits in
 * STREAM_CHUNK, it goes out as before, in one reply with Content-Length
 * (reply()). Past that, it is streamed (stream_*): the headers go out with
 * evhttp_send_reply_start, then one chunk of about STREAM_CHUNK bytes at a
 * time, each rendered only when libevent has written the one before
 * (evhttp_send_reply_chunk_with_cb), then the tail (stats, ?debug=1's
 * queries) and evhttp_send_reply_end. The bytes are the same either way.
 * A streaming request keeps its graph until its last chunk is handed over;
 * a connection that closes first (client gone, write timeout, out of
 * memory, shutdown) ends it through on_stream_close. Either way the access
 * line and /metrics see the request once, when it ends.
 */
#include "http.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "budget.h"
#include "clock.h"
#include "exec.h"
#include "graph.h"
#include "log.h"
#include "metrics.h"
#include "openapi_doc.h"
#include "plan.h"
#include "resolve.h"
#include "spec.h"

/* What one loop last told the others of itself (publish): /metrics sums
 * the loops' gauges, and a loop cannot read another's pool or budget,
 * which only their own thread touches. */
struct loop_gauges {
	struct pool_stats pool;
	struct budget_stats budget;
	struct planmode_stats plans;
	int in_flight; /* requests being answered */
	int pending;   /* and replies not yet written out (the drain's count) */
};

struct http_shared {
	const struct config *cfg;
	struct catalog *cat;
	struct metrics *metrics;
	char host[256]; /* of --listen */
	int port;	/* the port every loop binds (loop 0 picks for 0) */
	atomic_int listening; /* loops still accepting */
	atomic_int busy; /* in flight on routes that are not health checks */
	int nloops;
	pthread_mutex_t lock; /* guards gauges */
	struct loop_gauges *gauges;
};

struct http {
	struct http_shared *sh;
	int loop; /* its index in sh->gauges */
	struct event_base *base;
	struct pool *pool;
	struct evhttp *evh;
	struct evhttp_bound_socket *listener;
	int in_flight;
	int writing;		/* replies sent but not yet written out */
	struct event *trim_ev;	/* trim_when_idle's timer */
	struct event *gauge_ev; /* publishes the gauges each second */
	unsigned long next_id;
	unsigned long id_prefix; /* per process and loop: ids stay unique */
	struct budget *budget;	 /* the rows budget of every /query */
	struct planmode *plans;	 /* the plan choices of every /query */
};

/* Idle time after which the heap is trimmed (trim_when_idle). */
#define IDLE_TRIM_MS 1000

/* An answer larger than this is streamed, this much JSON per chunk. Most
 * answers (W1's 1,100 rows are 0.2 MB) still go out in one reply with
 * Content-Length; a chunk costs one callback and a few write(2)s, nothing
 * next to rendering 256 KiB; and a streaming request holds about two
 * chunks of JSON (one being written, the next being rendered) whatever the
 * size of its answer, instead of all of it (26 MB for W6). A main object is
 * never split: one larger than this makes a chunk of its own size. */
#define STREAM_CHUNK (256 * 1024)

struct request {
	struct http *h;
	struct evhttp_request *req;
	struct evhttp_connection *evcon; /* NULL once the client left */
	const char *method;
	const char *route; /* the route's path, or "other" */
	char path[256];
	char id[40];
	double started; /* clock_ms() at arrival */
	bool debug;
	bool aggregate; /* the answer is {"aggregate": {...}} */
	bool plan_only;
	struct schema *schema;
	struct spec_queryset *spec;
	struct resolved *resolved;
	struct plan *plan;
	struct exec *exec;
	struct event *gone_ev; /* watches the client while the database works */
	bool counted;	       /* in h->sh->busy */
	int queries;
	long rows;
	double db_ms;
	char err_code[32]; /* the error replied, for /metrics */
	/* The answer: main objects written so far, in all, the bytes they
	 * took (for the size of the next step) and, once streaming, the next
	 * chunk and the event that closes the connection when one fails. */
	size_t next, count, obj_bytes;
	struct evbuffer *chunk;
	struct event *abort_ev;
	size_t sent; /* bytes of a streamed answer handed to libevent */
	bool failed; /* out of memory while streaming */
};

typedef void (*route_fn)(struct request *r);

struct route {
	const char *path;
	enum evhttp_cmd_type method; /* the one method it answers */
	bool public;		     /* no token needed (health checks) */
	route_fn handler;
};

static void handle_healthz(struct request *r);
static void handle_readyz(struct request *r);
static void handle_schema(struct request *r);
static void handle_query(struct request *r);
static void handle_metrics(struct request *r);
static void handle_openapi(struct request *r);

static const struct route routes[] = {
	{"/healthz", EVHTTP_REQ_GET, true, handle_healthz},
	{"/readyz", EVHTTP_REQ_GET, true, handle_readyz},
	{"/schema", EVHTTP_REQ_GET, false, handle_schema},
	{"/query", EVHTTP_REQ_POST, false, handle_query},
	{"/plan", EVHTTP_REQ_POST, false, handle_query},
	{"/metrics", EVHTTP_REQ_GET, false, handle_metrics},
	{"/openapi.json", EVHTTP_REQ_GET, false, handle_openapi},
};

static const char *method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "OTHER";
	}
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 413:
		return "Payload Too Large";
	case 422:
		return "Unprocessable Entity";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Internal Server Error";
	}
}

/* The loop's gauges as its own thread sees them now. */
static void read_gauges(struct http *h, struct loop_gauges *g)
{
	pool_get_stats(h->pool, &g->pool);
	budget_get_stats(h->budget, &g->budget);
	planmode_get_stats(h->plans, &g->plans);
	g->in_flight = h->in_flight;
	g->pending = h->in_flight + h->writing;
}

/* Tells the other loops where this one stands: whenever a request comes
 * or goes, and each second (gauge_ev) for what changes in between (the
 * pool's connects). With one loop nobody else reads them. */
static void publish(struct http *h)
{
	struct loop_gauges g;

	if (h->sh->nloops == 1)
		return;
	read_gauges(h, &g);
	pthread_mutex_lock(&h->sh->lock);
	h->sh->gauges[h->loop] = g;
	pthread_mutex_unlock(&h->sh->lock);
}

static void on_gauge_tick(evutil_socket_t fd, short what, void *arg)
{
	publish(arg);
}

/* Every loop's gauges summed, this loop's read live. */
static void sum_gauges(struct http *h, struct loop_gauges *sum)
{
	if (h->sh->nloops == 1) {
		read_gauges(h, sum);
		return;
	}
	publish(h);
	*sum = (struct loop_gauges){.pool.up = true};
	pthread_mutex_lock(&h->sh->lock);
	for (int i = 0; i < h->sh->nloops; i++) {
		const struct loop_gauges *g = &h->sh->gauges[i];
		sum->pool.size += g->pool.size;
		sum->pool.open += g->pool.open;
		sum->pool.idle += g->pool.idle;
		sum->pool.busy += g->pool.busy;
		sum->pool.waiting += g->pool.waiting;
		sum->pool.up = sum->pool.up && g->pool.up;
		sum->pool.connects += g->pool.connects;
		sum->pool.connect_failures += g->pool.connect_failures;
		sum->budget.limit += g->budget.limit;
		sum->budget.held += g->budget.held;
		sum->budget.reserved += g->budget.reserved;
		sum->budget.waiting += g->budget.waiting;
		sum->budget.waits += g->budget.waits;
		sum->plans.generic += g->plans.generic;
		sum->plans.custom += g->plans.custom;
		sum->in_flight += g->in_flight;
		sum->pending += g->pending;
	}
	pthread_mutex_unlock(&h->sh->lock);
}

/* glibc keeps the heap that answers grew (results, JSON) for reuse: an idle
 * daemon would sit at its peak. Once nothing has been in flight for
 * IDLE_TRIM_MS, it is given back. Under load the timer is only re-armed
 * (a request that ends with others in flight does not touch it), so the
 * trim, which walks the heap, never runs between busy requests. */
static void trim_when_idle(struct http *h)
{
	static const struct timeval delay = {IDLE_TRIM_MS / 1000,
					     (IDLE_TRIM_MS % 1000) * 1000};

	if (h->in_flight == 0 && h->trim_ev)
		evtimer_add(h->trim_ev, &delay);
}

static void on_idle_trim(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;

	if (h->writing > 0) { /* a reply still being written: later */
		trim_when_idle(h);
		return;
	}
#ifdef __GLIBC__
	struct loop_gauges all;

	/* The trim walks every thread's heap: only when all loops idle (the
	 * last to go idle trims for all). */
	sum_gauges(h, &all);
	if (all.pending == 0)
		malloc_trim(0);
#endif
}

static void request_free(struct request *r)
{
	if (r->evcon)
		evhttp_connection_set_closecb(r->evcon, NULL, NULL);
	if (r->gone_ev)
		event_free(r->gone_ev);
	if (r->abort_ev)
		event_free(r->abort_ev);
	if (r->chunk)
		evbuffer_free(r->chunk);
	if (r->counted)
		atomic_fetch_sub(&r->h->sh->busy, 1);
	exec_free(r->exec);
	plan_free(r->plan);
	resolved_free(r->resolved);
	spec_free(r->spec);
	schema_unref(r->schema);
	r->h->in_flight--;
	publish(r->h);
	trim_when_idle(r->h);
	free(r);
}

/* A reply is handed to libevent before it is written: until it has been
 * written (or its connection failed), it counts in http_in_flight, so that
 * a drain does not close the connection under it. A server connection
 * carries one reply at a time, so its close callback can stand for the
 * reply's failure; success clears it. */
static void on_reply_written(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	h->writing--;
	publish(h);
	if (evcon)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
}

static void on_reply_failed(struct evhttp_connection *evcon, void *arg)
{
	struct http *h = arg;

	h->writing--;
	publish(h);
	evhttp_connection_set_closecb(evcon, NULL, NULL);
}

static void track_reply(struct request *r)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);

	if (!evcon)
		return; /* the client left: the reply only frees the request */
	r->h->writing++;
	evhttp_request_set_on_complete_cb(r->req, on_reply_written, r->h);
	evhttp_connection_set_closecb(evcon, on_reply_failed, r->h);
}

/* The headers of every answer, set before it starts. */
static void add_headers(struct request *r, int status)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);

	if (!evhttp_find_header(out, "Content-Type"))
		evhttp_add_header(out, "Content-Type", "application/json");
	evhttp_add_header(out, "X-Request-Id", r->id);
	if (status == 401)
		evhttp_add_header(out, "WWW-Authenticate", "Bearer");
	if (status == 503)
		evhttp_add_header(out, "Retry-After", "1");
	if (r->queries) {
		char timing[96];
		snprintf(timing, sizeof(timing), "db;dur=%.3f, total;dur=%.3f",
			 r->db_ms, (clock_ms() - r->started));
		evhttp_add_header(out, "Server-Timing", timing);
	}
}

/* The access line and /metrics: once per request, when it ends. */
static void observe(struct request *r, int status)
{
	double ms = clock_ms() - r->started;

	log_access(r->method, r->path, status, ms, r->queries, r->rows, r->id);
	metrics_observe(r->h->sh->metrics, r->route ? r->route : "other",
			status, r->err_code[0] ? r->err_code : NULL, ms,
			r->queries, r->rows);
}

/* The one way out of a request that is not streamed: sends body with
 * status, logs the access line and frees the request. body is consumed. */
static void reply(struct request *r, int status, struct evbuffer *body)
{
	add_headers(r, status);
	if (!r->route || strcmp(r->route, "/metrics") != 0)
		evbuffer_add(body, "\n", 1);
	/* r->evcon is NULL once the client left: libevent has detached the
	 * request and sending only frees it. Otherwise, from here on the
	 * connection's close callback tracks the reply until it is written. */
	if (r->evcon) {
		r->evcon = NULL;
		track_reply(r);
	}
	evhttp_send_reply(r->req, status, reason(status), body);
	observe(r, status);
	evbuffer_free(body);
	request_free(r);
}

static void reply_json(struct request *r, int status, json_t *doc)
{
	struct evbuffer *body = evbuffer_new();
	char *text = json_dumps(doc, JSON_COMPACT);

	json_decref(doc);
	if (!body || !text) {
		free(text);
		if (body)
			evbuffer_free(body);
		body = evbuffer_new();
		status = 500;
		evbuffer_add_printf(body, "{\"error\":{\"status\":500,"
					  "\"code\":\"internal\","
					  "\"message\":\"out of memory\","
					  "\"at\":\"\"}}");
	} else {
		evbuffer_add(body, text, strlen(text));
		free(text);
	}
	reply(r, status, body);
}

/* The only place that writes an error body. */
static void http_reply_error(struct request *r, const struct pf_err *err)
{
	json_t *doc;

	snprintf(r->err_code, sizeof(r->err_code), "%s", err->code);
	doc = json_pack("{s:{s:i,s:s,s:s,s:s}}", "error", "status", err->status,
			"code", err->code, "message", err->message, "at",
			err->at);

	reply_json(r, err->status, doc);
}

static void handle_healthz(struct request *r)
{
	reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void handle_readyz(struct request *r)
{
	struct pool_stats st;
	struct pf_err err;

	pool_get_stats(r->h->pool, &st);
	if (!st.up) {
		pf_err_set(&err, 503, "database_unavailable", "",
			   "the database cannot be reached");
		http_reply_error(r, &err);
		return;
	}
	if (!r->schema) {
		pf_err_set(&err, 503, "database_unavailable", "",
			   "the schema has not been loaded yet");
		http_reply_error(r, &err);
		return;
	}
	reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
}

static void handle_schema(struct request *r)
{
	reply_json(r, 200, schema_to_json(r->schema));
}

static void handle_metrics(struct request *r)
{
	struct metrics_state st = {0};
	struct loop_gauges all;
	struct evbuffer *body = evbuffer_new();

	sum_gauges(r->h, &all);
	st.pool = all.pool;
	st.budget = all.budget;
	st.plans = all.plans;
	catalog_counts(r->h->sh->cat, &st.reloads_ok, &st.reloads_failed);
	st.schema_loaded = r->schema != NULL;
	st.in_flight = all.in_flight;
	st.loops = r->h->sh->nloops;
	metrics_write(r->h->sh->metrics, &st, body);
	evhttp_add_header(evhttp_request_get_output_headers(r->req),
			  "Content-Type", "text/plain; version=0.0.4");
	reply(r, 200, body);
}

/* proto/openapi.json as compiled in; reply() adds the final newline. */
static void handle_openapi(struct request *r)
{
	struct evbuffer *body = evbuffer_new();
	size_t len = openapi_doc_len;

	while (len > 0 && openapi_doc[len - 1] == '\n')
		len--;
	evbuffer_add(body, openapi_doc, len);
	reply(r, 200, body);
}

/* ---- the answer of /query ---- */

/* Appends main objects r->next.. to out until out has grown by budget bytes
 * or all are written; 0, or -1 when out of memory (out then holds a
 * partial object). Each step renders about half of what is left of the
 * budget, judged by the objects' average size so far: a few calls fill a
 * chunk whatever that size, and a chunk passes the budget by less than
 * one object. Calls graph_write_range at least once, which is what tells
 * an answer of no objects from a graph that could not be read. */
static int write_objects(struct request *r, struct evbuffer *out, size_t budget)
{
	struct graph *g = exec_graph(r->exec);
	size_t start = evbuffer_get_length(out);

	do {
		size_t len = evbuffer_get_length(out), step = 1;

		if (len - start >= budget)
			break;
		if (r->next > 0)
			step += (budget - (len - start)) /
				(2 * (r->obj_bytes / r->next) + 1);
		if (step > r->count - r->next)
			step = r->count - r->next;
		if (graph_write_range(g, out, r->next, r->next + step) < 0)
			return -1;
		r->obj_bytes += evbuffer_get_length(out) - len;
		r->next += step;
	} while (r->next < r->count);
	return 0;
}

/* What follows the objects: "],"stats":{...}", ?debug=1's queries, "}".
 * For a streamed answer, total_ms is taken here: everything but the
 * writing of this last chunk. 0, or -1 when out of memory. */
static int write_tail(struct request *r, struct evbuffer *out)
{
	int rc = evbuffer_add_printf(
		out,
		"%s,\"stats\":{\"queries\":%d,\"rows\":%ld,"
		"\"db_ms\":%.3f,\"total_ms\":%.3f}",
		r->aggregate ? "" : "]", r->queries, r->rows, r->db_ms,
		(clock_ms() - r->started));

	if (rc >= 0 && r->debug) {
		rc = evbuffer_add(out, ",\"queries\":", 11);
		exec_write_debug(r->exec, out);
	}
	if (rc >= 0)
		rc = evbuffer_add(out, "}", 1);
	return rc < 0 ? -1 : 0;
}

/* The last chunk is handed over: what is left is a reply being written,
 * tracked as reply() tracks one (the drain waits for it), and the request
 * can go. */
static void stream_end(struct request *r)
{
	struct evhttp_request *req = r->req;

	r->evcon = NULL;
	track_reply(r);
	/* May write and free req at once: req is not touched after. */
	evhttp_send_reply_end(req);
	observe(r, 200);
	request_free(r);
}

/* Out of memory in the middle of an answer whose 200 is gone: the only
 * honest end is to close the connection, so that the client sees a
 * truncated answer (no last chunk, or a connection closed before the JSON
 * ends), never one that looks complete. The connection is closed from a
 * callback of its own, off libevent's write callback that got here. */
static void stream_fail(struct request *r)
{
	log_error("request %s: out of memory while streaming its answer "
		  "(%zu of %zu objects sent): closing the connection",
		  r->id, r->next, r->count);
	r->failed = true;
	event_active(r->abort_ev, EV_TIMEOUT, 1);
}

static void on_stream_abort(evutil_socket_t fd, short what, void *arg)
{
	struct request *r = arg;

	evhttp_connection_free(r->evcon); /* on_stream_close frees r */
}

/* libevent wrote every byte handed over so far: render the next chunk. */
static void on_chunk_written(struct evhttp_connection *evcon, void *arg)
{
	struct request *r = arg;
	bool last;

	if (write_objects(r, r->chunk, STREAM_CHUNK) < 0) {
		stream_fail(r);
		return;
	}
	last = r->next == r->count;
	if (last && (write_tail(r, r->chunk) < 0 ||
		     evbuffer_add(r->chunk, "\n", 1) < 0)) {
		stream_fail(r);
		return;
	}
	r->sent += evbuffer_get_length(r->chunk);
	if (!last) {
		evhttp_send_reply_chunk_with_cb(r->req, r->chunk,
						on_chunk_written, r);
		return;
	}
	evhttp_send_reply_chunk(r->req, r->chunk);
	stream_end(r);
}

/*
 * The connection closes before the last chunk was handed over: the client
 * left or stopped reading (the write failed or timed out), stream_fail
 * closed it, or the daemon stops (evhttp_free, past the drain timeout).
 * On a failed or timed out write, libevent 2.1 detaches the request from
 * its connection (evhttp_connection_incoming_fail: the request is not done
 * yet) and leaves it to us: finishing it frees it. Otherwise the request is
 * still the connection's, which frees it after this callback.
 */
static void on_stream_close(struct evhttp_connection *evcon, void *arg)
{
	struct request *r = arg;
	struct evhttp_request *req = r->req;

	r->evcon = NULL;
	if (!r->failed)
		log_warn("request %s: connection closed in the middle of its "
			 "answer (%zu of %zu objects, %zu bytes handed over)",
			 r->id, r->next, r->count, r->sent);
	snprintf(r->err_code, sizeof(r->err_code), "%s",
		 r->failed ? "internal" : "client_gone");
	observe(r, 200);
	if (!evhttp_request_get_connection(req))
		evhttp_send_reply_end(req);
	request_free(r);
}

/* The answer is past STREAM_CHUNK: body holds its first chunk. The headers
 * go out now, so Server-Timing's total is the time to the first byte. */
static void stream_start(struct request *r, struct evbuffer *body)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(r->req);
	const char *conn = evhttp_find_header(in, "Connection");

	r->chunk = body;
	r->abort_ev = evtimer_new(r->h->base, on_stream_abort, r);
	if (!r->abort_ev) {
		log_error("request %s: out of memory", r->id);
		r->chunk = NULL;
		evbuffer_free(body);
		http_reply_error(r,
				 &(struct pf_err){.status = 500,
						  .code = "internal",
						  .message = "out of memory"});
		return;
	}
	/* From here on a client that leaves makes a write fail: no need to
	 * watch its socket any more. */
	if (r->gone_ev) {
		event_free(r->gone_ev);
		r->gone_ev = NULL;
	}
	/* An HTTP/1.0 answer cannot be chunked: it ends when the connection
	 * does. libevent 2.1 would answer a 1.0 keep-alive request with
	 * "Content-Length: 0" (the length of its still empty output buffer)
	 * and keep the connection: without the header it closes it, as for
	 * any 1.0 request. In HTTP/1.1 keep-alive is the default and the
	 * header changes nothing. */
	if (conn && strncasecmp(conn, "keep-alive", 10) == 0)
		evhttp_remove_header(in, "Connection");
	evhttp_connection_set_closecb(r->evcon, on_stream_close, r);
	add_headers(r, 200);
	evhttp_send_reply_start(r->req, 200, reason(200));
	r->sent = evbuffer_get_length(r->chunk);
	evhttp_send_reply_chunk_with_cb(r->req, r->chunk, on_chunk_written, r);
}

static void on_exec_done(struct exec *ex, const struct pf_err *err, void *arg)
{
	struct request *r = arg;
	struct exec_stats st;
	struct evbuffer *body;

	exec_get_stats(ex, &st);
	r->queries = st.queries;
	r->rows = st.rows;
	r->db_ms = st.db_ms;
	if (err) {
		http_reply_error(r, err);
		return;
	}
	if (!r->evcon) { /* cannot happen: on_client_close stopped the work */
		http_reply_error(r, &(struct pf_err){.status = 499,
						     .code = "client_gone",
						     .message = "client left"});
		return;
	}
	r->count = graph_count(exec_graph(ex));
	body = evbuffer_new();
	if (!body)
		goto oom;
	if (graph_is_aggregate(exec_graph(ex))) {
		/* one object: never streamed */
		r->aggregate = true;
		if (evbuffer_add(body, "{\"aggregate\":", 13) < 0 ||
		    graph_write_aggregate(exec_graph(ex), body) < 0 ||
		    write_tail(r, body) < 0)
			goto oom;
		reply(r, 200, body);
		return;
	}
	if (evbuffer_add(body, "{\"results\":[", 12) < 0 ||
	    write_objects(r, body, STREAM_CHUNK) < 0)
		goto oom;
	if (r->next < r->count) {
		stream_start(r, body);
		return;
	}
	if (write_tail(r, body) < 0)
		goto oom;
	reply(r, 200, body);
	return;
oom:
	/* Nothing is sent yet: a proper 500. */
	if (body)
		evbuffer_free(body);
	log_error("request %s: out of memory while writing its answer", r->id);
	http_reply_error(r, &(struct pf_err){.status = 500,
					     .code = "internal",
					     .message = "out of memory"});
}

/* The client left while its request waits for the database: stop the work
 * (a connection in the middle of a batch is closed, never reused) and end
 * the request with 499, which only the access log and /metrics see. */
static void client_gone(struct request *r)
{
	if (!r->exec)
		return;
	exec_cancel(r->exec);
	on_exec_done(r->exec,
		     &(struct pf_err){.status = 499,
				      .code = "client_gone",
				      .message = "client left"},
		     r);
}

/* libevent 2.1 stops reading a connection once its request is read, so
 * a client that hangs up is only noticed when the reply is written, and
 * its database work would go on until statement_timeout. While the
 * database works, the socket is watched: end of file or an error means
 * the client left; data is a pipelined request (then stop watching). */
static void on_client_readable(evutil_socket_t fd, short what, void *arg)
{
	struct request *r = arg;
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		event_add(r->gone_ev, NULL);
		return;
	}
	if (n > 0)
		return;
	client_gone(r);
}

static void watch_client(struct request *r)
{
	struct bufferevent *bev =
		r->evcon ? evhttp_connection_get_bufferevent(r->evcon) : NULL;
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

	if (fd < 0)
		return;
	r->gone_ev = event_new(r->h->base, fd, EV_READ, on_client_readable, r);
	if (r->gone_ev)
		event_add(r->gone_ev, NULL);
}

static json_t *plan_to_json(const struct plan *plan)
{
	json_t *queries = json_array();

	for (size_t i = 0; i < plan->nqueries; i++) {
		const struct plan_query *q = &plan->queries[i];
		json_t *params = json_array();
		for (int p = 0; p < q->nparams; p++)
			json_array_append_new(
				params, q->params[p] ? json_string(q->params[p])
						     : json_null());
		json_array_append_new(
			queries, json_pack("{s:s,s:s,s:o,s:b,s:b,s:i}", "path",
					   q->path, "sql", q->sql, "params",
					   params, "keyed", q->keyed, "empty",
					   q->empty, "depth", q->depth));
	}
	return json_pack("{s:o}", "queries", queries);
}

/* Every statement is capped one row past --max-rows: a result that is too
 * large then stops at the server, and the pool, which counts the rows of
 * whole results, sees it pass the limit without ever holding more. */
static long row_cap(const struct config *cfg)
{
	return cfg->max_rows > 0 ? cfg->max_rows + 1 : 0;
}

static void handle_query(struct request *r)
{
	const struct config *cfg = r->h->sh->cfg;
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	struct spec_limits limits = {cfg->max_depth, cfg->max_lookups};
	struct exec_options opt = {cfg->pool_timeout_ms,
				   cfg->max_rows,
				   r->debug,
				   r->h->budget,
				   r->h->plans,
				   strcmp(cfg->plan_mode, "auto")};
	struct pf_err err = {0};
	size_t len = evbuffer_get_length(in);

	if ((long)len > cfg->max_body) {
		pf_err_set(&err, 413, "body_too_large", "",
			   "the request body is larger than %ld bytes",
			   cfg->max_body);
		goto fail;
	}
	r->spec = spec_parse((const char *)evbuffer_pullup(in, -1), len,
			     &limits, &err);
	if (!r->spec)
		goto fail;
	r->resolved = resolve(r->schema, r->spec, &err);
	if (!r->resolved)
		goto fail;
	r->plan = plan_build(r->resolved, row_cap(cfg), &err);
	if (!r->plan)
		goto fail;
	if (r->plan_only) {
		reply_json(r, 200, plan_to_json(r->plan));
		return;
	}
	r->exec = exec_start(r->h->pool, r->plan, &opt, on_exec_done, r);
	if (!r->exec) {
		pf_err_set(&err, 500, "internal", "", "out of memory");
		goto fail;
	}
	watch_client(r);
	return;
fail:
	http_reply_error(r, &err);
}

/* Constant-time comparison, so that the token cannot be guessed byte by
 * byte from response times. */
static bool token_matches(const char *given, const char *token)
{
	size_t glen = strlen(given), tlen = strlen(token);
	unsigned char diff = glen != tlen;

	for (size_t i = 0; i < tlen; i++)
		diff |= (unsigned char)(given[i < glen ? i : 0] ^ token[i]);
	return diff == 0;
}

static bool authorized(struct request *r)
{
	const char *token = r->h->sh->cfg->auth_token;
	const char *auth;

	if (!token[0])
		return true;
	auth = evhttp_find_header(evhttp_request_get_input_headers(r->req),
				  "Authorization");
	/* The scheme is case-insensitive (RFC 7235), the token is not. */
	return auth && strncasecmp(auth, "Bearer ", 7) == 0 &&
	       token_matches(auth + 7, token);
}

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
	struct request *r = arg;

	/* libevent has detached the request; the reply will only free it.
	 * Stop the database work now rather than when it ends. */
	r->evcon = NULL;
	client_gone(r);
}

static void set_request_id(struct request *r)
{
	const char *given = evhttp_find_header(
		evhttp_request_get_input_headers(r->req), "X-Request-Id");
	bool ok = given && given[0] && strlen(given) < sizeof(r->id);

	for (const char *c = given; ok && *c; c++)
		ok = (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
		     (*c >= 'A' && *c <= 'Z') || *c == '-' || *c == '_' ||
		     *c == '.';
	if (ok)
		snprintf(r->id, sizeof(r->id), "%s", given);
	else
		snprintf(r->id, sizeof(r->id), "%08lx-%06lx", r->h->id_prefix,
			 ++r->h->next_id);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	struct request *r = calloc(1, sizeof(*r));
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const struct route *route = NULL;
	bool path_known = false;
	struct pf_err err = {0};

	if (!r) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	h->in_flight++;
	publish(h);
	r->h = h;
	r->req = req;
	r->method = method_name(method);
	r->started = clock_ms();
	snprintf(r->path, sizeof(r->path), "%s", path ? path : "?");
	set_request_id(r);
	r->evcon = evhttp_request_get_connection(req);
	if (r->evcon)
		evhttp_connection_set_closecb(r->evcon, on_client_close, r);
	r->debug = query && strstr(query, "debug=1");

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (!path || strcmp(path, routes[i].path) != 0)
			continue;
		path_known = true;
		if (routes[i].method == method ||
		    (method == EVHTTP_REQ_HEAD &&
		     routes[i].method == EVHTTP_REQ_GET))
			route = &routes[i];
	}
	if (!route) {
		if (path_known)
			pf_err_set(&err, 405, "method_not_allowed", "",
				   "%s is not allowed on %s", r->method,
				   r->path);
		else
			pf_err_set(&err, 404, "not_found", "",
				   "no such endpoint: %s", r->path);
		http_reply_error(r, &err);
		return;
	}
	if (!route->public && !authorized(r)) {
		pf_err_set(&err, 401, "unauthorized", "",
			   "a valid bearer token is required");
		http_reply_error(r, &err);
		return;
	}
	/* Past max_concurrent a request costs no parsing and no connection:
	 * 503 at once, with Retry-After. Health checks are never refused. */
	if (!route->public) {
		if (atomic_fetch_add(&h->sh->busy, 1) >=
		    h->sh->cfg->max_concurrent) {
			atomic_fetch_sub(&h->sh->busy, 1);
			pf_err_set(&err, 503, "overloaded", "",
				   "more than %d requests in flight",
				   h->sh->cfg->max_concurrent);
			http_reply_error(r, &err);
			return;
		}
		r->counted = true;
	}
	r->route = route->path;
	r->schema = catalog_get(h->sh->cat);
	if (!r->schema && route->handler != handle_healthz &&
	    route->handler != handle_readyz &&
	    route->handler != handle_metrics &&
	    route->handler != handle_openapi) {
		pf_err_set(&err, 503, "database_unavailable", "",
			   "the schema has not been loaded yet");
		http_reply_error(r, &err);
		return;
	}
	r->plan_only = strcmp(route->path, "/plan") == 0;
	route->handler(r);
}

/* evhttp leaves Nagle on: a reply written in two pieces (headers, body)
 * then waits for the client's delayed ACK, ~40 ms per request. Set on the
 * listening socket, which every accepted socket inherits (Linux), rather
 * than once per request: one system call less each. */
static void set_nodelay(evutil_socket_t fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_warn("http: TCP_NODELAY: %s", strerror(errno));
}

/* What evconnlistener_new_bind does, without the listener (the port of a
 * loop after loop 0 is known only once loop 0 has bound), and SO_REUSEPORT
 * when asked; listening unless it is a probe (claim_port). */
static evutil_socket_t bind_socket(const char *host, int port, bool reuse_port,
				   bool listening)
{
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
					.ai_socktype = SOCK_STREAM,
					.ai_flags = EVUTIL_AI_PASSIVE |
						    EVUTIL_AI_ADDRCONFIG};
	struct evutil_addrinfo *ai = NULL;
	evutil_socket_t fd;
	char service[16];

	snprintf(service, sizeof(service), "%d", port);
	if (evutil_getaddrinfo(host, service, &hints, &ai) != 0) {
		errno = EADDRNOTAVAIL;
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd >= 0 &&
	    (evutil_make_listen_socket_reuseable(fd) < 0 ||
	     (reuse_port && evutil_make_listen_socket_reuseable_port(fd) < 0) ||
	     bind(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) < 0 ||
	     (listening && listen(fd, SOMAXCONN) < 0))) {
		int why = errno; /* for the caller's message */

		evutil_closesocket(fd);
		fd = -1;
		errno = why;
	}
	evutil_freeaddrinfo(ai);
	if (fd >= 0 && listening)
		set_nodelay(fd);
	return fd;
}

static int bound_port(evutil_socket_t fd)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0)
		return -1;
	return ss.ss_family == AF_INET6
		       ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
		       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Several loops bind the port with SO_REUSEPORT, which would let another
 * process's sockets join theirs. Without --reuse-port a taken port stays
 * an error at start: a socket bound without SO_REUSEPORT fails on any
 * listener there, and is closed before the loops bind. For port 0 it is
 * the one that picks the port. */
static int claim_port(struct http_shared *sh, struct pf_err *err)
{
	evutil_socket_t probe = bind_socket(sh->host, sh->port, false, false);

	if (probe < 0)
		return pf_err_set(err, 500, "internal", "listen",
				  "cannot listen on %s: %s", sh->cfg->listen,
				  strerror(errno));
	sh->port = bound_port(probe);
	evutil_closesocket(probe);
	return 0;
}

struct http_shared *http_shared_new(const struct config *cfg,
				    struct catalog *cat, int nloops,
				    struct pf_err *err)
{
	struct http_shared *sh = calloc(1, sizeof(*sh));

	if (!sh)
		return NULL;
	sh->cfg = cfg;
	sh->cat = cat;
	sh->nloops = nloops;
	pthread_mutex_init(&sh->lock, NULL);
	sh->metrics = metrics_new();
	sh->gauges = calloc((size_t)nloops, sizeof(*sh->gauges));
	if (!sh->metrics || !sh->gauges) {
		pf_err_set(err, 500, "internal", "", "out of memory");
		goto fail;
	}
	if (config_split_listen(cfg->listen, sh->host, sizeof(sh->host),
				&sh->port) < 0) {
		pf_err_set(err, 400, "bad_config", "listen",
			   "--listen must be host:port, not \"%s\"",
			   cfg->listen);
		goto fail;
	}
	if (nloops > 1 && !cfg->reuse_port && claim_port(sh, err) < 0)
		goto fail;
	return sh;
fail:
	http_shared_free(sh);
	return NULL;
}

void http_shared_free(struct http_shared *sh)
{
	if (!sh)
		return;
	metrics_free(sh->metrics);
	free(sh->gauges);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}

int http_port(const struct http_shared *sh)
{
	return sh->port;
}

int http_in_flight_all(struct http *h)
{
	struct loop_gauges all;

	sum_gauges(h, &all);
	return all.pending;
}

/*
 * This loop's own socket on the port. With several loops every socket has
 * SO_REUSEPORT and the kernel spreads new connections between them (by a
 * hash of the client's address and port). One socket shared by the loops
 * gave each new connection to the first loop to wake, which accepted a
 * whole burst: wrk's eight connections went to one loop, the other idled.
 */
static int accept_on(struct http *h, struct pf_err *err)
{
	struct http_shared *sh = h->sh;
	struct evconnlistener *l = NULL;
	evutil_socket_t fd =
		bind_socket(sh->host, sh->port,
			    sh->cfg->reuse_port || sh->nloops > 1, true);

	if (fd < 0) {
		pf_err_set(err, 500, "internal", "listen",
			   "cannot listen on %s: %s", sh->cfg->listen,
			   strerror(errno));
		return -1;
	}
	if (sh->port == 0) /* loop 0 picked it: the others bind it too */
		sh->port = bound_port(fd);
	/* already listening: backlog 0 */
	l = evconnlistener_new(h->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, 0,
			       fd);
	if (!l)
		evutil_closesocket(fd);
	else if (!(h->listener = evhttp_bind_listener(h->evh, l)))
		evconnlistener_free(l);
	if (!h->listener) {
		pf_err_set(err, 500, "internal", "", "out of memory");
		return -1;
	}
	atomic_fetch_add(&sh->listening, 1);
	return 0;
}

struct http *http_new(struct event_base *base, struct http_shared *sh, int loop,
		      struct pool *pool, struct pf_err *err)
{
	const struct config *cfg = sh->cfg;
	struct http *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	*h = (struct http){.sh = sh, .loop = loop, .base = base, .pool = pool};
	h->id_prefix =
		((unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16) ^
		 ((unsigned long)loop << 24)) &
		0xffffffffUL;
	h->evh = evhttp_new(base);
	h->trim_ev = evtimer_new(base, on_idle_trim, h);
	h->gauge_ev = event_new(base, -1, EV_PERSIST, on_gauge_tick, h);
	/* A request waits for the budget as long as for a connection; each
	 * loop has its share of the limit. */
	h->budget = budget_new(
		base, ((size_t)cfg->max_held_mb << 20) / (size_t)sh->nloops,
		cfg->pool_timeout_ms);
	h->plans = planmode_new();
	if (!h->evh || !h->trim_ev || !h->gauge_ev || !h->budget || !h->plans)
		goto fail;
	/* Every method reaches on_request, so that 405 is ours (JSON), not
	 * libevent's 501. */
	evhttp_set_allowed_methods(
		h->evh, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
				EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
				EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
				EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	/* The hard cap sits above the configured limit so that bodies up to
	 * it get our JSON 413; past it libevent answers on its own. */
	evhttp_set_max_body_size(h->evh, (ev_ssize_t)cfg->max_body * 4 + 65536);
	evhttp_set_max_headers_size(h->evh, (ev_ssize_t)cfg->max_headers);
	evhttp_set_timeout(h->evh, cfg->http_timeout_s);
	evhttp_set_default_content_type(h->evh, "application/json");
	evhttp_set_gencb(h->evh, on_request, h);
	if (accept_on(h, err) < 0)
		goto fail;
	if (sh->nloops > 1) {
		static const struct timeval second = {1, 0};
		event_add(h->gauge_ev, &second);
	}
	publish(h);
	return h;
fail:
	http_free(h);
	return NULL;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	http_stop_accepting(h);
	if (h->evh)
		evhttp_free(h->evh);
	if (h->trim_ev)
		event_free(h->trim_ev);
	if (h->gauge_ev)
		event_free(h->gauge_ev);
	budget_free(h->budget);
	planmode_free(h->plans);
	free(h);
}

/* Closes the loop's socket. Until the last loop's closes, the kernel
 * sends new connections to the sockets left open. */
bool http_stop_accepting(struct http *h)
{
	if (!h->listener)
		return false;
	evhttp_del_accept_socket(h->evh, h->listener);
	h->listener = NULL;
	return atomic_fetch_sub(&h->sh->listening, 1) == 1;
}

int http_in_flight(const struct http *h)
{
	return h->in_flight + h->writing;
}
