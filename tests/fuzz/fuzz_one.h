/*
 * One fuzz input through the request path from JSON to planned SQL: spec_parse
 * -> resolve -> plan_build against a schema, with the invariants every input
 * must keep besides not crashing or leaking: each stage either succeeds or
 * fails with a client error (400 from the parser, 400/422 from resolve),
 * never with a 500; planned SQL holds no client text (no string literal
 * but the fixed ones of the date functions, 'UTC' and DATE_TRUNC's units
 * from resolve_fns: values are bind parameters), uses no parameter past the
 * query's
 * nparams, and never names a hidden model's table. Shared by the libFuzzer
 * target (fuzz_request.c) and the unit test that replays the regression
 * corpus (tests/unit/check_fuzz.c); abort() marks a broken invariant.
 */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "resolve.h"
#include "schema.h"
#include "spec.h"

/* Limits as the daemon's defaults. */
#define FUZZ_MAX_DEPTH 16
#define FUZZ_MAX_LOOKUPS 64

static void fuzz_fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz invariant broken: %s: %.500s\n", what,
		detail ? detail : "");
	abort();
}

static void fuzz_check_err(const struct pf_err *err, int lo, int hi)
{
	if (err->status < lo || err->status > hi || !err->code[0] ||
	    !err->message[0])
		fuzz_fail("an error outside the client range", err->message);
}

/* Whether the literal of len bytes at s is one prefetchd writes itself. */
static int fuzz_fixed_literal(const char *s, size_t len)
{
	if (len == 3 && strncmp(s, "UTC", 3) == 0)
		return 1;
	for (int i = 0; resolve_fns[i].name; i++)
		if (resolve_fns[i].cls == FC_TRUNC &&
		    strlen(resolve_fns[i].part) == len &&
		    strncmp(s, resolve_fns[i].part, len) == 0)
			return 1;
	return 0;
}

static void fuzz_check_sql(const struct plan_query *q, const char *hidden_table)
{
	const char *sql = q->sql;

	if (!sql || !sql[0])
		fuzz_fail("empty SQL", q->path);
	for (const char *p = strchr(sql, '\''); p; p = strchr(p + 1, '\'')) {
		const char *end = strchr(p + 1, '\'');

		if (!end || !fuzz_fixed_literal(p + 1, (size_t)(end - p - 1)))
			fuzz_fail("a string literal in planned SQL", sql);
		p = end;
	}
	if (hidden_table && strstr(sql, hidden_table))
		fuzz_fail("a hidden model in planned SQL", sql);
	for (const char *p = strchr(sql, '$'); p; p = strchr(p + 1, '$')) {
		long n = strtol(p + 1, NULL, 10);

		if (n < 1 || n > q->nparams)
			fuzz_fail("a parameter past nparams", sql);
	}
}

/* The daemon's cap for the default --max-rows: plans are fuzzed as sent. */
#define FUZZ_ROW_CAP 1000001

/* hidden_table: a quoted table name that must never appear, or NULL. */
static void fuzz_one(const struct schema *s, const char *hidden_table,
		     const uint8_t *data, size_t size)
{
	struct spec_limits limits = {FUZZ_MAX_DEPTH, FUZZ_MAX_LOOKUPS};
	struct pf_err err = {0};
	struct spec_queryset *spec;
	struct resolved *rq;
	struct plan *plan;

	spec = spec_parse((const char *)data, size, &limits, &err);
	if (!spec) {
		fuzz_check_err(&err, 400, 400);
		return;
	}
	rq = resolve(s, spec, &err);
	if (!rq) {
		fuzz_check_err(&err, 400, 422);
		spec_free(spec);
		return;
	}
	plan = plan_build(rq, FUZZ_ROW_CAP, &err);
	if (!plan)
		fuzz_fail("plan_build failed after resolve", err.message);
	for (size_t i = 0; i < plan->nqueries; i++)
		fuzz_check_sql(&plan->queries[i], hidden_table);
	plan_free(plan);
	resolved_free(rq);
	spec_free(spec);
}

/* The file's text (malloc'd, NUL-terminated), or NULL. */
static char *fuzz_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, f) == (size_t)n) {
		buf[n] = '\0';
		if (len)
			*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* The two schemas of the fuzz runs: the demo catalog as is, and with
 * tests/unit/fixtures/overlay_demo.json (renames, hidden columns and the
 * hidden model "comment"). Returns 0, or -1 with a message on stderr. */
static int fuzz_load_schemas(const char *fixtures, struct schema **plain,
			     struct schema **overlay)
{
	char path[1024];
	char *catalog, *ov;
	struct pf_err err = {0};

	snprintf(path, sizeof(path), "%s/catalog_demo.json", fixtures);
	catalog = fuzz_slurp(path, NULL);
	snprintf(path, sizeof(path), "%s/overlay_demo.json", fixtures);
	ov = fuzz_slurp(path, NULL);
	if (!catalog || !ov) {
		fprintf(stderr, "fuzz: cannot read the fixtures in %s\n",
			fixtures);
		free(catalog);
		free(ov);
		return -1;
	}
	*plain = schema_build(catalog, NULL, &err);
	*overlay = *plain ? schema_build(catalog, ov, &err) : NULL;
	free(catalog);
	free(ov);
	if (!*plain || !*overlay) {
		fprintf(stderr, "fuzz: fixture schema: %s\n", err.message);
		schema_unref(*plain);
		return -1;
	}
	return 0;
}

/* The hidden model of overlay_demo.json, as planned SQL would name it. */
#define FUZZ_HIDDEN_TABLE "\"public\".\"comment\""
