/*
 * prefetchd: argv/env -> config, the event loop, the pool, the schema
 * catalog, the HTTP server and the signals; then the loop until SIGTERM,
 * then an orderly teardown. Nothing here blocks once the loop runs.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "catalog.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "pool.h"

struct daemon {
	struct config cfg;
	struct event_base *base;
	struct pool *pool;
	struct catalog *cat;
	struct http *http;
	struct event *sigterm, *sigint, *sighup, *drain;
	double drain_started; /* clock_ms() at SIGTERM */
};

/* Polled while draining: exits the loop once no request is in flight or
 * the drain timeout has passed. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	int left = http_in_flight(d->http);

	if (left == 0 ||
	    clock_ms() - d->drain_started >= d->cfg.drain_timeout_ms) {
		if (left)
			log_warn("drain timeout: %d request(s) abandoned",
				 left);
		event_base_loopexit(d->base, NULL);
	}
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct timeval tick = {0, 20 * 1000};

	if (d->drain)
		return;
	/* Closed before the line is logged: whoever reads "stopping" finds
	 * the port closed. */
	http_stop_accepting(d->http);
	log_info("signal %d: stopping; %d request(s) in flight", (int)sig,
		 http_in_flight(d->http));
	d->drain_started = clock_ms();
	d->drain = event_new(d->base, -1, EV_PERSIST, on_drain_tick, d);
	if (!d->drain) {
		event_base_loopexit(d->base, NULL);
		return;
	}
	event_add(d->drain, &tick);
	on_drain_tick(-1, 0, d);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	log_info("SIGHUP: reloading the schema");
	catalog_reload(d->cat);
}

/* A bad overlay is an operator error: refuse to start rather than serve
 * with names the operator did not ask for. Semantic errors (unknown tables)
 * can only be found once the catalog is read, and are logged then. */
static int check_overlay(const char *path)
{
	json_error_t jerr;
	json_t *doc;

	if (!path[0])
		return 0;
	doc = json_load_file(path, 0, &jerr);
	if (!doc) {
		log_error("schema overlay %s: %s (line %d)", path, jerr.text,
			  jerr.line);
		return -1;
	}
	json_decref(doc);
	return 0;
}

/* The epoll changelist applies a loop iteration's event changes at once:
 * a socket's read event removed and added again within it (evhttp between
 * requests, the pool between batches) costs no epoll_ctl. It misbehaves
 * only with dup()ed descriptors, which prefetchd never makes. */
static struct event_base *new_base(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (!cfg)
		return NULL;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

static int start(struct daemon *d)
{
	struct pool_options popt = {
		.conninfo = d->cfg.database_url,
		.size = d->cfg.pool_size,
		.statement_timeout_ms = d->cfg.statement_timeout_ms,
		.connect_timeout_ms = 5000,
		.prepare_cache = d->cfg.prepare_cache,
	};
	struct pf_err err = {0};

	if (check_overlay(d->cfg.schema_overlay) < 0)
		return -1;
	d->base = new_base();
	if (!d->base)
		return -1;
	d->pool = pool_new(d->base, &popt);
	d->cat = d->pool ? catalog_new(d->pool, d->cfg.schemas,
				       d->cfg.schema_overlay)
			 : NULL;
	if (!d->cat)
		return -1;
	d->http = http_new(d->base, &d->cfg, d->pool, d->cat, &err);
	if (!d->http) {
		log_error("%s", err.message[0] ? err.message : "out of memory");
		return -1;
	}
	d->sigterm = evsignal_new(d->base, SIGTERM, on_stop_signal, d);
	d->sigint = evsignal_new(d->base, SIGINT, on_stop_signal, d);
	d->sighup = evsignal_new(d->base, SIGHUP, on_sighup, d);
	if (!d->sigterm || !d->sigint || !d->sighup ||
	    evsignal_add(d->sigterm, NULL) < 0 ||
	    evsignal_add(d->sigint, NULL) < 0 ||
	    evsignal_add(d->sighup, NULL) < 0)
		return -1;
	log_info("listening on %s:%d",
		 strncmp(d->cfg.listen, "[", 1) == 0 ? "[::]" : "127.0.0.1",
		 http_port(d->http));
	return 0;
}

static void teardown(struct daemon *d)
{
	if (d->sigterm)
		event_free(d->sigterm);
	if (d->sigint)
		event_free(d->sigint);
	if (d->sighup)
		event_free(d->sighup);
	if (d->drain)
		event_free(d->drain);
	http_free(d->http);
	pool_free(d->pool);
	catalog_free(d->cat);
	if (d->base)
		event_base_free(d->base);
	config_cleanup(&d->cfg);
	libevent_global_shutdown();
}

int main(int argc, char **argv)
{
	struct daemon d = {0};
	struct pf_err err = {0};
	int rc;

	rc = config_load(&d.cfg, argc, argv, &err);
	if (rc != 0) {
		if (rc < 0)
			fprintf(stderr, "prefetchd: %s\n", err.message);
		config_cleanup(&d.cfg);
		return rc < 0 ? 2 : 0;
	}
	if (log_set_level(d.cfg.log_level) < 0) {
		fprintf(stderr, "prefetchd: unknown log level \"%s\"\n",
			d.cfg.log_level);
		config_cleanup(&d.cfg);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* stderr is unbuffered: each log line would be a write per piece
	 * (the access line: two). Line-buffered, it is one write a line. */
	setvbuf(stderr, NULL, _IOLBF, 0);
	if (start(&d) < 0) {
		teardown(&d);
		return 1;
	}
	event_base_dispatch(d.base);
	log_info("stopped");
	teardown(&d);
	return 0;
}
