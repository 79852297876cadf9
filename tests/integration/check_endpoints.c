/*
 * The daemon's own endpoints and lifecycle: /healthz and /readyz, JSON 404
 * and 405, exit status on SIGTERM/SIGINT, and a database that goes away
 * and comes back (at run time and at start) without restarting prefetchd.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 10000
/* Reconnecting may wait for the pool's backoff. */
#define RECOVER_MS 30000

/* Fails unless res is a JSON response with the given status. */
static void assert_json_response(const struct http_res *res, int status)
{
	ck_assert_msg(res->status == status, "status %d instead of %d: %s",
		      res->status, status, res->body);
	ck_assert_msg(res->content_type != NULL &&
			      strstr(res->content_type, "application/json"),
		      "Content-Type %s instead of application/json",
		      res->content_type ? res->content_type : "(none)");
	ck_assert_msg(res->json != NULL, "body is not JSON: %s", res->body);
}

/* Fails unless res is DESIGN.md §1's error body with status and code. */
static void assert_error(const struct http_res *res, int status,
			 const char *code)
{
	json_t *err;

	assert_json_response(res, status);
	err = json_object_get(res->json, "error");
	ck_assert_msg(json_is_object(err), "no error object: %s", res->body);
	ck_assert_int_eq(json_integer_value(json_object_get(err, "status")),
			 status);
	ck_assert_msg(
		json_is_string(json_object_get(err, "code")) &&
			strcmp(json_string_value(json_object_get(err, "code")),
			       code) == 0,
		"error code is not %s: %s", code, res->body);
	ck_assert_msg(json_is_string(json_object_get(err, "message")),
		      "error without a message: %s", res->body);
}

/* GET path until it answers status; returns 0, or -1 after timeout_ms. The
 * last response is left in *res either way. */
static int poll_status(int port, const char *path, int status, int timeout_ms,
		       struct http_res *res)
{
	struct timespec pause = {0, 100 * 1000000};

	for (int waited = 0;; waited += 100) {
		http_do(port, "GET", path, NULL, NULL, res);
		if (res->status == status)
			return 0;
		if (waited >= timeout_ms)
			return -1;
		http_res_cleanup(res);
		nanosleep(&pause, NULL);
	}
}

static void assert_healthz_ok(int port)
{
	struct http_res res;

	ck_assert_int_eq(http_do(port, "GET", "/healthz", NULL, NULL, &res), 0);
	assert_json_response(&res, 200);
	json_t *want = pftest_jsonq("{'status': 'ok'}");
	ck_assert_json_has(res.json, want);
	json_decref(want);
	http_res_cleanup(&res);
}

START_TEST(test_healthz_is_200_json)
{
	struct pfd *p = pfd_start(NULL);

	assert_healthz_ok(pfd_port(p));
}
END_TEST

START_TEST(test_readyz_is_200_with_database_up)
{
	struct pfd *p = pfd_start(NULL);
	struct http_res res;

	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready within %d ms; log:\n%s", READY_MS, pfd_log(p));
	ck_assert_int_eq(
		http_do(pfd_port(p), "GET", "/readyz", NULL, NULL, &res), 0);
	assert_json_response(&res, 200);
	json_t *want = pftest_jsonq("{'status': 'ready'}");
	ck_assert_json_has(res.json, want);
	json_decref(want);
	http_res_cleanup(&res);
}
END_TEST

/* A path that is no endpoint is 404, a method an endpoint does not take
 * is 405: both JSON, never libevent's HTML. */
static const struct {
	const char *method, *path;
	int status;
	const char *code;
} routing_cases[] = {
	{"GET", "/nope", 404, "not_found"},
	{"GET", "/", 404, "not_found"},
	{"GET", "/schema/extra", 404, "not_found"},
	{"POST", "/queries", 404, "not_found"},
	{"DELETE", "/query", 405, "method_not_allowed"},
	{"GET", "/query", 405, "method_not_allowed"},
	{"GET", "/plan", 405, "method_not_allowed"},
	{"POST", "/healthz", 405, "method_not_allowed"},
};

START_TEST(test_routing_errors_are_json)
{
	struct pfd *p = pfd_start(NULL);
	struct http_res res;

	ck_assert_int_eq(http_do(pfd_port(p), routing_cases[_i].method,
				 routing_cases[_i].path, NULL, NULL, &res),
			 0);
	assert_error(&res, routing_cases[_i].status, routing_cases[_i].code);
	http_res_cleanup(&res);
}
END_TEST

static const int stop_signals[] = {SIGTERM, SIGINT};

START_TEST(test_stop_signal_exits_0)
{
	struct pfd *p = pfd_start(NULL);
	int status;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	ck_assert_int_eq(pfd_signal(p, stop_signals[_i]), 0);
	status = pfd_wait_exit(p, 15000);
	ck_assert_msg(status == 0, "exit status %d after signal %d; log:\n%s",
		      status, stop_signals[_i], pfd_log(p));
}
END_TEST

/* Without --reuse-port a taken port is an error at start (exit 1, with
 * the log saying why); with it on both, two daemons share the port and the
 * kernel gives each a share of new connections. */
START_TEST(test_reuse_port_shares_a_port_between_daemons)
{
	const char *first_args[] = {"--reuse-port", "1", NULL};
	struct pfd *first = pfd_start(first_args), *second, *refused;
	char listen[32];
	const char *second_args[] = {"--listen", listen, "--reuse-port", "1",
				     NULL};
	const char *refused_args[] = {"--listen", listen, NULL};
	int port = pfd_port(first), status, served[2] = {0, 0};

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	refused = pfd_spawn(refused_args);
	status = pfd_wait_exit(refused, 15000);
	ck_assert_msg(status == 1, "exit status %d; log:\n%s", status,
		      pfd_log(refused));
	ck_assert(strstr(pfd_log(refused), "cannot listen") != NULL);
	pfd_free(refused);

	second = pfd_start(second_args);
	ck_assert_int_eq(pfd_port(second), port);
	ck_assert_int_eq(pfd_wait_ready(first, READY_MS), 0);
	ck_assert_int_eq(pfd_wait_ready(second, READY_MS), 0);
	/* each http_do is a new connection: 40 of them all landing on one
	 * daemon would happen about once in 10^12 runs */
	for (int i = 0; i < 40; i++)
		assert_healthz_ok(port);
	ck_assert_int_eq(pfd_stop(first), 0);
	ck_assert_int_eq(pfd_stop(second), 0);
	for (const char *at = pfd_log(first); (at = strstr(at, "/healthz "));
	     at++)
		served[0]++;
	for (const char *at = pfd_log(second); (at = strstr(at, "/healthz "));
	     at++)
		served[1]++;
	ck_assert_msg(served[0] > 0 && served[1] > 0,
		      "one daemon served every connection: %d and %d",
		      served[0], served[1]);
	pfd_free(first);
	pfd_free(second);
}
END_TEST

/* Connects to 127.0.0.1:port and has one keep-alive request answered, so
 * the daemon has accepted the connection. Returns the socket. */
static int connect_and_ask(int port)
{
	static const char ask[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
	struct sockaddr_in to = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char reply[512];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
	ck_assert_int_eq(write(fd, ask, sizeof(ask) - 1),
			 (ssize_t)sizeof(ask) - 1);
	ck_assert_int_gt(read(fd, reply, sizeof(reply)), 0);
	return fd;
}

/* TCP_NODELAY of the daemon's end of the connection whose client end is
 * at `client`: each socket of the daemon is borrowed with pidfd_getfd
 * (the daemon is the test's child, so it may) until one's peer is it.
 * -1: none found. */
static int daemon_nodelay(int pid, const struct sockaddr_in *client)
{
	char dir[64];
	DIR *d;
	struct dirent *e;
	int pidfd = pidfd_open(pid, 0), found = -1;

	ck_assert_msg(pidfd >= 0, "pidfd_open: %s", strerror(errno));
	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	while (found < 0 && (e = readdir(d))) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		int fd = pidfd_getfd(pidfd, atoi(e->d_name), 0), on = 0;
		socklen_t onlen = sizeof(on);

		if (e->d_name[0] == '.' || fd < 0)
			continue;
		if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0 &&
		    peer.sin_family == AF_INET &&
		    peer.sin_port == client->sin_port &&
		    getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &onlen) == 0)
			found = on != 0;
		close(fd);
	}
	closedir(d);
	close(pidfd);
	return found;
}

/* With Nagle on, a reply written in two pieces (headers, then body) waits
 * for the client's delayed ACK: about 40 ms per keep-alive request. */
START_TEST(test_accepted_connections_have_nodelay)
{
	struct pfd *p = pfd_start(NULL);
	struct sockaddr_in mine;
	socklen_t len = sizeof(mine);
	int fd = connect_and_ask(pfd_port(p));

	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&mine, &len), 0);
	ck_assert_int_eq(daemon_nodelay(pfd_pid(p), &mine), 1);
	close(fd);
	ck_assert_int_eq(pfd_stop(p), 0);
	pfd_free(p);
}
END_TEST

START_TEST(test_database_outage_is_503_then_recovers)
{
	struct pfd *p = pfd_start(NULL);
	int port = pfd_port(p);
	struct http_res res;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	db_cluster_stop();

	ck_assert_msg(poll_status(port, "/readyz", 503, READY_MS, &res) == 0,
		      "/readyz answers %d with the database down: %s",
		      res.status, res.body);
	assert_error(&res, 503, "database_unavailable");
	http_res_cleanup(&res);
	assert_healthz_ok(port);

	db_cluster_start();
	ck_assert_msg(pfd_wait_ready(p, RECOVER_MS) == 0,
		      "not ready again within %d ms; log:\n%s", RECOVER_MS,
		      pfd_log(p));
	ck_assert_msg(pfd_signal(p, 0) == 0, "prefetchd exited");
}
END_TEST

START_TEST(test_starts_unready_while_database_down)
{
	struct pfd *p;
	struct http_res res;

	db_cluster_stop();
	p = pfd_start(NULL);
	assert_healthz_ok(pfd_port(p));
	ck_assert_int_eq(
		http_do(pfd_port(p), "GET", "/readyz", NULL, NULL, &res), 0);
	assert_error(&res, 503, "database_unavailable");
	http_res_cleanup(&res);

	db_cluster_start();
	ck_assert_msg(pfd_wait_ready(p, RECOVER_MS) == 0,
		      "not ready within %d ms of the database start; log:\n%s",
		      RECOVER_MS, pfd_log(p));
	ck_assert_int_eq(
		http_do(pfd_port(p), "GET", "/schema", NULL, NULL, &res), 0);
	assert_json_response(&res, 200);
	ck_assert(json_is_array(json_object_get(res.json, "models")));
	http_res_cleanup(&res);
}
END_TEST

Suite *endpoints_suite(void)
{
	Suite *s = suite_create("endpoints");
	TCase *tc;

	tc = pftest_tcase("probes");
	tcase_add_test(tc, test_healthz_is_200_json);
	tcase_add_test(tc, test_readyz_is_200_with_database_up);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("routing");
	tcase_add_loop_test(
		tc, test_routing_errors_are_json, 0,
		(int)(sizeof(routing_cases) / sizeof(routing_cases[0])));
	suite_add_tcase(s, tc);

	tc = pftest_tcase("signals");
	tcase_add_loop_test(tc, test_stop_signal_exits_0, 0,
			    sizeof(stop_signals) / sizeof(stop_signals[0]));
	suite_add_tcase(s, tc);

	tc = pftest_tcase("listen");
	tcase_add_test(tc, test_reuse_port_shares_a_port_between_daemons);
	tcase_add_test(tc, test_accepted_connections_have_nodelay);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("outage");
	tcase_add_test(tc, test_database_outage_is_503_then_recovers);
	tcase_add_test(tc, test_starts_unready_while_database_down);
	suite_add_tcase(s, tc);
	return s;
}
