/*
 * evhttp server, route table and request lifecycle: see http.h. A request
 * to /query or /plan flows one way: spec_parse -> resolve -> plan_build ->
 * exec_start -> (done) graph_write -> reply. Everything a request holds
 * lives in one struct request, freed in one place after the reply.
 */
#include "http.h"

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

#include "clock.h"
#include "exec.h"
#include "graph.h"
#include "log.h"
#include "metrics.h"
#include "openapi_doc.h"
#include "plan.h"
#include "resolve.h"
#include "spec.h"

struct http {
	struct event_base *base;
	const struct config *cfg;
	struct pool *pool;
	struct catalog *cat;
	struct evhttp *evh;
	struct evhttp_bound_socket *listener;
	int port;
	int in_flight;
	int busy;    /* in flight on routes that are not health checks */
	int writing; /* replies sent but not yet written out */
	unsigned long next_id;
	unsigned long
		id_prefix; /* per process, so ids differ across restarts */
	struct metrics *metrics;
};

/* Rows after which a finished request trims the heap (trim_after_large). */
#define TRIM_AFTER_ROWS 20000

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
	bool plan_only;
	struct schema *schema;
	struct spec_queryset *spec;
	struct resolved *resolved;
	struct plan *plan;
	struct exec *exec;
	struct event *gone_ev; /* watches the client while the database works */
	bool counted;	       /* in h->busy */
	int queries;
	long rows;
	double db_ms;
	char err_code[32]; /* the error replied, for /metrics */
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

/* glibc keeps the heap a large answer grew (results, JSON) for reuse: an
 * idle daemon would sit at its peak. Give it back once nothing is in
 * flight; a large request costs far more than the trim. */
static void trim_after_large(const struct http *h, long rows)
{
#ifdef __GLIBC__
	if (rows >= TRIM_AFTER_ROWS && h->in_flight == 0)
		malloc_trim(0);
#endif
}

static void request_free(struct request *r)
{
	if (r->evcon)
		evhttp_connection_set_closecb(r->evcon, NULL, NULL);
	if (r->gone_ev)
		event_free(r->gone_ev);
	if (r->counted)
		r->h->busy--;
	exec_free(r->exec);
	plan_free(r->plan);
	resolved_free(r->resolved);
	spec_free(r->spec);
	schema_unref(r->schema);
	r->h->in_flight--;
	trim_after_large(r->h, r->rows);
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
	if (evcon)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
}

static void on_reply_failed(struct evhttp_connection *evcon, void *arg)
{
	struct http *h = arg;

	h->writing--;
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

/* The one way out of a request: sends body with status, logs the access
 * line and frees the request. body is consumed. */
static void reply(struct request *r, int status, struct evbuffer *body)
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
	log_access(r->method, r->path, status, (clock_ms() - r->started),
		   r->queries, r->rows, r->id);
	metrics_observe(r->h->metrics, r->route ? r->route : "other", status,
			r->err_code[0] ? r->err_code : NULL,
			(clock_ms() - r->started), r->queries, r->rows);
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
	struct evbuffer *body = evbuffer_new();

	pool_get_stats(r->h->pool, &st.pool);
	catalog_counts(r->h->cat, &st.reloads_ok, &st.reloads_failed);
	st.schema_loaded = r->schema != NULL;
	st.in_flight = r->h->in_flight;
	metrics_write(r->h->metrics, &st, body);
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
	body = evbuffer_new();
	evbuffer_add_printf(body, "{\"results\":");
	graph_write(exec_graph(ex), body);
	evbuffer_add_printf(body,
			    ",\"stats\":{\"queries\":%d,\"rows\":%ld,"
			    "\"db_ms\":%.3f,\"total_ms\":%.3f}",
			    st.queries, st.rows, st.db_ms,
			    (clock_ms() - r->started));
	if (r->debug) {
		evbuffer_add_printf(body, ",\"queries\":");
		exec_write_debug(ex, body);
	}
	evbuffer_add(body, "}", 1);
	reply(r, 200, body);
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
	const struct config *cfg = r->h->cfg;
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	struct spec_limits limits = {cfg->max_depth, cfg->max_lookups};
	struct exec_options opt = {cfg->pool_timeout_ms, cfg->max_rows,
				   r->debug};
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
	const char *token = r->h->cfg->auth_token;
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

/* evhttp leaves Nagle on: a reply written in two pieces (headers, body)
 * then waits for the client's delayed ACK, ~40 ms per request. */
static void set_nodelay(struct evhttp_connection *evcon)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	int one = 1;

	if (bev)
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
			   &one, sizeof(one));
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
	r->h = h;
	r->req = req;
	r->method = method_name(method);
	r->started = clock_ms();
	snprintf(r->path, sizeof(r->path), "%s", path ? path : "?");
	set_request_id(r);
	r->evcon = evhttp_request_get_connection(req);
	if (r->evcon) {
		evhttp_connection_set_closecb(r->evcon, on_client_close, r);
		set_nodelay(r->evcon);
	}
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
		if (h->busy >= h->cfg->max_concurrent) {
			pf_err_set(&err, 503, "overloaded", "",
				   "more than %d requests in flight",
				   h->cfg->max_concurrent);
			http_reply_error(r, &err);
			return;
		}
		h->busy++;
		r->counted = true;
	}
	r->route = route->path;
	r->schema = catalog_get(h->cat);
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

/* What evhttp_bind_socket_with_handle does, plus SO_REUSEPORT when asked:
 * then several prefetchd processes may listen on the same port, and the
 * kernel spreads the connections between them (README, "all cores"). */
static struct evhttp_bound_socket *listen_on(struct http *h, const char *host,
					     int port, bool reuse_port)
{
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
					.ai_socktype = SOCK_STREAM,
					.ai_flags = EVUTIL_AI_PASSIVE |
						    EVUTIL_AI_ADDRCONFIG};
	struct evutil_addrinfo *ai = NULL;
	struct evconnlistener *l = NULL;
	char service[16];
	unsigned flags = LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC |
			 LEV_OPT_CLOSE_ON_FREE |
			 (reuse_port ? LEV_OPT_REUSEABLE_PORT : 0);

	snprintf(service, sizeof(service), "%d", port);
	if (evutil_getaddrinfo(host, service, &hints, &ai) != 0)
		return NULL;
	l = evconnlistener_new_bind(h->base, NULL, NULL, flags, -1, ai->ai_addr,
				    (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	return l ? evhttp_bind_listener(h->evh, l) : NULL;
}

struct http *http_new(struct event_base *base, const struct config *cfg,
		      struct pool *pool, struct catalog *cat,
		      struct pf_err *err)
{
	struct http *h = calloc(1, sizeof(*h));
	char host[256];
	int port;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);

	if (!h)
		return NULL;
	*h = (struct http){.base = base, .cfg = cfg, .pool = pool, .cat = cat};
	h->id_prefix =
		((unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16)) &
		0xffffffffUL;
	if (config_split_listen(cfg->listen, host, sizeof(host), &port) < 0) {
		pf_err_set(err, 400, "bad_config", "listen",
			   "--listen must be host:port, not \"%s\"",
			   cfg->listen);
		goto fail;
	}
	h->evh = evhttp_new(base);
	h->metrics = metrics_new();
	if (!h->evh || !h->metrics)
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
	h->listener = listen_on(h, host, port, cfg->reuse_port);
	if (!h->listener) {
		pf_err_set(err, 500, "internal", "listen",
			   "cannot listen on %s", cfg->listen);
		goto fail;
	}
	if (getsockname(evhttp_bound_socket_get_fd(h->listener),
			(struct sockaddr *)&ss, &sslen) == 0)
		h->port =
			ss.ss_family == AF_INET6
				? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
				: ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return h;
fail:
	http_free(h);
	return NULL;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	if (h->evh)
		evhttp_free(h->evh);
	metrics_free(h->metrics);
	free(h);
}

int http_port(const struct http *h)
{
	return h->port;
}

void http_stop_accepting(struct http *h)
{
	if (h->listener) {
		evhttp_del_accept_socket(h->evh, h->listener);
		h->listener = NULL;
	}
}

int http_in_flight(const struct http *h)
{
	return h->in_flight + h->writing;
}
