/*
 * The integration test harness: starts prefetchd against the throwaway
 * cluster that tests/run.sh prepared (the PFTEST_* environment), talks HTTP
 * to it through libevent's own client, reads the database through libpq and
 * compares JSON. A helper that cannot do its job fails the running test
 * (ck_abort_msg) unless its contract says that it returns an error.
 *
 * Tests run as role pftest; prefetchd connects as postgres, which is how
 * pg_stat_statements tells the two apart.
 */
#pragma once

#include <stddef.h>

#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>

/* --- test cases --- */

/* A TCase with the harness fixture and a 120 s timeout. Before each test
 * the fixture makes sure the cluster is up (a test that failed while it was
 * stopped must not break the next one); after it, it kills every prefetchd
 * the test started and removes the test's temporary files. The test process
 * dies with its runner, and prefetchd with the process that started it.
 * A daemon started in an unchecked fixture (shared by the forked tests of
 * a TCase) belongs to the runner: tests may use it, only the runner reaps
 * it, and it is killed at exit if still running. */
TCase *pftest_tcase(const char *name);

/* Writes text to a new file name in the test's temporary directory and
 * returns its path (owned by the harness, valid until the test ends). */
const char *pftest_write_file(const char *name, const char *text);

/* Parses JSON text written in a test (expected data); a syntax error fails
 * the test. A new reference. */
json_t *pftest_json(const char *text);

/* The same with ' for " so that expected data reads well in C:
 * pftest_jsonq("{'kind': 'foreign_key'}"). No ' inside strings then. */
json_t *pftest_jsonq(const char *text);

/* Whether table is one of those that the tests/django/NAME.sql files add to
 * schema public beside the demo's (Django's own test suites, named
 * <app_label>_<model>: aggregation_book, ...; check_django_suites.c): the
 * suites that check the demo schema as a whole leave them out. */
int pftest_django_suite_table(const char *table);

/* --- prefetchd --- */

struct pfd;

/* The monotonic clock in ms, and a sleep that resumes after signals. */
long long now_ms(void);
void sleep_ms(int ms);

/* Starts $PFTEST_BIN --listen 127.0.0.1:0 --database-url "host=...
 * port=... dbname=$PFTEST_DB user=postgres" --threads 1 followed by
 * extra_args (NULL-terminated, or NULL; a --threads there wins), stdout
 * and stderr to a log file, and waits up
 * to 10 s for "listening on 127.0.0.1:PORT" in the log. Fails the test,
 * showing the log, if that line does not come. Does not wait for /readyz.
 * The harness kills and frees it after the test if the test does not. */
struct pfd *pfd_start(const char *const *extra_args);

/* The same without waiting, for daemons expected to refuse to start.
 *
 * With PFTEST_WRAPPER set (words split by the shell, e.g. "valgrind
 * --leak-check=full"), the daemon runs as $PFTEST_WRAPPER prefetchd ...:
 * the wrapper must exec the daemon in its own process (valgrind does), so
 * pids, signals and /proc stay the daemon's. Timeouts for starting and
 * stopping are then longer, and the harness stops daemons with SIGTERM
 * (SIGKILL only after 60 s) so that the wrapper can report at exit. */
struct pfd *pfd_spawn(const char *const *extra_args);

/* Waits up to timeout_ms for the "listening on" line: the port, or -1 if
 * the daemon exited or the time ran out. */
int pfd_wait_listening(struct pfd *p, int timeout_ms);

int pfd_port(const struct pfd *p);

/* The daemon's process id. */
int pfd_pid(const struct pfd *p);

/* The number of file descriptors the daemon has open (entries of
 * /proc/PID/fd), or -1 when it has exited. */
int pfd_open_fds(const struct pfd *p);
/* Polls until the daemon has at most fds descriptors open: its count. */
int settle_fds(struct pfd *p, int fds, int timeout_ms);
/* A field of /proc/PID/status in kB (VmRSS, VmHWM), or -1. */
long proc_kb(int pid, const char *field);

/* Whether the harness runs daemons under PFTEST_WRAPPER (slower: tests
 * that time things may allow more). */
int pftest_wrapped(void);

/* Everything the daemon has logged so far; valid until the next call. */
const char *pfd_log(struct pfd *p);

/* Occurrences of needle in the daemon's log so far. */
int pfd_log_count(struct pfd *p, const char *needle);

/* Waits up to timeout_ms until the log contains needle: 0, or -1. */
int pfd_wait_log(struct pfd *p, const char *needle, int timeout_ms);

/* pfd_start, then pfd_wait_ready for up to 20 s: fails the test with the
 * log when the daemon is not ready by then. */
struct pfd *pfd_start_ready(const char *const *extra_args);

/* pfd_stop, which must give exit status 0 (a leak under ASan or valgrind
 * does not): fails the test with the log otherwise. */
void pfd_stop_clean(struct pfd *p);

/* kill(2) on the daemon: 0, or -1 once it has exited. */
int pfd_signal(struct pfd *p, int sig);

/* Waits up to timeout_ms for the daemon to exit by itself: its exit status
 * (128 + signal number if a signal killed it; 255, unknown, in a process
 * that did not start it), or -1 if still running. */
int pfd_wait_exit(struct pfd *p, int timeout_ms);

/* SIGTERM, then waits 15 s (SIGKILL after that): the exit status as for
 * pfd_wait_exit (137 after the SIGKILL). p stays valid (pfd_log works). */
int pfd_stop(struct pfd *p);

/* Polls GET /readyz until it answers 200: 0, or -1 after timeout_ms or
 * when the daemon exited. */
int pfd_wait_ready(struct pfd *p, int timeout_ms);

/* Kills the daemon if this process started it and it still runs, and
 * frees p; NULL ok. Optional: the fixture frees what a test leaves. */
void pfd_free(struct pfd *p);

/* --- HTTP --- */

struct http_res {
	int status; /* 0 when no response came */
	char *body; /* NUL-terminated; "" when empty */
	size_t len;
	json_t *json;	    /* the body parsed as JSON, or NULL */
	char *content_type; /* NULL when the header is absent */
};

/* One request to 127.0.0.1:port on a new connection with its own
 * event_base, 10 s timeout. headers: "Name: value" strings, NULL-terminated,
 * or NULL; Host is always set, and with a body Content-Length and (unless
 * given) Content-Type: application/json. Returns 0 with *out filled, or -1
 * (status 0) when the connection failed or timed out. Clean up *out with
 * http_res_cleanup() in both cases. */
int http_do(int port, const char *method, const char *path, const char *body,
	    const char *const *headers, struct http_res *out);

void http_res_cleanup(struct http_res *res);

/* One series of a fresh GET /metrics, named exactly as prefetchd writes it
 * (name{label="v",...}), or -1 when it is absent. A failed GET fails the
 * test. */
double http_metric(int port, const char *series);

/* http_do on a thread of its own, for requests that must be in flight
 * while the test does something else (a signal, a database restart).
 * The arguments must outlive the join. Returns NULL when no thread could
 * be started (the test fails). */
struct http_bg;
struct http_bg *http_bg_start(int port, const char *method, const char *path,
			      const char *body, const char *const *headers);

/* Waits for the request: http_do's return value, *out filled as by
 * http_do (clean it up). Frees bg. */
int http_bg_join(struct http_bg *bg, struct http_res *out);

/* A new TCP connection to 127.0.0.1:port: its socket, or -1 when the
 * connection is refused. */
int tcp_connect(int port);

/* Sends len raw bytes to 127.0.0.1:port and reads the reply until the peer
 * closes, a complete response (by Content-Length) has arrived, or 5 s have
 * passed. *reply: a malloc'd NUL-terminated string (free it). Returns the
 * reply's length, or -1 when the connection failed. */
long raw_request(int port, const char *bytes, size_t len, char **reply);

/* --- database --- */

/* A new connection to $PFTEST_DB as role pftest, TimeZone UTC; PQfinish
 * it. Fails the test when the connection fails. */
PGconn *db_connect(void);

/* Runs sql (one row, one json/jsonb/text column) on the harness's own
 * connection and parses the value: a new reference; SQL NULL gives json
 * null. A failing query or a value that is not JSON fails the test. */
json_t *db_json(const char *sql);

/* Runs sql (any statements); an error fails the test. */
void db_exec(const char *sql);

/* pg_stat_statements_reset(). Call it once prefetchd is ready (its catalog
 * load is over) and right before the requests to count. */
void db_stats_reset(void);

/* The number of data-reading statements other roles (prefetchd) ran since
 * db_stats_reset(): the calls of top-level statements in $PFTEST_DB that
 * start with SELECT or WITH and have a FROM, which leaves out BEGIN/COMMIT/
 * SET, "SELECT 1" pings and set_config(), and not the catalog queries
 * (pg_class, pg_attribute, ...), in case the daemon reloads its schema. */
long db_data_statements_since_reset(void);
/* The rows those statements returned to their clients, all together. */
long db_data_rows_since_reset(void);
/* The calls of those statements whose text contains needle (no quote in
 * it), and how many times PostgreSQL planned them: a prepared statement on
 * its generic plan runs without planning (the test cluster tracks
 * planning). */
void db_statement_counts(const char *needle, long *calls, long *plans);
/* sum(column) of pg_stat_statements over those statements, e.g.
 * "shared_blks_hit" ("" needle: all of them). */
long db_data_statements_sum(const char *column, const char *needle);

/* $PFTEST_PGCTL stop|start "$PFTEST_PGDATA": fast shutdown (every
 * connection is cut) and a start that waits until the server accepts
 * connections. A failure fails the test. */
void db_cluster_stop(void);
void db_cluster_start(void);

/* --- JSON --- */

/* Fails unless res is a JSON response (Content-Type application/json)
 * with DESIGN.md §1's error body of that status and code, and a message. */
#define ck_assert_http_error(res, status, code)                                \
	pftest_error_check((res), (status), (code), __FILE__, __LINE__)

void pftest_error_check(const struct http_res *res, int status,
			const char *code, const char *file, int line);

/* Fails the test unless got equals want (json_equal). The message gives the
 * first differing path ($.models[3].name) and both values, compactly; the
 * whole documents go to stderr. Neither reference is taken. */
#define ck_assert_json_eq(got, want)                                           \
	pftest_json_check((got), (want), 0, __FILE__, __LINE__)

/* The same, but objects in want only need to be a subset of those in got,
 * at every depth (arrays still match element by element, same length). */
#define ck_assert_json_has(got, want)                                          \
	pftest_json_check((got), (want), 1, __FILE__, __LINE__)

void pftest_json_check(json_t *got, json_t *want, int subset, const char *file,
		       int line);

/* Runs one data-driven case ({"name", "request", "expect_sql" or
 * "expect", "queries", or "status" and "error"}: check_cases.c's header)
 * against the prefetchd on port; file names it in messages. */
void pftest_run_case(int port, const char *file, json_t *c);
