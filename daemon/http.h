/*
 * The HTTP face of prefetchd: an evhttp server with one generic callback and
 * a route table, so that every answer — 404, 405, 413 included — is JSON.
 * Owns each request's lifecycle: body limits, auth, the request flow
 * spec -> resolve -> plan -> exec -> graph, the one access log line, and the
 * only place that writes an error body (http_reply_error).
 */
#pragma once

#include <stdbool.h>

#include <event2/event.h>

#include "catalog.h"
#include "config.h"
#include "err.h"
#include "pool.h"

struct http;
struct http_shared;

/*
 * What the event loops of one process share (--threads): the port, the
 * schema (cat), the counters of /metrics, the requests in flight against
 * --max-concurrent, and the gauges each loop publishes. NULL with err set
 * when cfg->listen is not host:port, or when its port is taken (several
 * loops without --reuse-port: one loop finds out when it binds).
 */
struct http_shared *http_shared_new(const struct config *cfg,
				    struct catalog *cat, int nloops,
				    struct pf_err *err);
/* After every loop's http_free. NULL ok. */
void http_shared_free(struct http_shared *sh);
int http_port(const struct http_shared *sh); /* the bound port (for 0) */

/* The server of loop number loop (0 .. nloops - 1), on its base with its
 * pool, with a socket of its own on the port (SO_REUSEPORT when there are
 * several loops). Made in the order of the loops, before their threads
 * start; then used from its loop's thread only. NULL with err set. */
struct http *http_new(struct event_base *base, struct http_shared *sh, int loop,
		      struct pool *pool, struct pf_err *err);
void http_free(struct http *h); /* NULL ok */

/* Stops this loop accepting connections (SIGTERM): its socket closes;
 * requests in flight go on. true for the last loop to stop: from then on
 * connections are refused. */
bool http_stop_accepting(struct http *h);
/* This loop's requests in flight, replies still being written included. */
int http_in_flight(const struct http *h);
/* Every loop's, as each last published them. */
int http_in_flight_all(struct http *h);
