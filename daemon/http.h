/*
 * The HTTP face of prefetchd: an evhttp server with one generic callback and
 * a route table, so that every answer — 404, 405, 413 included — is JSON.
 * Owns each request's lifecycle: body limits, auth, the request flow
 * spec -> resolve -> plan -> exec -> graph, the one access log line, and the
 * only place that writes an error body (http_reply_error).
 */
#pragma once

#include <event2/event.h>

#include "catalog.h"
#include "config.h"
#include "err.h"
#include "pool.h"

struct http;

/* Binds cfg->listen. Returns NULL with err set when it cannot. */
struct http *http_new(struct event_base *base, const struct config *cfg,
		      struct pool *pool, struct catalog *cat,
		      struct pf_err *err);
void http_free(struct http *h); /* NULL ok */

int http_port(const struct http *h); /* the bound port (for port 0) */

/* Stops accepting connections (SIGTERM); requests in flight go on. */
void http_stop_accepting(struct http *h);
int http_in_flight(const struct http *h);
