/* Prometheus counters: see metrics.h. Small fixed tables: routes and error
 * codes are few and known, so a linear search is the simplest index. One
 * lock: every event loop counts into the same tables, once a request. */
#include "metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 128

static const double buckets_ms[] = {1,	 2.5, 5,    10,	  25,	50,   100,
				    250, 500, 1000, 2500, 5000, 10000};
#define NBUCKETS (sizeof(buckets_ms) / sizeof(buckets_ms[0]))

struct route_stats {
	char route[32];
	unsigned long count;
	double sum_ms;
	unsigned long buckets[NBUCKETS]; /* cumulative at write time */
};

struct status_count {
	char route[32];
	int status;
	unsigned long count;
};

struct code_count {
	char code[32];
	unsigned long count;
};

/* Statements and rows per answered /query: how much each request costs. */
static const double query_buckets[] = {0, 1, 2, 3, 4, 6, 8, 12, 16, 32};
static const double row_buckets[] = {0,	   1,	  10,	  100,
				     1000, 10000, 100000, 1000000};

struct histogram {
	unsigned long counts[16]; /* per bucket; cumulated at write time */
	unsigned long count;
	double sum;
};

static void histogram_add(struct histogram *h, const double *bounds,
			  size_t nbounds, double v)
{
	h->count++;
	h->sum += v;
	for (size_t i = 0; i < nbounds; i++)
		if (v <= bounds[i]) {
			h->counts[i]++;
			return;
		}
}

static void histogram_write(const struct histogram *h, const double *bounds,
			    size_t nbounds, const char *name, const char *help,
			    struct evbuffer *out)
{
	unsigned long cum = 0;

	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name,
			    help, name);
	for (size_t i = 0; i < nbounds; i++) {
		cum += h->counts[i];
		evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %lu\n", name,
				    bounds[i], cum);
	}
	evbuffer_add_printf(out,
			    "%s_bucket{le=\"+Inf\"} %lu\n%s_sum %.0f\n"
			    "%s_count %lu\n",
			    name, h->count, name, h->sum, name, h->count);
}

#define NB(a) (sizeof(a) / sizeof(a[0]))

struct metrics {
	pthread_mutex_t lock;
	struct route_stats routes[16];
	size_t nroutes;
	struct status_count statuses[MAX_SERIES];
	size_t nstatuses;
	struct code_count codes[MAX_SERIES];
	size_t ncodes;
	unsigned long queries, rows;
	struct histogram queries_per_request, rows_per_request;
};

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(struct metrics));

	if (m)
		pthread_mutex_init(&m->lock, NULL);
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static struct route_stats *route_slot(struct metrics *m, const char *route)
{
	for (size_t i = 0; i < m->nroutes; i++)
		if (strcmp(m->routes[i].route, route) == 0)
			return &m->routes[i];
	if (m->nroutes == sizeof(m->routes) / sizeof(m->routes[0]))
		return NULL;
	strncpy(m->routes[m->nroutes].route, route,
		sizeof(m->routes[0].route) - 1);
	return &m->routes[m->nroutes++];
}

static void count_status(struct metrics *m, const char *route, int status)
{
	for (size_t i = 0; i < m->nstatuses; i++)
		if (m->statuses[i].status == status &&
		    strcmp(m->statuses[i].route, route) == 0) {
			m->statuses[i].count++;
			return;
		}
	if (m->nstatuses == MAX_SERIES)
		return;
	strncpy(m->statuses[m->nstatuses].route, route,
		sizeof(m->statuses[0].route) - 1);
	m->statuses[m->nstatuses].status = status;
	m->statuses[m->nstatuses++].count = 1;
}

static void count_code(struct metrics *m, const char *code)
{
	for (size_t i = 0; i < m->ncodes; i++)
		if (strcmp(m->codes[i].code, code) == 0) {
			m->codes[i].count++;
			return;
		}
	if (m->ncodes == MAX_SERIES)
		return;
	strncpy(m->codes[m->ncodes].code, code, sizeof(m->codes[0].code) - 1);
	m->codes[m->ncodes++].count = 1;
}

void metrics_observe(struct metrics *m, const char *route, int status,
		     const char *code, double ms, int queries, long rows)
{
	struct route_stats *r;

	pthread_mutex_lock(&m->lock);
	r = route_slot(m, route);
	if (r) {
		r->count++;
		r->sum_ms += ms;
		for (size_t i = 0; i < NBUCKETS; i++)
			if (ms <= buckets_ms[i]) {
				r->buckets[i]++;
				break;
			}
	}
	count_status(m, route, status);
	if (code)
		count_code(m, code);
	m->queries += (unsigned long)queries;
	m->rows += (unsigned long)rows;
	if (status == 200 && strcmp(route, "/query") == 0) {
		histogram_add(&m->queries_per_request, query_buckets,
			      NB(query_buckets), queries);
		histogram_add(&m->rows_per_request, row_buckets,
			      NB(row_buckets), (double)rows);
	}
	pthread_mutex_unlock(&m->lock);
}

static void write_histograms(const struct metrics *m, struct evbuffer *out)
{
	evbuffer_add_printf(out,
			    "# HELP prefetchd_request_duration_seconds Time "
			    "from the request to the reply.\n"
			    "# TYPE prefetchd_request_duration_seconds "
			    "histogram\n");
	for (size_t i = 0; i < m->nroutes; i++) {
		const struct route_stats *r = &m->routes[i];
		unsigned long cum = 0;
		for (size_t b = 0; b < NBUCKETS; b++) {
			cum += r->buckets[b];
			evbuffer_add_printf(
				out,
				"prefetchd_request_duration_seconds_bucket{"
				"route=\"%s\",le=\"%g\"} %lu\n",
				r->route, buckets_ms[b] / 1000.0, cum);
		}
		evbuffer_add_printf(
			out,
			"prefetchd_request_duration_seconds_bucket{route="
			"\"%s\",le=\"+Inf\"} %lu\n"
			"prefetchd_request_duration_seconds_sum{route=\"%s\"} "
			"%.6f\n"
			"prefetchd_request_duration_seconds_count{route="
			"\"%s\"} %lu\n",
			r->route, r->count, r->route, r->sum_ms / 1000.0,
			r->route, r->count);
	}
}

void metrics_write(struct metrics *m, const struct metrics_state *st,
		   struct evbuffer *out)
{
	pthread_mutex_lock(&m->lock);
	evbuffer_add_printf(out, "# HELP prefetchd_requests_total Requests "
				 "answered, by route and status.\n"
				 "# TYPE prefetchd_requests_total counter\n");
	for (size_t i = 0; i < m->nstatuses; i++)
		evbuffer_add_printf(out,
				    "prefetchd_requests_total{route=\"%s\","
				    "status=\"%d\"} %lu\n",
				    m->statuses[i].route, m->statuses[i].status,
				    m->statuses[i].count);
	write_histograms(m, out);
	histogram_write(&m->queries_per_request, query_buckets,
			NB(query_buckets), "prefetchd_queries_per_request",
			"Data statements of each answered /query.", out);
	histogram_write(&m->rows_per_request, row_buckets, NB(row_buckets),
			"prefetchd_rows_per_request",
			"Rows read by each answered /query.", out);
	evbuffer_add_printf(out,
			    "# HELP prefetchd_errors_total Error replies by "
			    "code (statement_timeout, database_unavailable, "
			    "bad_value, ...).\n"
			    "# TYPE prefetchd_errors_total counter\n");
	for (size_t i = 0; i < m->ncodes; i++)
		evbuffer_add_printf(out,
				    "prefetchd_errors_total{code=\"%s\"} "
				    "%lu\n",
				    m->codes[i].code, m->codes[i].count);
	evbuffer_add_printf(
		out,
		"# HELP prefetchd_queries_total Data statements sent.\n"
		"# TYPE prefetchd_queries_total counter\n"
		"prefetchd_queries_total %lu\n"
		"# HELP prefetchd_rows_total Rows read from PostgreSQL.\n"
		"# TYPE prefetchd_rows_total counter\n"
		"prefetchd_rows_total %lu\n"
		"# HELP prefetchd_requests_in_flight Requests being served.\n"
		"# TYPE prefetchd_requests_in_flight gauge\n"
		"prefetchd_requests_in_flight %d\n"
		"# HELP prefetchd_pool_connections Pool connections by "
		"state.\n"
		"# TYPE prefetchd_pool_connections gauge\n"
		"prefetchd_pool_connections{state=\"size\"} %d\n"
		"prefetchd_pool_connections{state=\"open\"} %d\n"
		"prefetchd_pool_connections{state=\"idle\"} %d\n"
		"prefetchd_pool_connections{state=\"busy\"} %d\n"
		"# HELP prefetchd_pool_waiting Requests waiting for a "
		"connection.\n"
		"# TYPE prefetchd_pool_waiting gauge\n"
		"prefetchd_pool_waiting %d\n"
		"# HELP prefetchd_rows_held_bytes Bytes of query results "
		"held by requests (--max-held-mb).\n"
		"# TYPE prefetchd_rows_held_bytes gauge\n"
		"prefetchd_rows_held_bytes %zu\n"
		"# HELP prefetchd_budget_waiting Requests waiting for the rows "
		"budget.\n"
		"# TYPE prefetchd_budget_waiting gauge\n"
		"prefetchd_budget_waiting %d\n"
		"# HELP prefetchd_budget_waits_total Requests that waited for "
		"the rows budget.\n"
		"# TYPE prefetchd_budget_waits_total counter\n"
		"prefetchd_budget_waits_total %lu\n"
		"# HELP prefetchd_plans_total Prefetch levels of fewer than "
		"1,000 keys run on each of PostgreSQL's plans.\n"
		"# TYPE prefetchd_plans_total counter\n"
		"prefetchd_plans_total{plan=\"generic\"} %lu\n"
		"prefetchd_plans_total{plan=\"custom\"} %lu\n"
		"# HELP prefetchd_database_up Whether the last connection "
		"attempt succeeded.\n"
		"# TYPE prefetchd_database_up gauge\n"
		"prefetchd_database_up %d\n"
		"# HELP prefetchd_pool_connects_total Connection attempts.\n"
		"# TYPE prefetchd_pool_connects_total counter\n"
		"prefetchd_pool_connects_total{result=\"ok\"} %lu\n"
		"prefetchd_pool_connects_total{result=\"failed\"} %lu\n"
		"# HELP prefetchd_schema_reloads_total Schema loads.\n"
		"# TYPE prefetchd_schema_reloads_total counter\n"
		"prefetchd_schema_reloads_total{result=\"ok\"} %lu\n"
		"prefetchd_schema_reloads_total{result=\"failed\"} %lu\n"
		"# HELP prefetchd_schema_loaded Whether a schema is loaded.\n"
		"# TYPE prefetchd_schema_loaded gauge\n"
		"prefetchd_schema_loaded %d\n"
		"# HELP prefetchd_event_loops Event loops serving requests "
		"(--threads).\n"
		"# TYPE prefetchd_event_loops gauge\n"
		"prefetchd_event_loops %d\n",
		m->queries, m->rows, st->in_flight, st->pool.size,
		st->pool.open, st->pool.idle, st->pool.busy, st->pool.waiting,
		st->budget.held, st->budget.waiting, st->budget.waits,
		st->plans.generic, st->plans.custom, st->pool.up ? 1 : 0,
		st->pool.connects, st->pool.connect_failures, st->reloads_ok,
		st->reloads_failed, st->schema_loaded, st->loops);
	pthread_mutex_unlock(&m->lock);
}
