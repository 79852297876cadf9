/*
 * The protocol's documents: GET /openapi.json serves proto/openapi.json as
 * compiled in, documents every endpoint the daemon answers and the
 * statuses it answers with, and says which endpoints need the token. The
 * JSON Schema validation of every example and answer is tests/validate.py
 * (python3-jsonschema), which tests/run.sh runs after this runner.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 10000
#define TOKEN "protocol-token"

static json_t *openapi_file(void)
{
	const char *root = getenv("PFTEST_ROOT");
	char path[1024];
	json_error_t jerr;
	json_t *doc;

	snprintf(path, sizeof(path), "%s/proto/openapi.json",
		 root ? root : ".");
	doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	ck_assert_msg(doc != NULL, "%s: %s (line %d)", path, jerr.text,
		      jerr.line);
	return doc;
}

static json_t *get_openapi(int port, const char *const *headers)
{
	struct http_res res;
	json_t *doc;

	ck_assert_int_eq(
		http_do(port, "GET", "/openapi.json", NULL, headers, &res), 0);
	ck_assert_msg(res.status == 200, "/openapi.json: %d %s", res.status,
		      res.body);
	ck_assert_msg(res.content_type &&
			      strstr(res.content_type, "application/json"),
		      "/openapi.json: Content-Type %s",
		      res.content_type ? res.content_type : "(none)");
	ck_assert_ptr_nonnull(res.json);
	doc = json_incref(res.json);
	http_res_cleanup(&res);
	return doc;
}

START_TEST(test_openapi_serves_the_proto_file)
{
	struct pfd *p = pfd_start(NULL);
	json_t *want = openapi_file();
	json_t *got;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	got = get_openapi(pfd_port(p), NULL);
	ck_assert_msg(json_equal(got, want),
		      "GET /openapi.json differs from proto/openapi.json: "
		      "rebuild prefetchd");
	ck_assert_str_eq(json_string_value(json_object_get(got, "openapi")),
			 "3.1.0");
	json_decref(got);
	json_decref(want);
}
END_TEST

/* The body that a documented operation is tried with. */
static const char *probe_body(const char *method)
{
	return strcmp(method, "post") == 0
		       ? "{\"model\":\"author\",\"limit\":1}"
		       : NULL;
}

/* Every documented operation is answered (not 404/405) with a status the
 * document lists for it; and every documented path answers an
 * undocumented method with 405, as a known path does. */
START_TEST(test_openapi_documents_what_is_answered)
{
	struct pfd *p = pfd_start(NULL);
	json_t *doc = openapi_file();
	json_t *paths = json_object_get(doc, "paths"), *ops;
	const char *path;
	int n = 0;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	json_object_foreach (paths, path, ops) {
		const char *method;
		json_t *op;
		struct http_res res;
		char upper[16], status[8];
		bool has_post = false;

		json_object_foreach (ops, method, op) {
			size_t i;

			for (i = 0; method[i] && i < sizeof(upper) - 1; i++)
				upper[i] = (char)(method[i] - 'a' + 'A');
			upper[i] = '\0';
			has_post |= strcmp(method, "post") == 0;
			ck_assert_int_eq(http_do(pfd_port(p), upper, path,
						 probe_body(method), NULL,
						 &res),
					 0);
			snprintf(status, sizeof(status), "%d", res.status);
			ck_assert_msg(res.status != 404 && res.status != 405,
				      "%s %s is documented but answers %d",
				      upper, path, res.status);
			ck_assert_msg(json_object_get(
					      json_object_get(op, "responses"),
					      status),
				      "%s %s answered %d, which openapi.json "
				      "does not list",
				      upper, path, res.status);
			http_res_cleanup(&res);
			n++;
		}
		ck_assert_int_eq(http_do(pfd_port(p), has_post ? "GET" : "POST",
					 path, has_post ? NULL : "{}", NULL,
					 &res),
				 0);
		ck_assert_msg(res.status == 405, "%s %s: %d, not 405",
			      has_post ? "GET" : "POST", path, res.status);
		http_res_cleanup(&res);
	}
	ck_assert_int_eq(n, 7);
	json_decref(doc);
}
END_TEST

/* The operations documented with "security": [{}] are exactly those that
 * answer without the token when one is configured; /openapi.json itself
 * needs it, like /schema. */
START_TEST(test_openapi_security_matches_auth)
{
	static const char *const args[] = {"--auth-token", TOKEN, NULL};
	static const char *const auth[] = {"Authorization: Bearer " TOKEN,
					   NULL};
	struct pfd *p = pfd_start(args);
	json_t *doc = openapi_file(), *ops, *served;
	const char *path;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	served = get_openapi(pfd_port(p), auth);
	ck_assert(json_equal(served, doc));
	json_decref(served);
	json_object_foreach (json_object_get(doc, "paths"), path, ops) {
		const char *method;
		json_t *op;

		json_object_foreach (ops, method, op) {
			json_t *sec = json_object_get(op, "security");
			bool public =
				json_is_array(sec) &&
				json_array_size(sec) == 1 &&
				json_object_size(json_array_get(sec, 0)) == 0;
			struct http_res res;

			ck_assert_int_eq(
				http_do(pfd_port(p),
					strcmp(method, "post") == 0 ? "POST"
								    : "GET",
					path, probe_body(method), NULL, &res),
				0);
			if (public)
				ck_assert_msg(res.status == 200,
					      "%s is documented public but "
					      "answers %d without the token",
					      path, res.status);
			else
				ck_assert_msg(res.status == 401,
					      "%s answers %d without the token",
					      path, res.status);
			http_res_cleanup(&res);
		}
	}
	json_decref(doc);
}
END_TEST

/* The document needs no database: it is served while /schema is 503. */
START_TEST(test_openapi_served_without_database)
{
	struct pfd *p;
	struct http_res res;
	json_t *doc;

	db_cluster_stop();
	p = pfd_start(NULL);
	doc = get_openapi(pfd_port(p), NULL);
	json_decref(doc);
	ck_assert_int_eq(
		http_do(pfd_port(p), "GET", "/schema", NULL, NULL, &res), 0);
	ck_assert_int_eq(res.status, 503);
	http_res_cleanup(&res);
	db_cluster_start();
}
END_TEST

Suite *protocol_suite(void)
{
	Suite *s = suite_create("protocol");
	TCase *tc = pftest_tcase("openapi");

	tcase_add_test(tc, test_openapi_serves_the_proto_file);
	tcase_add_test(tc, test_openapi_documents_what_is_answered);
	tcase_add_test(tc, test_openapi_security_matches_auth);
	tcase_add_test(tc, test_openapi_served_without_database);
	suite_add_tcase(s, tc);
	return s;
}
