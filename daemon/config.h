/*
 * Configuration: one option table gives every setting its flag, its
 * environment variable, its type, default and range, and its --help line.
 * Environment first, then flags, so a flag wins.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct config {
	char *listen;	      /* "127.0.0.1:8080" */
	char *database_url;   /* libpq conninfo or URL; "" = libpq's PG* */
	char *schemas;	      /* "public" or "public,app" */
	char *schema_overlay; /* overlay file path, or "" */
	char *auth_token;     /* bearer token, or "" for none */
	char *log_level;      /* debug|info|warn|error */
	int pool_size;
	int prepare_cache;   /* prepared statements per connection */
	char *plan_mode;     /* auto|custom|generic (see exec.c) */
	int pool_timeout_ms; /* max wait for a connection */
	int statement_timeout_ms;
	long max_body;	      /* bytes */
	long max_rows;	      /* rows over all queries of a request */
	int max_depth;	      /* nesting of conditions/Prefetch querysets */
	int max_lookups;      /* prefetch_related entries per request */
	int http_timeout_s;   /* read/write timeout of a client connection */
	int drain_timeout_ms; /* SIGTERM: how long requests may finish */
	int max_headers;      /* bytes of request headers */
	int max_concurrent;   /* requests in flight, /healthz+/readyz aside */
	int reuse_port;	      /* 1: SO_REUSEPORT on the listener */
	int threads;	      /* event loops; 0 = one per core */
	int max_held_mb; /* rows budget: MB of results held at once; 0 none */
};

/* Fills cfg from the environment and argv. Returns 0, 1 when --help or
 * --version was printed (exit 0), or -1 with err set (exit 2). */
int config_load(struct config *cfg, int argc, char **argv, struct pf_err *err);
void config_cleanup(struct config *cfg);

/* Splits "host:port" (port may be 0). Returns -1 on a malformed value. */
int config_split_listen(const char *listen, char *host, size_t hostlen,
			int *port);
