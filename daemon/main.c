/*
 * prefetchd: argv/env -> config, the event loops (--threads), each with
 * its share of the pool and its HTTP server on the port, the schema
 * catalog and the signals; then the loops until SIGTERM, then an orderly
 * teardown. Nothing here blocks once the loops run.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>

#include "catalog.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "pool.h"

/* One event loop with its pool and HTTP server. Loop 0 runs on the main
 * thread, which also owns the signals and loads the schema (on its pool);
 * the others run on threads of their own (--threads) and share with it
 * only what http_shared holds, the schema among it. */
struct loop {
	struct daemon *d;
	struct event_base *base;
	struct pool *pool;
	struct http *http;
	struct event *stop;  /* activated by SIGTERM's handler on loop 0 */
	struct event *drain; /* polls the loop's requests in flight */
	double drain_started;
	pthread_t thread;
	bool running; /* a thread of its own was started */
};

struct daemon {
	struct config cfg;
	int nloops;
	struct loop *loops;
	struct catalog *cat;
	struct http_shared *shared;
	struct event *sigterm, *sigint, *sighup;
	bool stopping;
	int stop_signal; /* written before any loop is told to stop */
};

/* Polled while draining: exits the loop once no request is in flight on
 * it or the drain timeout has passed. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	int left = http_in_flight(l->http);

	if (left == 0 ||
	    clock_ms() - l->drain_started >= l->d->cfg.drain_timeout_ms) {
		if (left)
			log_warn("drain timeout: %d request(s) abandoned",
				 left);
		event_base_loopexit(l->base, NULL);
	}
}

/* On the loop's own thread: no more connections, then drain. */
static void on_loop_stop(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	struct timeval tick = {0, 20 * 1000};

	/* Logged once the port is closed, by the last loop to stop: whoever
	 * reads "stopping" finds new connections refused. */
	if (http_stop_accepting(l->http) && l->d->stop_signal)
		log_info("signal %d: stopping; %d request(s) in flight",
			 l->d->stop_signal, http_in_flight_all(l->http));
	l->drain_started = clock_ms();
	l->drain = event_new(l->base, -1, EV_PERSIST, on_drain_tick, l);
	if (!l->drain) {
		event_base_loopexit(l->base, NULL);
		return;
	}
	event_add(l->drain, &tick);
	on_drain_tick(-1, 0, l);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	if (d->stopping)
		return;
	d->stopping = true;
	d->stop_signal = (int)sig;
	/* Loop 0 stops here and now; the others as soon as their thread
	 * runs the event (libevent wakes their base). */
	for (int i = 1; i < d->nloops; i++)
		event_active(d->loops[i].stop, EV_TIMEOUT, 0);
	on_loop_stop(-1, 0, &d->loops[0]);
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

/* --threads 0 is one loop per core this process may run on; never more
 * loops than pool connections, as each needs one of its own. */
static int count_loops(const struct config *cfg)
{
	int n = cfg->threads;
	cpu_set_t cpus;

	if (n == 0)
		n = sched_getaffinity(0, sizeof(cpus), &cpus) == 0
			    ? CPU_COUNT(&cpus)
			    : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > cfg->pool_size) {
		log_info("%d event loops, not %d: --pool-size %d gives each "
			 "loop one connection at least",
			 cfg->pool_size, n, cfg->pool_size);
		n = cfg->pool_size;
	}
	return n;
}

/* The session's plan_cache_mode for --plan-mode custom or generic; NULL
 * for auto, where exec chooses per statement. */
static const char *plan_cache_mode(const char *plan_mode)
{
	if (!strcmp(plan_mode, "custom"))
		return "force_custom_plan";
	if (!strcmp(plan_mode, "generic"))
		return "force_generic_plan";
	return NULL;
}

/* The loop's base and its share of the pool's connections. */
static int loop_open(struct daemon *d, struct loop *l, int index)
{
	int size = d->cfg.pool_size / d->nloops +
		   (index < d->cfg.pool_size % d->nloops);
	struct pool_options popt = {
		.conninfo = d->cfg.database_url,
		.size = size,
		.statement_timeout_ms = d->cfg.statement_timeout_ms,
		.connect_timeout_ms = 5000,
		.prepare_cache = d->cfg.prepare_cache,
		.plan_cache_mode = plan_cache_mode(d->cfg.plan_mode),
	};

	l->d = d;
	l->base = new_base();
	if (!l->base)
		return -1;
	l->stop = event_new(l->base, -1, 0, on_loop_stop, l);
	l->pool = pool_new(l->base, &popt);
	return l->stop && l->pool ? 0 : -1;
}

static void *loop_thread(void *arg)
{
	struct loop *l = arg;

	event_base_dispatch(l->base);
	return NULL;
}

/* Threads start with every signal blocked, so that the signals reach the
 * main thread, whose loop handles them. */
static int start_threads(struct daemon *d)
{
	sigset_t all, old;
	int rc = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 1; i < d->nloops && rc == 0; i++) {
		rc = pthread_create(&d->loops[i].thread, NULL, loop_thread,
				    &d->loops[i]);
		d->loops[i].running = rc == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		log_error("cannot start a thread: %s", strerror(rc));
	return rc == 0 ? 0 : -1;
}

static int start(struct daemon *d)
{
	struct pf_err err = {0};

	if (check_overlay(d->cfg.schema_overlay) < 0)
		return -1;
	/* Before any base: libevent then locks each base, so that another
	 * thread may activate its events (SIGTERM's stop). */
	if (evthread_use_pthreads() < 0)
		return -1;
	d->nloops = count_loops(&d->cfg);
	d->loops = calloc((size_t)d->nloops, sizeof(*d->loops));
	if (!d->loops)
		return -1;
	for (int i = 0; i < d->nloops; i++)
		if (loop_open(d, &d->loops[i], i) < 0)
			return -1;
	d->cat = catalog_new(d->loops[0].pool, d->cfg.schemas,
			     d->cfg.schema_overlay);
	if (!d->cat)
		return -1;
	d->shared = http_shared_new(&d->cfg, d->cat, d->nloops, &err);
	for (int i = 0; d->shared && i < d->nloops; i++) {
		struct loop *l = &d->loops[i];
		l->http = http_new(l->base, d->shared, i, l->pool, &err);
		if (!l->http)
			break;
	}
	if (!d->shared || !d->loops[d->nloops - 1].http) {
		log_error("%s", err.message[0] ? err.message : "out of memory");
		return -1;
	}
	d->sigterm = evsignal_new(d->loops[0].base, SIGTERM, on_stop_signal, d);
	d->sigint = evsignal_new(d->loops[0].base, SIGINT, on_stop_signal, d);
	d->sighup = evsignal_new(d->loops[0].base, SIGHUP, on_sighup, d);
	if (!d->sigterm || !d->sigint || !d->sighup ||
	    evsignal_add(d->sigterm, NULL) < 0 ||
	    evsignal_add(d->sigint, NULL) < 0 ||
	    evsignal_add(d->sighup, NULL) < 0)
		return -1;
	if (start_threads(d) < 0)
		return -1;
	log_info("listening on %s:%d with %d event loop%s",
		 strncmp(d->cfg.listen, "[", 1) == 0 ? "[::]" : "127.0.0.1",
		 http_port(d->shared), d->nloops, d->nloops == 1 ? "" : "s");
	return 0;
}

/* Each thread's loop ends on its own once drained (or, when the start
 * failed, as soon as it is told to stop). */
static void join_threads(struct daemon *d)
{
	for (int i = 1; d->loops && i < d->nloops; i++)
		if (d->loops[i].running) {
			if (!d->stopping)
				event_active(d->loops[i].stop, EV_TIMEOUT, 0);
			pthread_join(d->loops[i].thread, NULL);
			d->loops[i].running = false;
		}
}

static void teardown(struct daemon *d)
{
	join_threads(d);
	if (d->sigterm)
		event_free(d->sigterm);
	if (d->sigint)
		event_free(d->sigint);
	if (d->sighup)
		event_free(d->sighup);
	for (int i = 0; d->loops && i < d->nloops; i++) {
		struct loop *l = &d->loops[i];
		if (l->stop)
			event_free(l->stop);
		if (l->drain)
			event_free(l->drain);
		http_free(l->http);
	}
	/* The pools before the catalog: loop 0's may hold its statement. */
	for (int i = 0; d->loops && i < d->nloops; i++)
		pool_free(d->loops[i].pool);
	catalog_free(d->cat);
	http_shared_free(d->shared);
	for (int i = 0; d->loops && i < d->nloops; i++)
		if (d->loops[i].base)
			event_base_free(d->loops[i].base);
	free(d->loops);
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
	if (strcmp(d.cfg.plan_mode, "auto") &&
	    strcmp(d.cfg.plan_mode, "custom") &&
	    strcmp(d.cfg.plan_mode, "generic")) {
		fprintf(stderr,
			"prefetchd: --plan-mode must be auto, custom or "
			"generic, not \"%s\"\n",
			d.cfg.plan_mode);
		config_cleanup(&d.cfg);
		return 2;
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
	event_base_dispatch(d.loops[0].base);
	join_threads(&d);
	log_info("stopped");
	teardown(&d);
	return 0;
}
