/*
 * The bearer token (--auth-token, PREFETCHD_AUTH_TOKEN): every endpoint but
 * /healthz and /readyz needs "Authorization: Bearer TOKEN"; a missing or
 * wrong one is a 401 JSON error with WWW-Authenticate: Bearer, answered
 * before the body is parsed and without touching PostgreSQL. Without a
 * token configured nothing is asked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

#define TOKEN "s3cret-T0ken_with.chars~"
#define SPEC                                                                   \
	"{\"model\":\"author\",\"filter\":{\"id\":1},\"only\":[\"name\"],"     \
	"\"prefetch_related\":[\"book_set\"]}"

static struct pfd *start_with_token(void)
{
	const char *args[] = {"--auth-token", TOKEN, NULL};

	return pfd_start_ready(args);
}

/* Every endpoint that needs the token. */
static const char *const guarded[][3] = {
	{"GET", "/schema", NULL},	{"POST", "/query", SPEC},
	{"POST", "/plan", SPEC},	{"GET", "/metrics", NULL},
	{"GET", "/openapi.json", NULL},
};
#define NGUARDED (sizeof(guarded) / sizeof(guarded[0]))

/* Authorization headers that are not the token. */
static const char *const wrong[] = {
	NULL, /* none */
	"Authorization: Bearer wrong",
	"Authorization: Bearer " TOKEN "x",
	"Authorization: Bearer s3cret-T0ken_with.chars",
	"Authorization: Bearer S3CRET-T0KEN_WITH.CHARS~",
	"Authorization: Bearer",
	"Authorization: Bearer ",
	"Authorization: Bearer  " TOKEN,
	"Authorization: " TOKEN,
	"Authorization: Basic " TOKEN,
	"Authorization: Token " TOKEN,
	"Authorization: BearerX " TOKEN,
	"Authorization: Bearer ' OR '1'='1",
	"Authorization: Bearer " TOKEN "'; SELECT pg_sleep(10); --",
	"X-Auth-Token: " TOKEN,
};
#define NWRONG (sizeof(wrong) / sizeof(wrong[0]))

START_TEST(test_missing_or_wrong_token_is_401_json)
{
	struct pfd *p = start_with_token();

	for (size_t e = 0; e < NGUARDED; e++)
		for (size_t w = 0; w < NWRONG; w++) {
			const char *headers[] = {wrong[w], NULL};
			struct http_res res;

			http_do(pfd_port(p), guarded[e][0], guarded[e][1],
				guarded[e][2], wrong[w] ? headers : NULL, &res);
			if (res.status != 401)
				ck_abort_msg("%s %s with '%s': %d: %s",
					     guarded[e][0], guarded[e][1],
					     wrong[w] ? wrong[w] : "(none)",
					     res.status, res.body);
			ck_assert_http_error(&res, 401, "unauthorized");
			http_res_cleanup(&res);
		}
}
END_TEST

START_TEST(test_401_carries_www_authenticate)
{
	static const char req[] =
		"POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		"Authorization: Bearer nope\r\nContent-Length: 2\r\n\r\n{}";
	struct pfd *p = start_with_token();
	char *reply = NULL;

	ck_assert_int_gt(raw_request(pfd_port(p), req, sizeof(req) - 1, &reply),
			 0);
	ck_assert_msg(strncmp(reply, "HTTP/1.1 401", 12) == 0, "%.300s", reply);
	ck_assert_msg(strstr(reply, "\r\nWWW-Authenticate: Bearer\r\n"),
		      "%.500s", reply);
	ck_assert_msg(strstr(reply, "\"unauthorized\""), "%.500s", reply);
	free(reply);
}
END_TEST

START_TEST(test_right_token_is_200)
{
	static const char *const headers[] = {"Authorization: Bearer " TOKEN,
					      NULL};
	static const char *const lower[] = {"Authorization: bearer " TOKEN,
					    NULL};
	struct pfd *p = start_with_token();

	for (size_t e = 0; e < NGUARDED; e++) {
		struct http_res res;

		http_do(pfd_port(p), guarded[e][0], guarded[e][1],
			guarded[e][2], headers, &res);
		ck_assert_msg(res.status == 200, "%s %s: %d: %s", guarded[e][0],
			      guarded[e][1], res.status, res.body);
		http_res_cleanup(&res);
	}
	{
		struct http_res res;

		/* the scheme is case-insensitive (RFC 7235) */
		http_do(pfd_port(p), "POST", "/query", SPEC, lower, &res);
		ck_assert_msg(res.status == 200, "%d: %s", res.status,
			      res.body);
		ck_assert_uint_eq(
			json_array_size(json_object_get(res.json, "results")),
			1);
		http_res_cleanup(&res);
	}
}
END_TEST

START_TEST(test_health_checks_need_no_token)
{
	static const char *const bad[] = {"Authorization: Bearer wrong", NULL};
	static const char *const paths[] = {"/healthz", "/readyz"};
	struct pfd *p = start_with_token();

	for (size_t i = 0; i < 2; i++) {
		struct http_res res;

		http_do(pfd_port(p), "GET", paths[i], NULL, NULL, &res);
		ck_assert_msg(res.status == 200, "%s: %d", paths[i],
			      res.status);
		http_res_cleanup(&res);
		http_do(pfd_port(p), "GET", paths[i], NULL, bad, &res);
		ck_assert_msg(res.status == 200, "%s: %d", paths[i],
			      res.status);
		http_res_cleanup(&res);
	}
}
END_TEST

START_TEST(test_token_from_environment_and_flag_wins)
{
	static const char *const env_token[] = {"Authorization: Bearer fromenv",
						NULL};
	static const char *const flag_token[] = {"Authorization: Bearer " TOKEN,
						 NULL};
	struct pfd *p;
	struct http_res res;

	/* The daemon inherits the test process's environment. */
	setenv("PREFETCHD_AUTH_TOKEN", "fromenv", 1);
	p = pfd_start_ready(NULL);
	http_do(pfd_port(p), "POST", "/query", SPEC, NULL, &res);
	ck_assert_http_error(&res, 401, "unauthorized");
	http_res_cleanup(&res);
	http_do(pfd_port(p), "POST", "/query", SPEC, env_token, &res);
	ck_assert_int_eq(res.status, 200);
	http_res_cleanup(&res);
	pfd_stop(p);

	p = start_with_token();
	http_do(pfd_port(p), "POST", "/query", SPEC, env_token, &res);
	ck_assert_http_error(&res, 401, "unauthorized");
	http_res_cleanup(&res);
	http_do(pfd_port(p), "POST", "/query", SPEC, flag_token, &res);
	ck_assert_int_eq(res.status, 200);
	http_res_cleanup(&res);
	unsetenv("PREFETCHD_AUTH_TOKEN");
}
END_TEST

START_TEST(test_no_token_configured_asks_none)
{
	static const char *const any[] = {"Authorization: Bearer whatever",
					  NULL};
	struct pfd *p = pfd_start_ready(NULL);

	for (size_t e = 0; e < NGUARDED; e++) {
		struct http_res res;

		http_do(pfd_port(p), guarded[e][0], guarded[e][1],
			guarded[e][2], e % 2 ? any : NULL, &res);
		ck_assert_msg(res.status == 200, "%s %s: %d: %s", guarded[e][0],
			      guarded[e][1], res.status, res.body);
		http_res_cleanup(&res);
	}
}
END_TEST

START_TEST(test_unauthorized_requests_never_reach_the_database)
{
	static const char *const bad[] = {"Authorization: Bearer x' OR 1=1 --",
					  NULL};
	struct pfd *p = start_with_token();
	size_t big_len = 1536 * 1024;
	char *big = malloc(big_len + 1);
	struct http_res res;

	db_stats_reset();
	for (int i = 0; i < 20; i++) {
		http_do(pfd_port(p), "POST", "/query", SPEC, i % 2 ? bad : NULL,
			&res);
		ck_assert_http_error(&res, 401, "unauthorized");
		http_res_cleanup(&res);
	}
	/* refused before the body is looked at: a body over --max-body,
	 * or not JSON at all, is still a 401 */
	ck_assert_ptr_nonnull(big);
	memset(big, '[', big_len);
	big[big_len] = '\0';
	http_do(pfd_port(p), "POST", "/query", big, NULL, &res);
	ck_assert_http_error(&res, 401, "unauthorized");
	http_res_cleanup(&res);
	free(big);
	ck_assert_int_eq(db_data_statements_since_reset(), 0);
}
END_TEST

Suite *auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = pftest_tcase("auth");

	tcase_add_test(tc, test_missing_or_wrong_token_is_401_json);
	tcase_add_test(tc, test_401_carries_www_authenticate);
	tcase_add_test(tc, test_right_token_is_200);
	tcase_add_test(tc, test_health_checks_need_no_token);
	tcase_add_test(tc, test_token_from_environment_and_flag_wins);
	tcase_add_test(tc, test_no_token_configured_asks_none);
	tcase_add_test(tc, test_unauthorized_requests_never_reach_the_database);
	suite_add_tcase(s, tc);
	return s;
}
