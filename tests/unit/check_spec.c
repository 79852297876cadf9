/*
 * Unit tests of spec: request JSON → struct spec_queryset. A table of bad
 * bodies with the status, code and "at" each must give, and tests that walk
 * the parsed tree of valid ones. No database, no schema.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec.h"
#include "suites.h"

static struct spec_queryset *parse(const char *body, struct pf_err *err)
{
	pf_err_clear(err);
	return spec_parse(body, strlen(body), NULL, err);
}

static struct spec_queryset *parse_ok(const char *body)
{
	struct pf_err err;
	struct spec_queryset *qs = parse(body, &err);

	ck_assert_msg(qs != NULL, "%s: %d %s at '%s': %s", body, err.status,
		      err.code, err.at, err.message);
	return qs;
}

static void assert_term(const struct spec_cond *c, const char *lookup,
			const char *at)
{
	ck_assert_int_eq(c->kind, SPEC_TERM);
	ck_assert_str_eq(c->lookup, lookup);
	ck_assert_str_eq(c->at, at);
	ck_assert_uint_eq(c->nchildren, 0);
}

/* ---- errors: one row per bad body ---- */

struct bad_case {
	const char *body;
	int status;
	const char *code;
	const char *at;
	const char *message; /* a substring of the message, or NULL */
};

static const struct bad_case bad_cases[] = {
	/* not JSON, or not an object */
	{"", 400, "bad_json", "", "the body is empty"},
	{"not json", 400, "bad_json", "", "not valid JSON"},
	{"{\"model\":\"book\"", 400, "bad_json", "", NULL},
	{"{\"model\":\"book\"} x", 400, "bad_json", "", NULL},
	{"[{\"model\":\"book\"}]", 400, "bad_json", "",
	 "must be a JSON object"},
	{"\"book\"", 400, "bad_json", "", "must be a JSON object"},
	{"null", 400, "bad_json", "", "must be a JSON object"},
	{"{\"model\":\"a\",\"model\":\"b\"}", 400, "bad_json", "",
	 "duplicate object key"},
	{"{\"model\":\"b\",\"filter\":{\"id\":12345678901234567890}}", 400,
	 "bad_json", "", "integers must fit in 64 bits"},
	{"{\"model\":\"b\",\"filter\":{\"id\":-9223372036854775809}}", 400,
	 "bad_json", "", "out of range"},
	{"{\"model\":\"b\",\"filter\":{\"x\":1e400}}", 400, "bad_json", "",
	 "out of range"},
	{"{\"a\\u0000b\":1}", 400, "bad_json", "", NULL},

	/* model */
	{"{}", 400, "bad_spec", "model", "\"model\" is required"},
	{"{\"only\":[\"id\"]}", 400, "bad_spec", "model", "is required"},
	{"{\"model\":1}", 400, "bad_spec", "model", "a model name"},
	{"{\"model\":null}", 400, "bad_spec", "model", "got null"},
	{"{\"model\":\"\"}", 400, "bad_spec", "model", "empty string"},
	{"{\"model\":\"bo\\u0000ok\"}", 400, "bad_spec", "model", "NUL"},

	/* unknown keys; the first problem in key order wins */
	{"{\"model\":\"book\",\"fliter\":{}}", 400, "bad_spec", "fliter",
	 "unknown key \"fliter\" in queryset"},
	{"{\"fliter\":{}}", 400, "bad_spec", "fliter", "unknown key"},
	{"{\"model\":\"b\",\"limit\":-1,\"fliter\":{}}", 400, "bad_spec",
	 "limit", NULL},
	{"{\"model\":\"b\",\"fliter\":{},\"limit\":-1}", 400, "bad_spec",
	 "fliter", NULL},
	{"{\"model\":\"b\",\"Model\":\"b\"}", 400, "bad_spec", "Model", NULL},

	/* only / defer / select_related */
	{"{\"model\":\"b\",\"only\":\"title\"}", 400, "bad_spec", "only",
	 "\"only\" must be an array of field names, not a string"},
	{"{\"model\":\"b\",\"only\":[\"id\",\"\"]}", 400, "bad_spec", "only[1]",
	 "empty string"},
	{"{\"model\":\"b\",\"only\":[\"id\",\"title\",3]}", 400, "bad_spec",
	 "only[2]", "expected a field name"},
	{"{\"model\":\"b\",\"defer\":[null]}", 400, "bad_spec", "defer[0]",
	 NULL},
	{"{\"model\":\"b\",\"defer\":{}}", 400, "bad_spec", "defer", NULL},
	{"{\"model\":\"b\",\"select_related\":{}}", 400, "bad_spec",
	 "select_related", "array of relation paths"},
	{"{\"model\":\"b\",\"select_related\":[\"author\",\"\"]}", 400,
	 "bad_spec", "select_related[1]", NULL},
	{"{\"model\":\"b\",\"select_related\":[\"a\\u0000\"]}", 400, "bad_spec",
	 "select_related[0]", "NUL"},

	/* order_by */
	{"{\"model\":\"b\",\"order_by\":\"title\"}", 400, "bad_spec",
	 "order_by", "must be an array"},
	{"{\"model\":\"b\",\"order_by\":[1]}", 400, "bad_spec", "order_by[0]",
	 "got an integer"},
	{"{\"model\":\"b\",\"order_by\":[\"-\"]}", 400, "bad_spec",
	 "order_by[0]", "empty string"},
	{"{\"model\":\"b\",\"order_by\":[\"id\",\"\"]}", 400, "bad_spec",
	 "order_by[1]", NULL},

	/* distinct, offset, limit */
	{"{\"model\":\"b\",\"distinct\":1}", 400, "bad_spec", "distinct",
	 "\"distinct\" must be true or false"},
	{"{\"model\":\"b\",\"distinct\":\"yes\"}", 400, "bad_spec", "distinct",
	 NULL},
	{"{\"model\":\"b\",\"limit\":-1}", 400, "bad_spec", "limit",
	 "Negative indexing is not supported."},
	{"{\"model\":\"b\",\"offset\":-5}", 400, "bad_spec", "offset",
	 "Negative indexing is not supported."},
	{"{\"model\":\"b\",\"limit\":\"5\"}", 400, "bad_spec", "limit",
	 "\"limit\" must be an integer >= 0, not a string"},
	{"{\"model\":\"b\",\"limit\":2.0}", 400, "bad_spec", "limit",
	 "not a real number"},
	{"{\"model\":\"b\",\"limit\":null}", 400, "bad_spec", "limit", NULL},
	{"{\"model\":\"b\",\"offset\":true}", 400, "bad_spec", "offset",
	 "\"offset\" must be an integer >= 0"},

	/* conditions */
	{"{\"model\":\"b\",\"filter\":[]}", 400, "bad_spec", "filter",
	 "expected a condition"},
	{"{\"model\":\"b\",\"filter\":\"x\"}", 400, "bad_spec", "filter", NULL},
	{"{\"model\":\"b\",\"exclude\":1}", 400, "bad_spec", "exclude", NULL},
	{"{\"model\":\"b\",\"filter\":{\"$xor\":[]}}", 400, "bad_spec",
	 "filter.$xor", "unknown key \"$xor\" in condition"},
	{"{\"model\":\"b\",\"filter\":{\"$or\":[]}}", 400, "bad_spec",
	 "filter.$or", "at least one"},
	{"{\"model\":\"b\",\"filter\":{\"$or\":{}}}", 400, "bad_spec",
	 "filter.$or", "array of condition objects"},
	{"{\"model\":\"b\",\"filter\":{\"$or\":[{\"a\":1},2]}}", 400,
	 "bad_spec", "filter.$or[1]", NULL},
	{"{\"model\":\"b\",\"filter\":{\"$and\":\"x\"}}", 400, "bad_spec",
	 "filter.$and", NULL},
	{"{\"model\":\"b\",\"filter\":{\"$not\":[]}}", 400, "bad_spec",
	 "filter.$not", "expected a condition"},
	{"{\"model\":\"b\",\"exclude\":{\"$not\":{\"$foo\":1}}}", 400,
	 "bad_spec", "exclude.$not.$foo", NULL},
	{"{\"model\":\"b\",\"filter\":{\"\":1}}", 400, "bad_spec", "filter.",
	 "empty string"},
	{"{\"model\":\"b\",\"filter\":{\"title\":\"a\\u0000b\"}}", 400,
	 "bad_spec", "filter.title", "NUL"},
	{"{\"model\":\"b\",\"filter\":{\"title__in\":[\"x\",\"a\\u0000\"]}}",
	 400, "bad_spec", "filter.title__in[1]", "NUL"},

	/* in / range / isnull */
	{"{\"model\":\"b\",\"filter\":{\"id__in\":5}}", 400, "bad_spec",
	 "filter.id__in", "'in' needs an array"},
	{"{\"model\":\"b\",\"filter\":{\"id__in\":{\"a\":1}}}", 400, "bad_spec",
	 "filter.id__in", "'in' needs an array"},
	{"{\"model\":\"b\",\"filter\":{\"$or\":[{\"a\":1},{\"id__in\":\"1\"}]}"
	 "}",
	 400, "bad_spec", "filter.$or[1].id__in", "'in' needs an array"},
	{"{\"model\":\"b\",\"filter\":{\"n__range\":[1]}}", 400, "bad_spec",
	 "filter.n__range", "'range' needs [low, high]"},
	{"{\"model\":\"b\",\"filter\":{\"n__range\":[1,2,3]}}", 400, "bad_spec",
	 "filter.n__range", "'range' needs [low, high]"},
	{"{\"model\":\"b\",\"filter\":{\"n__range\":5}}", 400, "bad_spec",
	 "filter.n__range", "'range' needs [low, high]"},
	{"{\"model\":\"b\",\"filter\":{\"n__range\":[[1],2]}}", 400, "bad_spec",
	 "filter.n__range", "'range' needs [low, high]"},
	{"{\"model\":\"b\",\"filter\":{\"n__range\":[1,{}]}}", 400, "bad_spec",
	 "filter.n__range", "'range' needs [low, high]"},
	{"{\"model\":\"b\",\"filter\":{\"author__isnull\":1}}", 400, "bad_spec",
	 "filter.author__isnull", "'isnull' needs true or false"},
	{"{\"model\":\"b\",\"filter\":{\"author__isnull\":\"true\"}}", 400,
	 "bad_spec", "filter.author__isnull", NULL},
	{"{\"model\":\"b\",\"exclude\":{\"author__isnull\":null}}", 400,
	 "bad_spec", "exclude.author__isnull", NULL},

	/* prefetch_related */
	{"{\"model\":\"b\",\"prefetch_related\":\"x\"}", 400, "bad_spec",
	 "prefetch_related", "must be an array of lookups"},
	{"{\"model\":\"b\",\"prefetch_related\":[\"a\",\"\"]}", 400, "bad_spec",
	 "prefetch_related[1]", "empty string"},
	{"{\"model\":\"b\",\"prefetch_related\":[\"a\",1]}", 400, "bad_spec",
	 "prefetch_related[1]", "or a Prefetch object"},
	{"{\"model\":\"b\",\"prefetch_related\":[null]}", 400, "bad_spec",
	 "prefetch_related[0]", NULL},
	{"{\"model\":\"b\",\"prefetch_related\":[{\"queryset\":{}}]}", 400,
	 "bad_spec", "prefetch_related[0]", "needs \"lookup\""},
	{"{\"model\":\"b\",\"prefetch_related\":[{\"lookup\":1}]}", 400,
	 "bad_spec", "prefetch_related[0].lookup", NULL},
	{"{\"model\":\"b\",\"prefetch_related\":[{\"lookup\":\"\"}]}", 400,
	 "bad_spec", "prefetch_related[0].lookup", NULL},
	{"{\"model\":\"b\",\"prefetch_related\":"
	 "[{\"lookup\":\"a\",\"to_attr\":\"\"}]}",
	 400, "bad_spec", "prefetch_related[0].to_attr", NULL},
	{"{\"model\":\"b\",\"prefetch_related\":"
	 "[{\"lookup\":\"a\",\"to_attr\":null}]}",
	 400, "bad_spec", "prefetch_related[0].to_attr", NULL},
	{"{\"model\":\"b\",\"prefetch_related\":"
	 "[{\"lookup\":\"a\",\"queryset\":[]}]}",
	 400, "bad_spec", "prefetch_related[0].queryset",
	 "must be a queryset object"},
	{"{\"model\":\"b\",\"prefetch_related\":"
	 "[{\"lookup\":\"a\",\"extra\":1}]}",
	 400, "bad_spec", "prefetch_related[0].extra",
	 "unknown key \"extra\" in Prefetch"},
	{"{\"model\":\"b\",\"prefetch_related\":"
	 "[\"x\",{\"lookup\":\"a\",\"queryset\":{\"foo\":1}}]}",
	 400, "bad_spec", "prefetch_related[1].queryset.foo",
	 "unknown key \"foo\" in queryset"},
	{"{\"model\":\"b\",\"prefetch_related\":[\"x\",\"y\",{\"lookup\":\"a\","
	 "\"queryset\":{\"filter\":{\"$or\":[{\"title\":\"\\u0000\"}]}}}]}",
	 400, "bad_spec", "prefetch_related[2].queryset.filter.$or[0].title",
	 NULL},
	{"{\"model\":\"b\",\"prefetch_related\":"
	 "[{\"lookup\":\"a\",\"queryset\":{\"limit\":-2}}]}",
	 400, "bad_spec", "prefetch_related[0].queryset.limit",
	 "Negative indexing"},
	{"{\"model\":\"b\",\"prefetch_related\":"
	 "[{\"lookup\":\"a\",\"queryset\":{\"model\":5}}]}",
	 400, "bad_spec", "prefetch_related[0].queryset.model", NULL},
	{"{\"model\":\"a\",\"prefetch_related\":[{\"lookup\":\"b\","
	 "\"queryset\":{\"prefetch_related\":[{\"lookup\":\"c\","
	 "\"queryset\":{\"order_by\":[\"-\"]}}]}}]}",
	 400, "bad_spec",
	 "prefetch_related[0].queryset.prefetch_related[0].queryset."
	 "order_by[0]",
	 NULL},
	/* queryset keys of DESIGN.md §6 */
	{"{\"model\":\"b\",\"annotation\":{}}", 400, "bad_spec", "annotation",
	 "annotate, aggregate, values, values_list"},
	{"{\"model\":\"b\",\"annotate\":[]}", 400, "bad_spec", "annotate",
	 "\"annotate\" must be an object"},
	{"{\"model\":\"b\",\"annotate\":{\"\":\"x\"}}", 400, "bad_spec",
	 "annotate.", "an annotation name, got an empty string"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":\"\"}}", 400, "bad_spec",
	 "annotate.n", "a field path"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":[1]}}", 400, "bad_spec",
	 "annotate.n", "got an array"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"a\":1}}}", 400, "bad_spec",
	 "annotate.n", "expected an expression"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{}}}", 400, "bad_spec",
	 "annotate.n", "expected an expression"},
	{"{\"model\":\"b\",\"aggregate\":\"x\"}", 400, "bad_spec", "aggregate",
	 "\"aggregate\" must be an object"},
	{"{\"model\":\"b\",\"aggregate\":{\"t\":{\"$sum\":[[1]]}}}", 400,
	 "bad_spec", "aggregate.t.$sum[0]", "got an array"},
	{"{\"model\":\"b\",\"prefetch_related\":[{\"lookup\":\"a\","
	 "\"queryset\":{\"aggregate\":{\"n\":{\"$count\":\"id\"}}}}]}",
	 400, "bad_spec", "prefetch_related[0].queryset.aggregate",
	 "top-level queryset only, not in a Prefetch queryset"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$subquery\":{\"model\":\"a\","
	 "\"aggregate\":{\"m\":{\"$max\":\"x\"}}}}}}",
	 400, "bad_spec", "annotate.n.$subquery.aggregate",
	 "not in a subquery"},
	{"{\"model\":\"b\",\"filter\":{\"$exists\":{\"model\":\"a\","
	 "\"aggregate\":{}}}}",
	 400, "bad_spec", "filter.$exists.aggregate", "top-level"},
	{"{\"model\":\"b\",\"values\":\"x\"}", 400, "bad_spec", "values",
	 "\"values\" must be an array"},
	{"{\"model\":\"b\",\"values\":[\"a\",1]}", 400, "bad_spec", "values[1]",
	 NULL},
	{"{\"model\":\"b\",\"values\":[\"\"]}", 400, "bad_spec", "values[0]",
	 "empty string"},
	{"{\"model\":\"b\",\"values\":[\"a\"],\"only\":[\"a\"]}", 400,
	 "bad_spec", "values", "cannot be combined with \"only\""},
	{"{\"model\":\"b\",\"defer\":[],\"values_list\":{\"fields\":[]}}", 400,
	 "bad_spec", "values_list", "cannot be combined with \"defer\""},
	{"{\"model\":\"b\",\"values\":[\"a\"],\"values_list\":{\"fields\":[]}}",
	 400, "bad_spec", "values_list", "cannot both be given"},
	{"{\"model\":\"b\",\"values_list\":{\"fields\":[]},\"values\":[]}", 400,
	 "bad_spec", "values", "cannot both be given"},
	{"{\"model\":\"b\",\"values_list\":[\"a\"]}", 400, "bad_spec",
	 "values_list", "must be an object"},
	{"{\"model\":\"b\",\"values_list\":{\"flat\":false}}", 400, "bad_spec",
	 "values_list.fields", "needs \"fields\""},
	{"{\"model\":\"b\",\"values_list\":{\"fields\":[\"a\"],\"named\":true}"
	 "}",
	 400, "bad_spec", "values_list.named",
	 "unknown key \"named\" in values_list"},
	{"{\"model\":\"b\",\"values_list\":{\"fields\":\"a\"}}", 400,
	 "bad_spec", "values_list.fields", "\"fields\" must be an array"},
	{"{\"model\":\"b\",\"values_list\":{\"fields\":[\"a\",null]}}", 400,
	 "bad_spec", "values_list.fields[1]", NULL},
	{"{\"model\":\"b\",\"values_list\":{\"fields\":[\"a\"],\"flat\":1}}",
	 400, "bad_spec", "values_list.flat", "must be true or false"},
	{"{\"model\":\"b\",\"values_list\":{\"fields\":[\"a\",\"b\"],"
	 "\"flat\":true}}",
	 400, "bad_spec", "values_list.flat",
	 "'flat' is not valid when values_list is called with more than one "
	 "field."},
	{"{\"model\":\"b\",\"values_list\":{\"flat\":true,\"fields\":[]}}", 400,
	 "bad_spec", "values_list.flat", "'flat' needs exactly one entry"},

	/* expressions: the operator key */
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$count\":\"x\","
	 "\"$sum\":\"y\"}}}",
	 400, "bad_spec", "annotate.n",
	 "two operators, \"$count\" and \"$sum\""},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$Count\":\"x\"}}}", 400,
	 "bad_spec", "annotate.n.$Count", "is not an operator"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$\":\"x\"}}}", 400,
	 "bad_spec", "annotate.n.$", "is not an operator"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$x-y\":\"x\"}}}", 400,
	 "bad_spec", "annotate.n.$x-y", "is not an operator"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$f\":1}}}", 400, "bad_spec",
	 "annotate.n.$f", "a field path"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$f\":\"\"}}}", 400,
	 "bad_spec", "annotate.n.$f", "empty string"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$f\":\"a\",\"to\":1}}}", 400,
	 "bad_spec", "annotate.n.to", "which takes no options"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$value\":\"\\u0000\"}}}", 400,
	 "bad_spec", "annotate.n.$value", "NUL"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$value\":[\"\\u0000\"]}}}",
	 400, "bad_spec", "annotate.n.$value[0]", "NUL"},

	/* expressions: operands and options of a call */
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$coalesce\":[\"a\",[1]]}}}",
	 400, "bad_spec", "annotate.n.$coalesce[1]", "got an array"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$coalesce\":[\"a\","
	 "{\"b\":1}]}}}",
	 400, "bad_spec", "annotate.n.$coalesce[1]", "expected an expression"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$lower\":\"\"}}}", 400,
	 "bad_spec", "annotate.n.$lower", "a field path"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$add\":[\"a\\u0000\",1]}}}",
	 400, "bad_spec", "annotate.n.$add[0]", "NUL"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$add\":[{\"$f\":\"\"},1]}}}",
	 400, "bad_spec", "annotate.n.$add[0].$f", "empty string"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$count\":\"x\","
	 "\"distinct\":1}}}",
	 400, "bad_spec", "annotate.n.distinct", "must be true or false"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$variance\":\"x\","
	 "\"sample\":\"yes\"}}}",
	 400, "bad_spec", "annotate.n.sample", "not a string"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$count\":\"x\","
	 "\"filter\":[]}}}",
	 400, "bad_spec", "annotate.n.filter", "expected a condition"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$count\":\"x\","
	 "\"filter\":{\"pages__gt\":{\"$f\":\"\"}}}}}",
	 400, "bad_spec", "annotate.n.filter.pages__gt.$f", "empty string"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$sum\":\"x\","
	 "\"default\":[0]}}}",
	 400, "bad_spec", "annotate.n.default", "got an array"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$count\":\"x\","
	 "\"distinct\":true,\"over\":1}}}",
	 400, "bad_spec", "annotate.n.over",
	 "unknown key \"over\" in a \"$count\" expression; expected "
	 "\"distinct\", \"sample\", \"filter\" or \"default\""},

	/* expressions: $outer, $case, $cast, $exists, $subquery */
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$outer\":1}}}", 400,
	 "bad_spec", "annotate.n.$outer", "a field path"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$outer\":{\"$f\":\"x\"}}}}",
	 400, "bad_spec", "annotate.n.$outer", "takes a field path"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$outer\":{\"$outer\":\"\"}}}"
	 "}",
	 400, "bad_spec", "annotate.n.$outer.$outer", "empty string"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$outer\":{\"$outer\":"
	 "{\"$outer\":\"x\"}}}}}",
	 400, "bad_spec", "annotate.n.$outer.$outer", "at most two"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[]}}}", 400,
	 "bad_spec", "annotate.n.$case", "not an empty array"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":{}}}}", 400,
	 "bad_spec", "annotate.n.$case", "non-empty array"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[1]}}}", 400,
	 "bad_spec", "annotate.n.$case[0]", "got an integer"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[{\"when\":{\"a\":1}}"
	 "]}}}",
	 400, "bad_spec", "annotate.n.$case[0].then", "needs \"then\""},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[{\"when\":{\"a\":1},"
	 "\"then\":1},{\"then\":2}]}}}",
	 400, "bad_spec", "annotate.n.$case[1].when", "needs \"when\""},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[{\"when\":{\"a\":1},"
	 "\"then\":1,\"else\":2}]}}}",
	 400, "bad_spec", "annotate.n.$case[0].else",
	 "unknown key \"else\" in a \"$case\" entry"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[{\"when\":{},"
	 "\"then\":1}]}}}",
	 400, "bad_spec", "annotate.n.$case[0].when", "An empty Q()"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[{\"when\":"
	 "{\"a__in\":1},\"then\":1}]}}}",
	 400, "bad_spec", "annotate.n.$case[0].when.a__in", "'in' needs"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[{\"when\":{\"a\":1},"
	 "\"then\":[1]}]}}}",
	 400, "bad_spec", "annotate.n.$case[0].then", "got an array"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[{\"when\":{\"a\":1},"
	 "\"then\":1}],\"default\":{\"x\":1}}}}",
	 400, "bad_spec", "annotate.n.default", "expected an expression"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$case\":[{\"when\":{\"a\":1},"
	 "\"then\":1}],\"distinct\":true}}}",
	 400, "bad_spec", "annotate.n.distinct", "expected \"default\""},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$cast\":\"x\"}}}", 400,
	 "bad_spec", "annotate.n.to", "\"$cast\" needs \"to\""},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$cast\":\"x\",\"to\":1}}}",
	 400, "bad_spec", "annotate.n.to", "a type name"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$cast\":[\"x\"],"
	 "\"to\":\"integer\"}}}",
	 400, "bad_spec", "annotate.n.$cast", "got an array"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$cast\":\"x\","
	 "\"to\":\"integer\",\"default\":0}}}",
	 400, "bad_spec", "annotate.n.default", "expected \"to\""},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$exists\":\"book\"}}}", 400,
	 "bad_spec", "annotate.n.$exists", "must be a queryset object"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$exists\":{}}}}", 400,
	 "bad_spec", "annotate.n.$exists.model", "\"model\" is required"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$subquery\":{\"model\":\"a\","
	 "\"limit\":-1}}}}",
	 400, "bad_spec", "annotate.n.$subquery.limit", "Negative indexing"},
	{"{\"model\":\"b\",\"annotate\":{\"n\":{\"$exists\":{\"model\":\"a\"},"
	 "\"distinct\":true}}}",
	 400, "bad_spec", "annotate.n.distinct", "which takes no options"},
	{"{\"model\":\"b\",\"prefetch_related\":[{\"lookup\":\"a\","
	 "\"queryset\":{\"annotate\":{\"n\":{\"$sum\":\"x\","
	 "\"filter\":{\"$or\":[]}}}}}]}",
	 400, "bad_spec", "prefetch_related[0].queryset.annotate.n.filter.$or",
	 "at least one"},

	/* expressions in conditions, and $exists as a term */
	{"{\"model\":\"b\",\"filter\":{\"id__in\":{\"$f\":\"x\"}}}", 400,
	 "bad_spec", "filter.id__in",
	 "'in' needs an array of values, not an "
	 "expression"},
	{"{\"model\":\"b\",\"filter\":{\"n__range\":{\"$f\":\"x\"}}}", 400,
	 "bad_spec", "filter.n__range", "'range' needs [low, high]"},
	{"{\"model\":\"b\",\"filter\":{\"a__isnull\":{\"$f\":\"x\"}}}", 400,
	 "bad_spec", "filter.a__isnull", "not an expression"},
	{"{\"model\":\"b\",\"filter\":{\"a__in\":{\"$value\":1}}}", 400,
	 "bad_spec", "filter.a__in", "not an integer"},
	{"{\"model\":\"b\",\"filter\":{\"a\":{\"$f\":\"x\",\"$g\":1}}}", 400,
	 "bad_spec", "filter.a", "two operators"},
	{"{\"model\":\"b\",\"filter\":{\"a\":{\"$value\":1,\"$f\":\"x\"}}}",
	 400, "bad_spec", "filter.a", "two operators"},
	{"{\"model\":\"b\",\"filter\":{\"a\":{\"color\":1,\"$f\":\"x\"}}}", 400,
	 "bad_spec", "filter.a.color", "which takes no options"},
	{"{\"model\":\"b\",\"filter\":{\"a\":{\"$value\":1,\"b\":2}}}", 400,
	 "bad_spec", "filter.a.b", "which takes no options"},
	{"{\"model\":\"b\",\"filter\":{\"a\":{\"$value\":\"\\u0000\"}}}", 400,
	 "bad_spec", "filter.a.$value", "NUL"},
	{"{\"model\":\"b\",\"filter\":{\"a\":{\"$value\":[1,\"\\u0000\"]}}}",
	 400, "bad_spec", "filter.a.$value[1]", "NUL"},
	{"{\"model\":\"b\",\"filter\":{\"price__lt\":{\"$mul\":[{\"$f\":"
	 "\"pages\"},{\"$x y\":1}]}}}",
	 400, "bad_spec", "filter.price__lt.$mul[1].$x y", "not an operator"},
	{"{\"model\":\"b\",\"filter\":{\"$exists\":1}}", 400, "bad_spec",
	 "filter.$exists", "\"$exists\" must be a queryset object"},
	{"{\"model\":\"b\",\"filter\":{\"$exists\":{\"filter\":{}}}}", 400,
	 "bad_spec", "filter.$exists.model", "$exists and $subquery"},
	{"{\"model\":\"b\",\"filter\":{\"$subquery\":{\"model\":\"a\"}}}", 400,
	 "bad_spec", "filter.$subquery", "\"$not\", \"$exists\""},
	{"{\"model\":\"b\",\"filter\":{\"a\":1,\"$and\":[{\"$not\":"
	 "{\"$exists\":{\"model\":\"a\",\"filter\":{\"x\":{\"$outer\":\"\"}}}}"
	 "}]}}",
	 400, "bad_spec", "filter.$and[0].$not.$exists.filter.x.$outer",
	 "empty string"},
	{"{\"model\":\"b\",\"exclude\":{\"$or\":[{\"$exists\":{\"model\":\"a\","
	 "\"fliter\":{}}}]}}",
	 400, "bad_spec", "exclude.$or[0].$exists.fliter", "unknown key"},
};

START_TEST(test_bad_body_gives_status_code_and_at_path)
{
	const struct bad_case *bc = &bad_cases[_i];
	struct pf_err err;
	struct spec_queryset *qs = parse(bc->body, &err);

	ck_assert_msg(qs == NULL, "accepted: %s", bc->body);
	ck_assert_msg(err.status == bc->status &&
			      strcmp(err.code, bc->code) == 0 &&
			      strcmp(err.at, bc->at) == 0,
		      "%s: want %d %s at '%s', got %d %s at '%s': %s", bc->body,
		      bc->status, bc->code, bc->at, err.status, err.code,
		      err.at, err.message);
	ck_assert_msg(err.message[0] != '\0', "%s: empty message", bc->body);
	if (bc->message)
		ck_assert_msg(strstr(err.message, bc->message) != NULL,
			      "%s: message '%s' lacks '%s'", bc->body,
			      err.message, bc->message);
}
END_TEST

/* ---- valid bodies: the parsed tree ---- */

START_TEST(test_minimal_queryset_has_defaults)
{
	struct spec_queryset *qs = parse_ok("{\"model\":\"book\"}");

	ck_assert_str_eq(qs->model, "book");
	ck_assert_str_eq(qs->at, "");
	ck_assert(!qs->has_only && qs->nonly == 0 && qs->only == NULL);
	ck_assert(qs->ndefer == 0 && qs->defer == NULL);
	ck_assert(qs->filter == NULL && qs->exclude == NULL);
	ck_assert(!qs->has_order_by && qs->norder_by == 0);
	ck_assert(!qs->distinct);
	ck_assert_int_eq(qs->offset, 0);
	ck_assert(!qs->has_limit);
	ck_assert_uint_eq(qs->nselect_related, 0);
	ck_assert_uint_eq(qs->nprefetch_related, 0);
	spec_free(qs);
}
END_TEST

START_TEST(test_single_key_filter_is_the_term_itself)
{
	struct spec_queryset *qs = parse_ok("{\"model\":\"book\",\"filter\":{"
					    "\"title__icontains\":\"war\"}}");

	assert_term(qs->filter, "title__icontains", "filter.title__icontains");
	ck_assert_int_eq(qs->filter->value.kind, SPEC_STRING);
	ck_assert_str_eq(qs->filter->value.text, "war");
	spec_free(qs);
}
END_TEST

START_TEST(test_several_keys_are_an_and_in_key_order)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"filter\":{\"zeta\":1,\"alpha\":2,"
			 "\"mid__gt\":3,\"beta\":4}}");
	const struct spec_cond *f = qs->filter;

	ck_assert_int_eq(f->kind, SPEC_AND);
	ck_assert_str_eq(f->at, "filter");
	ck_assert_uint_eq(f->nchildren, 4);
	assert_term(&f->children[0], "zeta", "filter.zeta");
	assert_term(&f->children[1], "alpha", "filter.alpha");
	assert_term(&f->children[2], "mid__gt", "filter.mid__gt");
	assert_term(&f->children[3], "beta", "filter.beta");
	ck_assert_str_eq(f->children[2].value.text, "3");
	spec_free(qs);
}
END_TEST

START_TEST(test_many_keys_keep_key_order)
{
	char body[8192];
	size_t n = 0;
	struct spec_queryset *qs;
	char want[32];

	/* Enough keys to grow jansson's hash table several times. */
	n += snprintf(body + n, sizeof(body) - n,
		      "{\"model\":\"b\",\"filter\":{");
	for (int i = 0; i < 300; i++)
		n += snprintf(body + n, sizeof(body) - n, "%s\"k%d\":%d",
			      i ? "," : "", (i * 7919) % 1000, i);
	snprintf(body + n, sizeof(body) - n, "}}");
	qs = parse_ok(body);
	ck_assert_uint_eq(qs->filter->nchildren, 300);
	for (int i = 0; i < 300; i++) {
		snprintf(want, sizeof(want), "k%d", (i * 7919) % 1000);
		ck_assert_str_eq(qs->filter->children[i].lookup, want);
	}
	spec_free(qs);
}
END_TEST

START_TEST(test_empty_filter_is_an_empty_and)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"filter\":{},\"exclude\":"
			 "{\"$and\":[]}}");

	ck_assert_int_eq(qs->filter->kind, SPEC_AND);
	ck_assert_uint_eq(qs->filter->nchildren, 0);
	ck_assert_str_eq(qs->filter->at, "filter");
	ck_assert_int_eq(qs->exclude->kind, SPEC_AND);
	ck_assert_uint_eq(qs->exclude->nchildren, 0);
	ck_assert_str_eq(qs->exclude->at, "exclude.$and");
	spec_free(qs);
}
END_TEST

START_TEST(test_or_and_not_build_a_tree_with_at_paths)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"b\",\"filter\":{"
		"\"$or\":[{\"title__icontains\":\"x\"},{\"a\":1,\"b\":2}],"
		"\"$not\":{\"c__isnull\":true},"
		"\"$and\":[{\"d\":1},{\"$not\":{\"e\":2}}]}}");
	const struct spec_cond *f = qs->filter, * or, *not, *and;

	ck_assert_int_eq(f->kind, SPEC_AND);
	ck_assert_uint_eq(f->nchildren, 3);

	or = &f->children[0];
	ck_assert_int_eq(or->kind, SPEC_OR);
	ck_assert_str_eq(or->at, "filter.$or");
	ck_assert_uint_eq(or->nchildren, 2);
	assert_term(& or->children[0], "title__icontains",
		    "filter.$or[0].title__icontains");
	ck_assert_int_eq(or->children[1].kind, SPEC_AND);
	ck_assert_str_eq(or->children[1].at, "filter.$or[1]");
	assert_term(& or->children[1].children[0], "a", "filter.$or[1].a");
	assert_term(& or->children[1].children[1], "b", "filter.$or[1].b");

	not = &f->children[1];
	ck_assert_int_eq(not ->kind, SPEC_NOT);
	ck_assert_str_eq(not ->at, "filter.$not");
	ck_assert_uint_eq(not ->nchildren, 1);
	assert_term(&not ->children[0], "c__isnull", "filter.$not.c__isnull");
	ck_assert_int_eq(not ->children[0].value.kind, SPEC_BOOL);
	ck_assert_str_eq(not ->children[0].value.text, "true");

	and = &f->children[2];
	ck_assert_int_eq(and->kind, SPEC_AND);
	ck_assert_str_eq(and->at, "filter.$and");
	ck_assert_uint_eq(and->nchildren, 2);
	assert_term(&and->children[0], "d", "filter.$and[0].d");
	ck_assert_int_eq(and->children[1].kind, SPEC_NOT);
	assert_term(&and->children[1].children[0], "e",
		    "filter.$and[1].$not.e");
	spec_free(qs);
}
END_TEST

START_TEST(test_single_or_is_the_filter_root)
{
	struct spec_queryset *qs = parse_ok("{\"model\":\"b\",\"exclude\":"
					    "{\"$or\":[{\"a\":1},{\"b\":2}]}}");

	ck_assert(qs->filter == NULL);
	ck_assert_int_eq(qs->exclude->kind, SPEC_OR);
	ck_assert_uint_eq(qs->exclude->nchildren, 2);
	assert_term(&qs->exclude->children[1], "b", "exclude.$or[1].b");
	spec_free(qs);
}
END_TEST

struct value_case {
	const char *key;
	enum spec_value_kind kind;
	const char *text; /* NULL for SPEC_NULL */
};

START_TEST(test_values_of_each_json_type)
{
	static const struct value_case want[] = {
		{"n", SPEC_NULL, NULL},
		{"t", SPEC_BOOL, "true"},
		{"f", SPEC_BOOL, "false"},
		{"i", SPEC_NUMBER, "-42"},
		{"max", SPEC_NUMBER, "9223372036854775807"},
		{"min", SPEC_NUMBER, "-9223372036854775808"},
		{"r", SPEC_NUMBER, "0.1"},
		{"r2", SPEC_NUMBER, "3.14159"},
		{"tiny", SPEC_NUMBER, "0.0001"},
		{"neg", SPEC_NUMBER, "-2.5e-07"},
		{"wide", SPEC_NUMBER, "12345678901234568"},
		{"whole", SPEC_NUMBER, "100"},
		{"e", SPEC_NUMBER, "1e+22"},
		{"s", SPEC_STRING, "h\xc3\xa9llo \"q\""},
		{"empty", SPEC_STRING, ""},
		{"o", SPEC_OBJECT, "{\"k\":[1,0.5,\"x\"],\"z\":null}"},
		{"tags__contains", SPEC_ARRAY, "[\"a\",\"b\"]"},
	};
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"b\",\"filter\":{\"n\":null,\"t\":true,"
		"\"f\":false,\"i\":-42,\"max\":9223372036854775807,"
		"\"min\":-9223372036854775808,\"r\":0.1,\"r2\":3.14159,"
		"\"tiny\":1e-4,\"neg\":-25e-8,\"wide\":12345678901234567.0,"
		"\"whole\":100.0,\"e\":1e22,\"s\":\"h\\u00e9llo \\\"q\\\"\","
		"\"empty\":\"\",\"o\":{\"k\":[1,0.50,\"x\"],\"z\":null},"
		"\"tags__contains\":[\"a\",\"b\"]}}");
	const struct spec_cond *f = qs->filter;

	ck_assert_uint_eq(f->nchildren, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < f->nchildren; i++) {
		const struct spec_value *v = &f->children[i].value;

		ck_assert_str_eq(f->children[i].lookup, want[i].key);
		ck_assert_msg(v->kind == want[i].kind, "%s: kind %d",
			      want[i].key, v->kind);
		if (want[i].text)
			ck_assert_str_eq(v->text, want[i].text);
		else
			ck_assert_ptr_null(v->text);
	}
	/* An array value outside "in" still has its items. */
	ck_assert_uint_eq(f->children[16].value.nitems, 2);
	ck_assert_str_eq(f->children[16].value.items[1].text, "b");
	spec_free(qs);
}
END_TEST

START_TEST(test_json_text_matches_jansson_compact_dump)
{
	const char *obj = "{\"q\":\"a\\\"b\\\\c/\\n\\t\\r\\b\\f\\u0001\\u001f"
			  "\\u00e9\\u20ac\",\"n\":[true,false,null,-7,{}],"
			  "\"e\":[]}";
	char body[512];
	json_t *j;
	char *dump;
	struct spec_queryset *qs;

	snprintf(body, sizeof(body), "{\"model\":\"b\",\"filter\":{\"d\":%s}}",
		 obj);
	qs = parse_ok(body);
	j = json_loads(obj, 0, NULL);
	ck_assert_ptr_nonnull(j);
	dump = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	ck_assert_str_eq(qs->filter->value.text, dump);
	free(dump);
	json_decref(j);
	spec_free(qs);
}
END_TEST

START_TEST(test_reals_use_shortest_text_inside_json_too)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"filter\":{\"data__contains\":"
			 "{\"price\":0.1,\"w\":[2.5e-7,1.0,123456789.125]}}}");

	ck_assert_str_eq(qs->filter->value.text,
			 "{\"price\":0.1,\"w\":[2.5e-07,1,123456789.125]}");
	spec_free(qs);
}
END_TEST

START_TEST(test_in_array_keeps_items_of_each_type)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"filter\":{\"id__in\":"
			 "[1,\"a\",null,true,2.5,[1,[2]],{\"x\":1}]}}");
	const struct spec_value *v = &qs->filter->value;

	assert_term(qs->filter, "id__in", "filter.id__in");
	ck_assert_int_eq(v->kind, SPEC_ARRAY);
	ck_assert_str_eq(v->text, "[1,\"a\",null,true,2.5,[1,[2]],{\"x\":1}]");
	ck_assert_uint_eq(v->nitems, 7);
	ck_assert_int_eq(v->items[0].kind, SPEC_NUMBER);
	ck_assert_str_eq(v->items[0].text, "1");
	ck_assert_int_eq(v->items[1].kind, SPEC_STRING);
	ck_assert_str_eq(v->items[1].text, "a");
	ck_assert_int_eq(v->items[2].kind, SPEC_NULL);
	ck_assert_ptr_null(v->items[2].text);
	ck_assert_int_eq(v->items[3].kind, SPEC_BOOL);
	ck_assert_str_eq(v->items[3].text, "true");
	ck_assert_str_eq(v->items[4].text, "2.5");
	/* Nested containers: JSON text only, one level of items. */
	ck_assert_int_eq(v->items[5].kind, SPEC_ARRAY);
	ck_assert_str_eq(v->items[5].text, "[1,[2]]");
	ck_assert_uint_eq(v->items[5].nitems, 0);
	ck_assert_ptr_null(v->items[5].items);
	ck_assert_int_eq(v->items[6].kind, SPEC_OBJECT);
	ck_assert_str_eq(v->items[6].text, "{\"x\":1}");
	spec_free(qs);
}
END_TEST

START_TEST(test_empty_in_is_an_empty_array)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"filter\":{\"pk__in\":[]}}");

	ck_assert_int_eq(qs->filter->value.kind, SPEC_ARRAY);
	ck_assert_uint_eq(qs->filter->value.nitems, 0);
	ck_assert_str_eq(qs->filter->value.text, "[]");
	spec_free(qs);
}
END_TEST

START_TEST(test_range_has_two_bounds_and_isnull_a_boolean)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"filter\":{\"pub_date__range\":"
			 "[\"2020-01-01\",\"2020-12-31\"],\"n__range\":[1,2.5],"
			 "\"author__isnull\":false}}");
	const struct spec_cond *f = qs->filter;

	ck_assert_int_eq(f->children[0].value.kind, SPEC_ARRAY);
	ck_assert_uint_eq(f->children[0].value.nitems, 2);
	ck_assert_str_eq(f->children[0].value.items[0].text, "2020-01-01");
	ck_assert_str_eq(f->children[0].value.items[1].text, "2020-12-31");
	ck_assert_str_eq(f->children[1].value.items[1].text, "2.5");
	ck_assert_int_eq(f->children[2].value.kind, SPEC_BOOL);
	ck_assert_str_eq(f->children[2].value.text, "false");
	spec_free(qs);
}
END_TEST

START_TEST(test_order_by_minus_means_descending)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"b\",\"order_by\":[\"-pub_date\",\"author__name\","
		"\"-pk\"]}");

	ck_assert(qs->has_order_by);
	ck_assert_uint_eq(qs->norder_by, 3);
	ck_assert_str_eq(qs->order_by[0].field, "pub_date");
	ck_assert(qs->order_by[0].desc);
	ck_assert_str_eq(qs->order_by[0].at, "order_by[0]");
	ck_assert_str_eq(qs->order_by[1].field, "author__name");
	ck_assert(!qs->order_by[1].desc);
	ck_assert_str_eq(qs->order_by[2].field, "pk");
	ck_assert(qs->order_by[2].desc);
	ck_assert_str_eq(qs->order_by[2].at, "order_by[2]");
	spec_free(qs);
}
END_TEST

START_TEST(test_empty_order_by_clears_ordering)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"order_by\":[]}");

	ck_assert(qs->has_order_by);
	ck_assert_uint_eq(qs->norder_by, 0);
	spec_free(qs);
}
END_TEST

START_TEST(test_only_defer_select_related_keep_names_and_at)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"b\",\"only\":[\"title\",\"author\"],"
		"\"defer\":[\"body\"],"
		"\"select_related\":[\"author\",\"author__publisher\"]}");

	ck_assert(qs->has_only);
	ck_assert_uint_eq(qs->nonly, 2);
	ck_assert_str_eq(qs->only[1].name, "author");
	ck_assert_str_eq(qs->only[1].at, "only[1]");
	ck_assert_uint_eq(qs->ndefer, 1);
	ck_assert_str_eq(qs->defer[0].name, "body");
	ck_assert_str_eq(qs->defer[0].at, "defer[0]");
	ck_assert_uint_eq(qs->nselect_related, 2);
	ck_assert_str_eq(qs->select_related[1].name, "author__publisher");
	ck_assert_str_eq(qs->select_related[1].at, "select_related[1]");
	spec_free(qs);
}
END_TEST

START_TEST(test_empty_only_is_given_but_empty)
{
	struct spec_queryset *qs = parse_ok("{\"model\":\"b\",\"only\":[]}");

	ck_assert(qs->has_only);
	ck_assert_uint_eq(qs->nonly, 0);
	spec_free(qs);
}
END_TEST

START_TEST(test_offset_limit_and_distinct)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"offset\":10,\"limit\":0,"
			 "\"distinct\":true}");

	ck_assert_int_eq(qs->offset, 10);
	ck_assert(qs->has_limit);
	ck_assert_int_eq(qs->limit, 0);
	ck_assert(qs->distinct);
	spec_free(qs);
}
END_TEST

START_TEST(test_nested_prefetch_with_queryset_and_to_attr)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"author\",\"prefetch_related\":[\"book_set\","
		"{\"lookup\":\"article_set\",\"queryset\":{"
		"\"filter\":{\"is_published\":true},"
		"\"order_by\":[\"-pub_date\"],\"limit\":5,"
		"\"prefetch_related\":[{\"lookup\":\"comment_set\","
		"\"queryset\":{\"model\":\"comment\",\"exclude\":"
		"{\"$or\":[{\"spam\":true}]}}}]},"
		"\"to_attr\":\"recent_articles\"},"
		"{\"lookup\":\"recent_articles__comment_set\"}]}");
	const struct spec_prefetch *pf = qs->prefetch_related;
	const struct spec_queryset *in, *in2;

	ck_assert_uint_eq(qs->nprefetch_related, 3);
	ck_assert_str_eq(pf[0].lookup, "book_set");
	ck_assert_str_eq(pf[0].at, "prefetch_related[0]");
	ck_assert_ptr_null(pf[0].queryset);
	ck_assert_ptr_null(pf[0].to_attr);

	ck_assert_str_eq(pf[1].lookup, "article_set");
	ck_assert_str_eq(pf[1].at, "prefetch_related[1]");
	ck_assert_str_eq(pf[1].to_attr, "recent_articles");
	in = pf[1].queryset;
	ck_assert_ptr_nonnull(in);
	ck_assert_str_eq(in->at, "prefetch_related[1].queryset");
	ck_assert_ptr_null(in->model);
	assert_term(in->filter, "is_published",
		    "prefetch_related[1].queryset.filter.is_published");
	ck_assert_uint_eq(in->norder_by, 1);
	ck_assert(in->order_by[0].desc);
	ck_assert_str_eq(in->order_by[0].at,
			 "prefetch_related[1].queryset.order_by[0]");
	ck_assert(in->has_limit);
	ck_assert_int_eq(in->limit, 5);

	ck_assert_uint_eq(in->nprefetch_related, 1);
	ck_assert_str_eq(in->prefetch_related[0].at,
			 "prefetch_related[1].queryset.prefetch_related[0]");
	in2 = in->prefetch_related[0].queryset;
	ck_assert_str_eq(in2->model, "comment");
	ck_assert_int_eq(in2->exclude->kind, SPEC_OR);
	assert_term(&in2->exclude->children[0], "spam",
		    "prefetch_related[1].queryset.prefetch_related[0]."
		    "queryset.exclude.$or[0].spam");

	ck_assert_str_eq(pf[2].lookup, "recent_articles__comment_set");
	ck_assert_ptr_null(pf[2].queryset);
	ck_assert_ptr_null(pf[2].to_attr);
	spec_free(qs);
}
END_TEST

START_TEST(test_prefetch_with_empty_queryset)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"a\",\"prefetch_related\":[{\"queryset\":{},"
		"\"lookup\":\"b\"}]}");

	ck_assert_str_eq(qs->prefetch_related[0].lookup, "b");
	ck_assert_ptr_nonnull(qs->prefetch_related[0].queryset);
	ck_assert_uint_eq(qs->prefetch_related[0].queryset->nprefetch_related,
			  0);
	spec_free(qs);
}
END_TEST

/* ---- expressions, annotate, aggregate, values (DESIGN.md §6) ---- */

static void assert_expr(const struct spec_expr *e, enum spec_expr_kind kind,
			const char *at)
{
	ck_assert_msg(e->kind == kind, "%s: kind %d, want %d", at, e->kind,
		      kind);
	ck_assert_str_eq(e->at, at);
}

static void assert_field(const struct spec_expr *e, const char *name,
			 const char *at)
{
	assert_expr(e, SPEC_EX_FIELD, at);
	ck_assert_str_eq(e->name, name);
}

static void assert_literal(const struct spec_expr *e, enum spec_value_kind kind,
			   const char *text, const char *at)
{
	assert_expr(e, SPEC_EX_VALUE, at);
	ck_assert_int_eq(e->value.kind, kind);
	if (text)
		ck_assert_str_eq(e->value.text, text);
	else
		ck_assert_ptr_null(e->value.text);
}

/* One annotation value and the node it must give, at "annotate.x". */
struct expr_case {
	const char *json;
	enum spec_expr_kind kind;
	const char *name; /* NULL: none */
	const char *text; /* SPEC_EX_VALUE: value.text, NULL for null */
	size_t nargs;
	bool list_form;
	int outer_depth;
};

static const struct expr_case expr_cases[] = {
	{"\"book__pages\"", SPEC_EX_FIELD, "book__pages", NULL, 0, false, 0},
	{"\"*\"", SPEC_EX_FIELD, "*", NULL, 0, false, 0},
	{"42", SPEC_EX_VALUE, NULL, "42", 0, false, 0},
	{"0.1", SPEC_EX_VALUE, NULL, "0.1", 0, false, 0},
	{"false", SPEC_EX_VALUE, NULL, "false", 0, false, 0},
	{"null", SPEC_EX_VALUE, NULL, NULL, 0, false, 0},
	{"{\"$f\":\"published__year\"}", SPEC_EX_FIELD, "published__year", NULL,
	 0, false, 0},
	{"{\"$value\":\"book__pages\"}", SPEC_EX_VALUE, NULL, "book__pages", 0,
	 false, 0},
	{"{\"$value\":{\"$f\":1,\"k\":[0.5]}}", SPEC_EX_VALUE, NULL,
	 "{\"$f\":1,\"k\":[0.5]}", 0, false, 0},
	{"{\"$outer\":\"id\"}", SPEC_EX_OUTER, "id", NULL, 0, false, 1},
	{"{\"$outer\":{\"$outer\":\"author__id\"}}", SPEC_EX_OUTER,
	 "author__id", NULL, 0, false, 2},
	{"{\"$lower\":\"name\"}", SPEC_EX_CALL, "lower", NULL, 1, false, 0},
	{"{\"$lower\":[\"name\"]}", SPEC_EX_CALL, "lower", NULL, 1, true, 0},
	{"{\"$count\":\"*\"}", SPEC_EX_CALL, "count", NULL, 1, false, 0},
	{"{\"$coalesce\":[\"a\",\"b\",0]}", SPEC_EX_CALL, "coalesce", NULL, 3,
	 true, 0},
	{"{\"$coalesce\":[]}", SPEC_EX_CALL, "coalesce", NULL, 0, true, 0},
	/* names are resolve's to check, not spec's */
	{"{\"$no_such_fn2\":1}", SPEC_EX_CALL, "no_such_fn2", NULL, 1, false,
	 0},
	{"{\"$cast\":\"pages\",\"to\":\"text\"}", SPEC_EX_CAST, "text", NULL, 1,
	 false, 0},
	{"{\"to\":\"bogus\",\"$cast\":{\"$f\":\"pages\"}}", SPEC_EX_CAST,
	 "bogus", NULL, 1, false, 0},
	{"{\"$case\":[{\"when\":{\"a\":1},\"then\":\"b\"}]}", SPEC_EX_CASE,
	 NULL, NULL, 0, false, 0},
	{"{\"$exists\":{\"model\":\"book\"}}", SPEC_EX_EXISTS, NULL, NULL, 0,
	 false, 0},
	{"{\"$subquery\":{\"model\":\"book\",\"values\":[\"id\"],"
	 "\"limit\":1}}",
	 SPEC_EX_SUBQUERY, NULL, NULL, 0, false, 0},
};

START_TEST(test_each_expression_form_gives_its_node)
{
	const struct expr_case *ec = &expr_cases[_i];
	char body[512];
	struct spec_queryset *qs;
	const struct spec_expr *e;

	snprintf(body, sizeof(body),
		 "{\"model\":\"b\",\"annotate\":{\"x\":%s}}", ec->json);
	qs = parse_ok(body);
	ck_assert_uint_eq(qs->nannotate, 1);
	ck_assert_str_eq(qs->annotate[0].name, "x");
	ck_assert_str_eq(qs->annotate[0].at, "annotate.x");
	e = &qs->annotate[0].expr;
	assert_expr(e, ec->kind, "annotate.x");
	if (ec->name)
		ck_assert_str_eq(e->name, ec->name);
	else
		ck_assert_ptr_null(e->name);
	if (ec->kind == SPEC_EX_VALUE && ec->text)
		ck_assert_str_eq(e->value.text, ec->text);
	if (ec->kind == SPEC_EX_VALUE && !ec->text)
		ck_assert_int_eq(e->value.kind, SPEC_NULL);
	ck_assert_uint_eq(e->nargs, ec->nargs);
	ck_assert(e->list_form == ec->list_form);
	ck_assert_int_eq(e->outer_depth, ec->outer_depth);
	ck_assert(!e->has_distinct && !e->has_sample);
	ck_assert_ptr_null(e->filter);
	ck_assert_ptr_null(e->dflt);
	ck_assert((e->query != NULL) ==
		  (ec->kind == SPEC_EX_EXISTS || ec->kind == SPEC_EX_SUBQUERY));
	ck_assert((e->nwhens != 0) == (ec->kind == SPEC_EX_CASE));
	spec_free(qs);
}
END_TEST

START_TEST(test_annotate_keeps_key_order_and_at_paths)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"author\",\"annotate\":{\"z\":{\"$count\":"
		"\"book\"},\"a\":\"name\",\"m\":{\"$lower\":\"z\"}},"
		"\"prefetch_related\":[{\"lookup\":\"book_set\",\"queryset\":"
		"{\"annotate\":{\"n\":{\"$count\":\"readers\"}}}}]}");
	const struct spec_queryset *in = qs->prefetch_related[0].queryset;

	ck_assert_uint_eq(qs->nannotate, 3);
	ck_assert_str_eq(qs->annotate[0].name, "z");
	ck_assert_str_eq(qs->annotate[1].name, "a");
	ck_assert_str_eq(qs->annotate[2].name, "m");
	ck_assert_str_eq(qs->annotate[2].at, "annotate.m");
	assert_field(&qs->annotate[0].expr.args[0], "book",
		     "annotate.z.$count");
	assert_field(&qs->annotate[1].expr, "name", "annotate.a");
	ck_assert(!qs->has_aggregate && qs->naggregate == 0);
	ck_assert(!qs->has_values);
	ck_assert_uint_eq(in->nannotate, 1);
	ck_assert_str_eq(in->annotate[0].at,
			 "prefetch_related[0].queryset.annotate.n");
	assert_field(&in->annotate[0].expr.args[0], "readers",
		     "prefetch_related[0].queryset.annotate.n.$count");
	spec_free(qs);
}
END_TEST

START_TEST(test_aggregate_sets_has_aggregate_even_when_empty)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"b\",\"aggregate\":{\"total\":{\"$count\":"
		"\"book\"},\"safe\":{\"$coalesce\":[\"total\",0]}}}");

	ck_assert(qs->has_aggregate);
	ck_assert_uint_eq(qs->naggregate, 2);
	ck_assert_str_eq(qs->aggregate[1].name, "safe");
	ck_assert_str_eq(qs->aggregate[1].at, "aggregate.safe");
	assert_field(&qs->aggregate[1].expr.args[0], "total",
		     "aggregate.safe.$coalesce[0]");
	assert_literal(&qs->aggregate[1].expr.args[1], SPEC_NUMBER, "0",
		       "aggregate.safe.$coalesce[1]");
	ck_assert_uint_eq(qs->nannotate, 0);
	spec_free(qs);

	qs = parse_ok("{\"model\":\"b\",\"aggregate\":{}}");
	ck_assert(qs->has_aggregate);
	ck_assert_uint_eq(qs->naggregate, 0);
	ck_assert_ptr_null(qs->aggregate);
	spec_free(qs);
}
END_TEST

/* Django: F("a") + "x" is Value("x"), but Lower("x") is Lower(F("x")). */
START_TEST(test_strings_are_literals_in_arithmetic_and_fields_elsewhere)
{
	static const char *const arith[] = {"add", "sub", "mul", "div", "mod"};
	char body[256], at[64];
	struct spec_queryset *qs;
	const struct spec_expr *e;

	for (size_t i = 0; i < sizeof(arith) / sizeof(arith[0]); i++) {
		snprintf(body, sizeof(body),
			 "{\"model\":\"b\",\"annotate\":{\"x\":{\"$%s\":"
			 "[\"pages\",{\"$f\":\"sales\"}]}}}",
			 arith[i]);
		qs = parse_ok(body);
		e = &qs->annotate[0].expr;
		ck_assert_str_eq(e->name, arith[i]);
		snprintf(at, sizeof(at), "annotate.x.$%s[0]", arith[i]);
		assert_literal(&e->args[0], SPEC_STRING, "pages", at);
		snprintf(at, sizeof(at), "annotate.x.$%s[1]", arith[i]);
		assert_field(&e->args[1], "sales", at);
		spec_free(qs);
	}

	qs = parse_ok(
		"{\"model\":\"b\",\"annotate\":{\"x\":{\"$add\":["
		"{\"$lower\":\"name\"},\"x\",1,true,null,2.5]},"
		"\"y\":{\"$concat\":[\"first\",\" \",{\"$value\":\"-\"}]},"
		"\"z\":{\"$greatest\":[\"a\",1]}}}");
	e = &qs->annotate[0].expr;
	ck_assert(e->list_form);
	ck_assert_uint_eq(e->nargs, 6);
	assert_expr(&e->args[0], SPEC_EX_CALL, "annotate.x.$add[0]");
	ck_assert_str_eq(e->args[0].name, "lower");
	assert_field(&e->args[0].args[0], "name", "annotate.x.$add[0].$lower");
	assert_literal(&e->args[1], SPEC_STRING, "x", "annotate.x.$add[1]");
	assert_literal(&e->args[2], SPEC_NUMBER, "1", "annotate.x.$add[2]");
	assert_literal(&e->args[3], SPEC_BOOL, "true", "annotate.x.$add[3]");
	assert_literal(&e->args[4], SPEC_NULL, NULL, "annotate.x.$add[4]");
	assert_literal(&e->args[5], SPEC_NUMBER, "2.5", "annotate.x.$add[5]");
	e = &qs->annotate[1].expr;
	assert_field(&e->args[0], "first", "annotate.y.$concat[0]");
	assert_field(&e->args[1], " ", "annotate.y.$concat[1]");
	assert_literal(&e->args[2], SPEC_STRING, "-", "annotate.y.$concat[2]");
	e = &qs->annotate[2].expr;
	assert_field(&e->args[0], "a", "annotate.z.$greatest[0]");
	assert_literal(&e->args[1], SPEC_NUMBER, "1",
		       "annotate.z.$greatest[1]");
	spec_free(qs);
}
END_TEST

START_TEST(test_call_options_are_kept_with_at_paths)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"b\",\"annotate\":{"
		"\"n\":{\"$count\":\"book\",\"distinct\":true,\"filter\":"
		"{\"book__pages__gt\":100,\"book__title\":{\"$f\":\"name\"}}},"
		"\"s\":{\"$stddev\":[\"price\"],\"sample\":false,\"default\":"
		"\"fallback\",\"distinct\":false},"
		"\"t\":{\"default\":{\"$value\":0},\"$sum\":\"pages\"}}}");
	const struct spec_expr *n = &qs->annotate[0].expr;
	const struct spec_expr *s = &qs->annotate[1].expr;
	const struct spec_expr *t = &qs->annotate[2].expr;

	ck_assert(n->has_distinct && n->distinct);
	ck_assert(!n->has_sample);
	ck_assert_ptr_null(n->dflt);
	ck_assert_int_eq(n->filter->kind, SPEC_AND);
	ck_assert_str_eq(n->filter->at, "annotate.n.filter");
	assert_term(&n->filter->children[0], "book__pages__gt",
		    "annotate.n.filter.book__pages__gt");
	ck_assert_ptr_null(n->filter->children[0].rhs);
	assert_field(n->filter->children[1].rhs, "name",
		     "annotate.n.filter.book__title");

	ck_assert(s->list_form && s->nargs == 1);
	ck_assert(s->has_sample && !s->sample);
	ck_assert(s->has_distinct && !s->distinct);
	ck_assert_ptr_null(s->filter);
	assert_field(s->dflt, "fallback", "annotate.s.default");

	ck_assert(!t->list_form && t->nargs == 1);
	assert_literal(t->dflt, SPEC_NUMBER, "0", "annotate.t.default");
	assert_field(&t->args[0], "pages", "annotate.t.$sum");
	spec_free(qs);
}
END_TEST

START_TEST(test_case_has_whens_then_and_default_with_at_paths)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"b\",\"annotate\":{\"kind\":{\"$case\":["
		"{\"when\":{\"pages__gt\":500},\"then\":{\"$value\":\"long\"}},"
		"{\"then\":\"title\",\"when\":{\"$or\":[{\"a\":1},{\"b\":2}]}}"
		"],\"default\":\"short\"}}}");
	const struct spec_expr *e = &qs->annotate[0].expr;

	assert_expr(e, SPEC_EX_CASE, "annotate.kind");
	ck_assert_uint_eq(e->nwhens, 2);
	ck_assert_uint_eq(e->nargs, 0);
	ck_assert_str_eq(e->whens[0].at, "annotate.kind.$case[0]");
	assert_term(e->whens[0].when, "pages__gt",
		    "annotate.kind.$case[0].when.pages__gt");
	assert_literal(e->whens[0].then, SPEC_STRING, "long",
		       "annotate.kind.$case[0].then");
	ck_assert_str_eq(e->whens[1].at, "annotate.kind.$case[1]");
	ck_assert_int_eq(e->whens[1].when->kind, SPEC_OR);
	ck_assert_str_eq(e->whens[1].when->at,
			 "annotate.kind.$case[1].when.$or");
	assert_term(&e->whens[1].when->children[1], "b",
		    "annotate.kind.$case[1].when.$or[1].b");
	assert_field(e->whens[1].then, "title", "annotate.kind.$case[1].then");
	assert_field(e->dflt, "short", "annotate.kind.default");
	spec_free(qs);
}
END_TEST

START_TEST(test_cast_has_one_operand_and_its_target)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"annotate\":{\"p\":{\"$cast\":"
			 "{\"$div\":[\"pages\",2]},\"to\":\"numeric\"}}}");
	const struct spec_expr *e = &qs->annotate[0].expr;

	assert_expr(e, SPEC_EX_CAST, "annotate.p");
	ck_assert_str_eq(e->name, "numeric");
	ck_assert_uint_eq(e->nargs, 1);
	ck_assert(!e->list_form);
	assert_expr(&e->args[0], SPEC_EX_CALL, "annotate.p.$cast");
	ck_assert_str_eq(e->args[0].name, "div");
	assert_literal(&e->args[0].args[0], SPEC_STRING, "pages",
		       "annotate.p.$cast.$div[0]");
	spec_free(qs);
}
END_TEST

START_TEST(test_exists_and_subquery_hold_a_queryset_with_outer_refs)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"author\",\"annotate\":{"
		"\"has\":{\"$exists\":{\"model\":\"book\",\"filter\":"
		"{\"author\":{\"$outer\":\"pk\"}}}},"
		"\"last\":{\"$subquery\":{\"model\":\"book\",\"filter\":"
		"{\"publisher\":{\"$outer\":{\"$outer\":\"id\"}}},"
		"\"order_by\":[\"-pub_date\"],\"values\":[\"title\"],"
		"\"limit\":1,\"annotate\":{\"n\":{\"$count\":\"id\"}}}}}}");
	const struct spec_expr *has = &qs->annotate[0].expr;
	const struct spec_expr *last = &qs->annotate[1].expr;
	const struct spec_expr *o;

	assert_expr(has, SPEC_EX_EXISTS, "annotate.has");
	ck_assert_str_eq(has->query->at, "annotate.has.$exists");
	ck_assert_str_eq(has->query->model, "book");
	assert_term(has->query->filter, "author",
		    "annotate.has.$exists.filter.author");
	o = has->query->filter->rhs;
	assert_expr(o, SPEC_EX_OUTER, "annotate.has.$exists.filter.author");
	ck_assert_str_eq(o->name, "pk");
	ck_assert_int_eq(o->outer_depth, 1);

	assert_expr(last, SPEC_EX_SUBQUERY, "annotate.last");
	ck_assert_str_eq(last->query->at, "annotate.last.$subquery");
	ck_assert(last->query->has_values && !last->query->values_list);
	ck_assert_str_eq(last->query->values[0].at,
			 "annotate.last.$subquery.values[0]");
	ck_assert(last->query->has_limit && last->query->limit == 1);
	ck_assert_str_eq(last->query->annotate[0].at,
			 "annotate.last.$subquery.annotate.n");
	o = last->query->filter->rhs;
	ck_assert_str_eq(o->name, "id");
	ck_assert_int_eq(o->outer_depth, 2);
	spec_free(qs);
}
END_TEST

START_TEST(test_filter_value_with_an_operator_is_an_expression)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"b\",\"filter\":{\"pages__gt\":{\"$f\":\"sales\"},"
		"\"price__lt\":{\"$mul\":[{\"$f\":\"pages\"},0.1]},"
		"\"n__gte\":{\"$count\":\"x\",\"distinct\":true},"
		"\"data\":{\"color\":\"red\"}},"
		"\"exclude\":{\"$or\":[{\"title\":{\"$upper\":\"name\"}}]}}");
	const struct spec_cond *f = qs->filter, *c;

	ck_assert_uint_eq(f->nchildren, 4);
	c = &f->children[0];
	assert_term(c, "pages__gt", "filter.pages__gt");
	assert_field(c->rhs, "sales", "filter.pages__gt");
	ck_assert_int_eq(c->value.kind, SPEC_NULL);
	ck_assert_ptr_null(c->value.text);

	c = &f->children[1];
	assert_expr(c->rhs, SPEC_EX_CALL, "filter.price__lt");
	ck_assert_str_eq(c->rhs->name, "mul");
	assert_field(&c->rhs->args[0], "pages", "filter.price__lt.$mul[0]");
	assert_literal(&c->rhs->args[1], SPEC_NUMBER, "0.1",
		       "filter.price__lt.$mul[1]");

	c = &f->children[2];
	ck_assert_str_eq(c->rhs->name, "count");
	ck_assert(c->rhs->has_distinct && c->rhs->distinct);

	/* An object without a '$' key is still a literal (jsonb). */
	c = &f->children[3];
	ck_assert_ptr_null(c->rhs);
	ck_assert_int_eq(c->value.kind, SPEC_OBJECT);
	ck_assert_str_eq(c->value.text, "{\"color\":\"red\"}");

	c = &qs->exclude->children[0];
	assert_term(c, "title", "exclude.$or[0].title");
	assert_field(&c->rhs->args[0], "name", "exclude.$or[0].title.$upper");
	spec_free(qs);
}
END_TEST

START_TEST(test_value_wrapper_in_a_filter_is_a_plain_literal)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"filter\":{"
			 "\"metadata\":{\"$value\":{\"$a\":1}},"
			 "\"id__in\":{\"$value\":[1,\"x\"]},"
			 "\"title\":{\"$value\":\"$f\"},"
			 "\"a__isnull\":{\"$value\":true},"
			 "\"n__range\":{\"$value\":[1,2]}}}");
	const struct spec_cond *f = qs->filter;

	for (size_t i = 0; i < f->nchildren; i++)
		ck_assert_ptr_null(f->children[i].rhs);
	ck_assert_int_eq(f->children[0].value.kind, SPEC_OBJECT);
	ck_assert_str_eq(f->children[0].value.text, "{\"$a\":1}");
	ck_assert_str_eq(f->children[0].at, "filter.metadata");
	ck_assert_int_eq(f->children[1].value.kind, SPEC_ARRAY);
	ck_assert_uint_eq(f->children[1].value.nitems, 2);
	ck_assert_str_eq(f->children[1].value.items[1].text, "x");
	ck_assert_int_eq(f->children[2].value.kind, SPEC_STRING);
	ck_assert_str_eq(f->children[2].value.text, "$f");
	ck_assert_str_eq(f->children[3].value.text, "true");
	ck_assert_uint_eq(f->children[4].value.nitems, 2);
	spec_free(qs);
}
END_TEST

START_TEST(test_exists_term_in_a_condition_tree)
{
	struct spec_queryset *qs = parse_ok(
		"{\"model\":\"author\",\"filter\":{\"name\":\"x\","
		"\"$exists\":{\"model\":\"book\",\"filter\":{\"author\":"
		"{\"$outer\":\"pk\"}}},"
		"\"$and\":[{\"a\":1},{\"$not\":{\"$exists\":{\"model\":"
		"\"review\",\"limit\":1}}}]},"
		"\"exclude\":{\"$exists\":{\"model\":\"ban\"}}}");
	const struct spec_cond *f = qs->filter, *c;

	ck_assert_uint_eq(f->nchildren, 3);
	c = &f->children[1];
	ck_assert_int_eq(c->kind, SPEC_EXISTS);
	ck_assert_str_eq(c->at, "filter.$exists");
	ck_assert_ptr_null(c->lookup);
	ck_assert_ptr_null(c->rhs);
	ck_assert_uint_eq(c->nchildren, 0);
	ck_assert_str_eq(c->exists->at, "filter.$exists");
	ck_assert_str_eq(c->exists->model, "book");
	assert_expr(c->exists->filter->rhs, SPEC_EX_OUTER,
		    "filter.$exists.filter.author");

	c = &f->children[2].children[1];
	ck_assert_int_eq(c->kind, SPEC_NOT);
	c = &c->children[0];
	ck_assert_int_eq(c->kind, SPEC_EXISTS);
	ck_assert_str_eq(c->at, "filter.$and[1].$not.$exists");
	ck_assert_str_eq(c->exists->at, "filter.$and[1].$not.$exists");
	ck_assert_str_eq(c->exists->model, "review");
	ck_assert(c->exists->has_limit);

	ck_assert_int_eq(qs->exclude->kind, SPEC_EXISTS);
	ck_assert_str_eq(qs->exclude->exists->model, "ban");
	spec_free(qs);
}
END_TEST

START_TEST(test_values_and_values_list_keep_entries_and_at)
{
	struct spec_queryset *qs =
		parse_ok("{\"model\":\"b\",\"values\":[\"publisher\","
			 "\"author__name\",\"n\"],\"annotate\":{\"n\":{"
			 "\"$count\":\"id\"}}}");

	ck_assert(qs->has_values && !qs->values_list && !qs->flat);
	ck_assert_uint_eq(qs->nvalues, 3);
	ck_assert_str_eq(qs->values[1].name, "author__name");
	ck_assert_str_eq(qs->values[1].at, "values[1]");
	ck_assert(!qs->has_only);
	spec_free(qs);

	qs = parse_ok("{\"model\":\"b\",\"values\":[]}");
	ck_assert(qs->has_values && qs->nvalues == 0);
	spec_free(qs);

	qs = parse_ok("{\"model\":\"b\",\"values_list\":{\"flat\":true,"
		      "\"fields\":[\"title\"]}}");
	ck_assert(qs->has_values && qs->values_list && qs->flat);
	ck_assert_uint_eq(qs->nvalues, 1);
	ck_assert_str_eq(qs->values[0].name, "title");
	ck_assert_str_eq(qs->values[0].at, "values_list.fields[0]");
	spec_free(qs);

	qs = parse_ok("{\"model\":\"b\",\"values_list\":{\"fields\":[\"a\","
		      "\"b\"],\"flat\":false}}");
	ck_assert(qs->values_list && !qs->flat && qs->nvalues == 2);
	spec_free(qs);

	qs = parse_ok("{\"model\":\"b\",\"values_list\":{\"fields\":[]}}");
	ck_assert(qs->has_values && qs->values_list && qs->nvalues == 0);
	spec_free(qs);
}
END_TEST

/* An annotation of n nested {"$abs": ...} around a field path: the k-th
 * object is at level k+1 (the queryset is level 1). */
static char *expr_chain(int n)
{
	size_t size = 64 + (size_t)n * 12;
	char *body = malloc(size);
	size_t len = 0;

	ck_assert_ptr_nonnull(body);
	len += snprintf(body + len, size - len,
			"{\"model\":\"b\",\"annotate\":{\"x\":");
	for (int i = 0; i < n; i++)
		len += snprintf(body + len, size - len, "{\"$abs\":");
	len += snprintf(body + len, size - len, "\"f\"");
	for (int i = 0; i < n; i++)
		len += snprintf(body + len, size - len, "}");
	snprintf(body + len, size - len, "}}");
	return body;
}

START_TEST(test_expression_nesting_up_to_the_limit_is_accepted)
{
	char *body = expr_chain(SPEC_DEFAULT_MAX_DEPTH - 1);
	struct spec_queryset *qs = parse_ok(body);
	const struct spec_expr *e = &qs->annotate[0].expr;
	int n = 0;

	while (e->kind == SPEC_EX_CALL) {
		e = &e->args[0];
		n++;
	}
	ck_assert_int_eq(n, SPEC_DEFAULT_MAX_DEPTH - 1);
	assert_field(e, "f", e->at);
	spec_free(qs);
	free(body);
}
END_TEST

START_TEST(test_expression_nesting_too_deep_is_bad_spec)
{
	char *body = expr_chain(SPEC_DEFAULT_MAX_DEPTH);
	struct pf_err err;

	ck_assert_ptr_null(parse(body, &err));
	ck_assert_str_eq(err.code, "bad_spec");
	ck_assert_ptr_nonnull(strstr(err.message, "nesting too deep"));
	ck_assert_ptr_nonnull(strstr(err.at, "annotate.x.$abs.$abs"));
	free(body);
}
END_TEST

/* Each expression object, condition object and queryset is one level. */
START_TEST(test_custom_depth_limit_counts_expression_levels)
{
	static const struct {
		const char *body;
		const char *at; /* NULL: accepted */
	} cases[] = {
		{"{\"model\":\"b\",\"annotate\":{\"x\":\"f\"}}", NULL},
		{"{\"model\":\"b\",\"annotate\":{\"x\":{\"$f\":\"a\"}}}", NULL},
		{"{\"model\":\"b\",\"annotate\":{\"x\":{\"$lower\":[\"a\",1]}}"
		 "}",
		 NULL},
		{"{\"model\":\"b\",\"annotate\":{\"x\":{\"$abs\":{\"$f\":\"a\"}"
		 "}}}",
		 "annotate.x.$abs"},
		{"{\"model\":\"b\",\"annotate\":{\"x\":{\"$count\":\"a\","
		 "\"filter\":{}}}}",
		 "annotate.x.filter"},
		{"{\"model\":\"b\",\"annotate\":{\"x\":{\"$exists\":"
		 "{\"model\":\"a\"}}}}",
		 "annotate.x.$exists"},
		{"{\"model\":\"b\",\"filter\":{\"a\":1}}", NULL},
		{"{\"model\":\"b\",\"filter\":{\"a\":{\"$f\":\"b\"}}}",
		 "filter.a"},
		{"{\"model\":\"b\",\"filter\":{\"a\":{\"$value\":{\"b\":1}}}}",
		 NULL},
		{"{\"model\":\"b\",\"filter\":{\"$exists\":{\"model\":\"a\"}}}",
		 "filter.$exists"},
	};
	const struct spec_limits lim = {.max_depth = 2};
	struct spec_queryset *qs;
	struct pf_err err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *body = cases[i].body;

		pf_err_clear(&err);
		qs = spec_parse(body, strlen(body), &lim, &err);
		if (!cases[i].at) {
			ck_assert_msg(qs != NULL, "%s: %s at '%s'", body,
				      err.message, err.at);
			spec_free(qs);
			continue;
		}
		ck_assert_msg(qs == NULL, "accepted: %s", body);
		ck_assert_str_eq(err.at, cases[i].at);
		ck_assert_ptr_nonnull(strstr(err.message, "nesting too deep"));
	}
}
END_TEST

START_TEST(test_subquery_levels_count_toward_the_depth_limit)
{
	const struct spec_limits lim = {.max_depth = 4};
	const char *ok = "{\"model\":\"b\",\"filter\":{\"$exists\":"
			 "{\"model\":\"a\",\"filter\":{\"x\":1}}}}";
	const char *deep =
		"{\"model\":\"b\",\"filter\":{\"$exists\":"
		"{\"model\":\"a\",\"filter\":{\"$not\":{\"x\":1}}}}}";
	struct spec_queryset *qs;
	struct pf_err err;

	qs = spec_parse(ok, strlen(ok), &lim, &err);
	ck_assert_ptr_nonnull(qs);
	spec_free(qs);
	ck_assert_ptr_null(spec_parse(deep, strlen(deep), &lim, &err));
	ck_assert_str_eq(err.at, "filter.$exists.filter.$not");
	ck_assert_ptr_nonnull(strstr(err.message, "at most 4"));
}
END_TEST

/* Errors deep inside expressions leave partly built trees: spec_free must
 * release them (the sanitizer build checks for leaks). */
START_TEST(test_errors_deep_in_expressions_free_the_partial_tree)
{
	static const char *const bodies[] = {
		"{\"model\":\"b\",\"annotate\":{\"a\":{\"$count\":\"x\","
		"\"filter\":{\"y\":{\"$f\":\"z\"}},\"default\":{\"$sum\":"
		"[\"q\",{\"$case\":[{\"when\":{\"k\":1},\"then\":\"v\"}],"
		"\"default\":{\"$subquery\":{\"model\":\"m\",\"annotate\":"
		"{\"w\":{\"$outer\":\"id\"}},\"values\":[\"w\"],\"bad\":1}}}]}}"
		"}}",
		"{\"model\":\"b\",\"filter\":{\"t\":{\"$coalesce\":[\"a\","
		"{\"$value\":[1,2]},{\"$cast\":\"c\",\"to\":\"text\"}]},"
		"\"$exists\":{\"model\":\"m\",\"filter\":{\"$or\":[{\"u\":"
		"{\"$lower\":\"\"}}]}}}}",
		"{\"model\":\"b\",\"values_list\":{\"fields\":[\"a\",\"b\"],"
		"\"flat\":true}}",
		"{\"model\":\"b\",\"values\":[\"a\"],\"values_list\":"
		"{\"fields\":[\"b\"]}}",
		"{\"model\":\"b\",\"annotate\":{\"x\":{\"$case\":[{\"when\":"
		"{\"a\":{\"$f\":\"b\"}},\"then\":{\"$f\":\"c\"}},{\"when\":"
		"{\"d\":1}}]}}}",
	};
	struct pf_err err;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		ck_assert_msg(parse(bodies[i], &err) == NULL, "accepted: %s",
			      bodies[i]);
		ck_assert_str_eq(err.code, "bad_spec");
	}
}
END_TEST

/* Names of exactly len bytes in every place a name is accepted. */
static void name_body(char *body, size_t size, size_t len)
{
	char name[256];

	ck_assert_uint_lt(len, sizeof(name));
	memset(name, 'x', len);
	name[len] = '\0';
	snprintf(body, size,
		 "{\"model\":\"%s\",\"only\":[\"%s\"],\"order_by\":[\"-%s\"],"
		 "\"filter\":{\"%s\":1},\"prefetch_related\":[\"%s\"]}",
		 name, name, name, name, name);
}

START_TEST(test_names_up_to_200_bytes_are_accepted)
{
	char body[2048];
	struct spec_queryset *qs;

	name_body(body, sizeof(body), 200);
	qs = parse_ok(body);
	ck_assert_uint_eq(strlen(qs->model), 200);
	ck_assert_uint_eq(strlen(qs->order_by[0].field), 200);
	spec_free(qs);
}
END_TEST

START_TEST(test_names_over_200_bytes_are_bad_spec)
{
	char body[2048];
	struct pf_err err;

	name_body(body, sizeof(body), 201);
	ck_assert_ptr_null(parse(body, &err));
	ck_assert_str_eq(err.code, "bad_spec");
	ck_assert_str_eq(err.at, "model");
	ck_assert_ptr_nonnull(strstr(err.message, "too long"));
}
END_TEST

/* A filter with n nested "$not": the operand of the k-th is at level k+2. */
static char *not_chain(int n)
{
	size_t size = 64 + (size_t)n * 12;
	char *body = malloc(size);
	size_t len = 0;

	ck_assert_ptr_nonnull(body);
	len += snprintf(body + len, size - len, "{\"model\":\"b\",\"filter\":");
	for (int i = 0; i < n; i++)
		len += snprintf(body + len, size - len, "{\"$not\":");
	len += snprintf(body + len, size - len, "{\"a\":1}");
	for (int i = 0; i < n; i++)
		len += snprintf(body + len, size - len, "}");
	snprintf(body + len, size - len, "}");
	return body;
}

/* n Prefetch querysets nested in each other. */
static char *prefetch_chain(int n)
{
	size_t size = 64 + (size_t)n * 64;
	char *body = malloc(size);
	size_t len = 0;

	ck_assert_ptr_nonnull(body);
	len += snprintf(body + len, size - len, "{\"model\":\"b\"");
	for (int i = 0; i < n; i++)
		len += snprintf(body + len, size - len,
				",\"prefetch_related\":[{\"lookup\":\"x\","
				"\"queryset\":{\"limit\":1");
	for (int i = 0; i < n; i++)
		len += snprintf(body + len, size - len, "}}]");
	snprintf(body + len, size - len, "}");
	return body;
}

START_TEST(test_condition_nesting_up_to_the_limit_is_accepted)
{
	char *body = not_chain(SPEC_DEFAULT_MAX_DEPTH - 2);
	struct spec_queryset *qs = parse_ok(body);
	const struct spec_cond *c = qs->filter;
	int n = 0;

	while (c->kind == SPEC_NOT) {
		c = &c->children[0];
		n++;
	}
	ck_assert_int_eq(n, SPEC_DEFAULT_MAX_DEPTH - 2);
	assert_term(c, "a", c->at);
	spec_free(qs);
	free(body);
}
END_TEST

START_TEST(test_condition_nesting_too_deep_is_bad_spec)
{
	char *body = not_chain(SPEC_DEFAULT_MAX_DEPTH - 1);
	struct pf_err err;

	ck_assert_ptr_null(parse(body, &err));
	ck_assert_int_eq(err.status, 400);
	ck_assert_str_eq(err.code, "bad_spec");
	ck_assert_ptr_nonnull(strstr(err.message, "nesting too deep"));
	ck_assert_ptr_nonnull(strstr(err.at, "filter.$not.$not"));
	free(body);
}
END_TEST

START_TEST(test_prefetch_nesting_up_to_the_limit_is_accepted)
{
	char *body = prefetch_chain(SPEC_DEFAULT_MAX_DEPTH - 1);
	struct spec_queryset *qs = parse_ok(body);

	spec_free(qs);
	free(body);
}
END_TEST

START_TEST(test_prefetch_nesting_too_deep_is_bad_spec)
{
	char *body = prefetch_chain(SPEC_DEFAULT_MAX_DEPTH);
	struct pf_err err;

	ck_assert_ptr_null(parse(body, &err));
	ck_assert_str_eq(err.code, "bad_spec");
	ck_assert_ptr_nonnull(strstr(err.message, "nesting too deep"));
	ck_assert_ptr_nonnull(strstr(err.at, "queryset.prefetch_related[0]."
					     "queryset"));
	free(body);
}
END_TEST

START_TEST(test_custom_depth_limit_counts_filter_levels)
{
	const struct spec_limits lim = {.max_depth = 2};
	const char *ok = "{\"model\":\"b\",\"filter\":{\"a\":1,\"b\":2}}";
	const char *deep = "{\"model\":\"b\",\"filter\":{\"$not\":{\"a\":1}}}";
	struct spec_queryset *qs;
	struct pf_err err;

	qs = spec_parse(ok, strlen(ok), &lim, &err);
	ck_assert_ptr_nonnull(qs);
	spec_free(qs);
	ck_assert_ptr_null(spec_parse(deep, strlen(deep), &lim, &err));
	ck_assert_str_eq(err.code, "bad_spec");
	ck_assert_str_eq(err.at, "filter.$not");
	ck_assert_ptr_nonnull(strstr(err.message, "at most 2"));
}
END_TEST

static char *lookup_list(int n)
{
	size_t size = 64 + (size_t)n * 8;
	char *body = malloc(size);
	size_t len = 0;

	ck_assert_ptr_nonnull(body);
	len += snprintf(body + len, size - len,
			"{\"model\":\"b\",\"prefetch_related\":[");
	for (int i = 0; i < n; i++)
		len += snprintf(body + len, size - len, "%s\"r%d\"",
				i ? "," : "", i);
	snprintf(body + len, size - len, "]}");
	return body;
}

START_TEST(test_lookups_up_to_the_limit_are_accepted)
{
	char *body = lookup_list(SPEC_DEFAULT_MAX_LOOKUPS);
	struct spec_queryset *qs = parse_ok(body);

	ck_assert_uint_eq(qs->nprefetch_related, SPEC_DEFAULT_MAX_LOOKUPS);
	spec_free(qs);
	free(body);
}
END_TEST

START_TEST(test_too_many_lookups_is_bad_spec)
{
	char *body = lookup_list(SPEC_DEFAULT_MAX_LOOKUPS + 1);
	struct pf_err err;
	char at[64];

	ck_assert_ptr_null(parse(body, &err));
	ck_assert_str_eq(err.code, "bad_spec");
	snprintf(at, sizeof(at), "prefetch_related[%d]",
		 SPEC_DEFAULT_MAX_LOOKUPS);
	ck_assert_str_eq(err.at, at);
	ck_assert_ptr_nonnull(strstr(err.message, "too many"));
	free(body);
}
END_TEST

START_TEST(test_lookup_limit_counts_nested_prefetches)
{
	const struct spec_limits lim = {.max_lookups = 3};
	const char *body = "{\"model\":\"b\",\"prefetch_related\":[\"a\","
			   "{\"lookup\":\"b\",\"queryset\":"
			   "{\"prefetch_related\":[\"c\",\"d\"]}}]}";
	struct pf_err err;

	ck_assert_ptr_null(spec_parse(body, strlen(body), &lim, &err));
	ck_assert_str_eq(err.code, "bad_spec");
	ck_assert_str_eq(err.at,
			 "prefetch_related[1].queryset.prefetch_related[1]");
}
END_TEST

START_TEST(test_body_is_read_up_to_len_only)
{
	const char *body = "{\"model\":\"b\"}garbage";
	struct pf_err err;
	struct spec_queryset *qs = spec_parse(body, 13, NULL, &err);

	ck_assert_ptr_nonnull(qs);
	ck_assert_str_eq(qs->model, "b");
	spec_free(qs);
}
END_TEST

START_TEST(test_spec_free_accepts_null)
{
	spec_free(NULL);
}
END_TEST

Suite *spec_suite(void)
{
	Suite *s = suite_create("spec");
	TCase *tc;

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, test_bad_body_gives_status_code_and_at_path, 0,
			    (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(tc, test_names_over_200_bytes_are_bad_spec);
	tcase_add_test(tc, test_condition_nesting_too_deep_is_bad_spec);
	tcase_add_test(tc, test_prefetch_nesting_too_deep_is_bad_spec);
	tcase_add_test(tc, test_custom_depth_limit_counts_filter_levels);
	tcase_add_test(tc, test_too_many_lookups_is_bad_spec);
	tcase_add_test(tc, test_lookup_limit_counts_nested_prefetches);
	suite_add_tcase(s, tc);

	tc = tcase_create("conditions");
	tcase_add_test(tc, test_single_key_filter_is_the_term_itself);
	tcase_add_test(tc, test_several_keys_are_an_and_in_key_order);
	tcase_add_test(tc, test_many_keys_keep_key_order);
	tcase_add_test(tc, test_empty_filter_is_an_empty_and);
	tcase_add_test(tc, test_or_and_not_build_a_tree_with_at_paths);
	tcase_add_test(tc, test_single_or_is_the_filter_root);
	tcase_add_test(tc, test_values_of_each_json_type);
	tcase_add_test(tc, test_json_text_matches_jansson_compact_dump);
	tcase_add_test(tc, test_reals_use_shortest_text_inside_json_too);
	tcase_add_test(tc, test_in_array_keeps_items_of_each_type);
	tcase_add_test(tc, test_empty_in_is_an_empty_array);
	tcase_add_test(tc, test_range_has_two_bounds_and_isnull_a_boolean);
	tcase_add_test(tc, test_condition_nesting_up_to_the_limit_is_accepted);
	suite_add_tcase(s, tc);

	tc = tcase_create("queryset");
	tcase_add_test(tc, test_minimal_queryset_has_defaults);
	tcase_add_test(tc, test_order_by_minus_means_descending);
	tcase_add_test(tc, test_empty_order_by_clears_ordering);
	tcase_add_test(tc, test_only_defer_select_related_keep_names_and_at);
	tcase_add_test(tc, test_empty_only_is_given_but_empty);
	tcase_add_test(tc, test_offset_limit_and_distinct);
	tcase_add_test(tc, test_nested_prefetch_with_queryset_and_to_attr);
	tcase_add_test(tc, test_prefetch_with_empty_queryset);
	tcase_add_test(tc, test_names_up_to_200_bytes_are_accepted);
	tcase_add_test(tc, test_prefetch_nesting_up_to_the_limit_is_accepted);
	tcase_add_test(tc, test_lookups_up_to_the_limit_are_accepted);
	tcase_add_test(tc, test_body_is_read_up_to_len_only);
	tcase_add_test(tc, test_spec_free_accepts_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("expressions");
	tcase_add_loop_test(tc, test_each_expression_form_gives_its_node, 0,
			    (int)(sizeof(expr_cases) / sizeof(expr_cases[0])));
	tcase_add_test(tc, test_annotate_keeps_key_order_and_at_paths);
	tcase_add_test(tc, test_aggregate_sets_has_aggregate_even_when_empty);
	tcase_add_test(
		tc,
		test_strings_are_literals_in_arithmetic_and_fields_elsewhere);
	tcase_add_test(tc, test_call_options_are_kept_with_at_paths);
	tcase_add_test(tc, test_case_has_whens_then_and_default_with_at_paths);
	tcase_add_test(tc, test_cast_has_one_operand_and_its_target);
	tcase_add_test(
		tc, test_exists_and_subquery_hold_a_queryset_with_outer_refs);
	tcase_add_test(tc, test_filter_value_with_an_operator_is_an_expression);
	tcase_add_test(tc, test_value_wrapper_in_a_filter_is_a_plain_literal);
	tcase_add_test(tc, test_exists_term_in_a_condition_tree);
	tcase_add_test(tc, test_values_and_values_list_keep_entries_and_at);
	tcase_add_test(tc, test_expression_nesting_up_to_the_limit_is_accepted);
	tcase_add_test(tc, test_expression_nesting_too_deep_is_bad_spec);
	tcase_add_test(tc, test_custom_depth_limit_counts_expression_levels);
	tcase_add_test(tc, test_subquery_levels_count_toward_the_depth_limit);
	tcase_add_test(tc,
		       test_errors_deep_in_expressions_free_the_partial_tree);
	suite_add_tcase(s, tc);
	return s;
}
