/*
 * spec: a request body (JSON) → struct spec_queryset (DESIGN.md §1, §6).
 * Checks the shape of the protocol only — keys, JSON types, "in"/"range"/
 * "isnull" operands, slices, names, nesting and lookup limits — and keeps
 * every name verbatim for resolve to bind against the schema. The form of
 * expressions, annotate and aggregate is spec_expr.c's (see spec_int.h).
 * jansson is used here and in spec_expr.c, nowhere else; the tree they
 * build owns plain C strings only, and spec_free here frees all of it.
 */
#include "spec_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable string for building "at" paths and compact JSON. On allocation
 * failure it sets oom and keeps s NULL-safe; the caller checks once. */
struct sbuf {
	char *s;
	size_t len;
	size_t cap;
	bool oom;
};

int oom(struct parser *p)
{
	return pf_err_set(p->err, 500, "internal", "", "out of memory");
}

int too_deep(struct parser *p, const char *at)
{
	return pf_err_set(p->err, 400, "bad_spec", at,
			  "nesting too deep (at most %d levels of conditions, "
			  "expressions and querysets)",
			  p->max_depth);
}

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	char *ns;
	size_t ncap;

	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		ncap = b->cap ? b->cap : 64;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		ns = realloc(b->s, ncap);
		if (!ns) {
			b->oom = true;
			return;
		}
		b->s = ns;
		b->cap = ncap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* Returns the built string (now owned by the caller), or NULL on OOM. */
static char *sb_take(struct sbuf *b)
{
	char *s;

	if (b->oom) {
		free(b->s);
		b->s = NULL;
		return NULL;
	}
	if (!b->s)
		sb_add(b, "", 0);
	s = b->s;
	b->s = NULL;
	return s;
}

/* "filter" + "title" → "filter.title"; "" + "limit" → "limit". */
char *path_key(const char *prefix, const char *key)
{
	struct sbuf b = {0};

	sb_str(&b, prefix);
	if (prefix[0])
		sb_add(&b, ".", 1);
	sb_str(&b, key);
	return sb_take(&b);
}

/* A required key that is absent: the error is at the path it would have
 * ("model", "values_list.fields", "annotate.x.to"). */
int missing_key(struct parser *p, const char *obj_at, const char *key,
		const char *message)
{
	char *at = path_key(obj_at, key);

	if (!at)
		return oom(p);
	pf_err_set(p->err, 400, "bad_spec", at, "%s", message);
	free(at);
	return -1;
}

/* "only" + 2 → "only[2]". */
char *path_index(const char *prefix, size_t i)
{
	struct sbuf b = {0};
	char num[32];

	snprintf(num, sizeof(num), "[%zu]", i);
	sb_str(&b, prefix);
	sb_str(&b, num);
	return sb_take(&b);
}

const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "a JSON value";
}

/*
 * The shortest text that reads back as the same double, so 0.1 stays "0.1"
 * (and equals a numeric or jsonb 0.1) instead of %.17g's
 * "0.10000000000000001". Like JavaScript and Python, it is positional when
 * the decimal exponent is in [-4, 17) ("100", "0.001") and exponential
 * otherwise ("1e+22", "2.5e-07"). JSON cannot hold NaN or infinities.
 */
static void real_text(double d, char *buf, size_t size)
{
	int prec, exp;
	const char *e;

	for (prec = 1; prec < 17; prec++) {
		snprintf(buf, size, "%.*e", prec - 1, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	snprintf(buf, size, "%.*e", prec - 1, d);
	e = strchr(buf, 'e');
	exp = e ? atoi(e + 1) : 0;
	if (exp >= -4 && exp < 17)
		snprintf(buf, size, "%.*f",
			 prec - 1 - exp > 0 ? prec - 1 - exp : 0, d);
}

static void dump_string(struct sbuf *b, const char *s, size_t n)
{
	char esc[8];

	sb_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			sb_add(b, esc, 2);
		} else if (c == '\b') {
			sb_add(b, "\\b", 2);
		} else if (c == '\f') {
			sb_add(b, "\\f", 2);
		} else if (c == '\n') {
			sb_add(b, "\\n", 2);
		} else if (c == '\r') {
			sb_add(b, "\\r", 2);
		} else if (c == '\t') {
			sb_add(b, "\\t", 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04X", c);
			sb_add(b, esc, 6);
		} else {
			sb_add(b, (const char *)&s[i], 1);
		}
	}
	sb_add(b, "\"", 1);
}

/*
 * Compact JSON, as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes it,
 * except that reals use real_text(): jansson's dumper writes %.17g, which
 * would turn {"price": 0.1} into a jsonb value that no longer matches 0.1.
 */
static void dump_json(struct sbuf *b, json_t *v)
{
	const char *key;
	json_t *item;
	size_t i;
	char num[64];
	bool first = true;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		sb_add(b, "{", 1);
		json_object_foreach (v, key, item) {
			if (!first)
				sb_add(b, ",", 1);
			first = false;
			dump_string(b, key, strlen(key));
			sb_add(b, ":", 1);
			dump_json(b, item);
		}
		sb_add(b, "}", 1);
		break;
	case JSON_ARRAY:
		sb_add(b, "[", 1);
		json_array_foreach (v, i, item) {
			if (i > 0)
				sb_add(b, ",", 1);
			dump_json(b, item);
		}
		sb_add(b, "]", 1);
		break;
	case JSON_STRING:
		dump_string(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(v));
		sb_str(b, num);
		break;
	case JSON_REAL:
		real_text(json_real_value(v), num, sizeof(num));
		sb_str(b, num);
		break;
	case JSON_TRUE:
		sb_str(b, "true");
		break;
	case JSON_FALSE:
		sb_str(b, "false");
		break;
	case JSON_NULL:
		sb_str(b, "null");
		break;
	}
}

int dup_to(struct parser *p, const char *s, char **out)
{
	*out = strdup(s);
	return *out ? 0 : oom(p);
}

/*
 * A name from the request (field, lookup, path, model, to_attr): non-empty,
 * at most SPEC_MAX_NAME bytes, without NUL. what describes the expected
 * thing for the message ("a field name").
 */
int check_name_text(struct parser *p, const char *s, size_t n, const char *at,
		    const char *what)
{
	if (n == 0)
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "expected %s, got an empty string", what);
	if (n > SPEC_MAX_NAME)
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "%s is too long (%zu bytes, at most %d)",
				  what, n, SPEC_MAX_NAME);
	if (strlen(s) != n)
		return pf_err_set(
			p->err, 400, "bad_spec", at,
			"%s must not contain a NUL character (\\u0000)", what);
	return 0;
}

/* A JSON string that passes check_name_text, copied into *out. */
int get_name(struct parser *p, json_t *v, const char *at, const char *what,
	     char **out)
{
	if (!json_is_string(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "expected %s (a non-empty string), got %s",
				  what, type_name(v));
	if (check_name_text(p, json_string_value(v), json_string_length(v), at,
			    what) < 0)
		return -1;
	return dup_to(p, json_string_value(v), out);
}

/* "only", "defer", "select_related": an array of names. */
static int parse_names(struct parser *p, json_t *v, const char *key,
		       const char *at, const char *what, const char *plural,
		       struct spec_name **out, size_t *nout)
{
	json_t *item;
	size_t i, n;

	if (!json_is_array(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"%s\" must be an array of %s, not %s", key,
				  plural, type_name(v));
	n = json_array_size(v);
	if (n == 0)
		return 0;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return oom(p);
	*nout = n;
	json_array_foreach (v, i, item) {
		struct spec_name *nm = &(*out)[i];

		nm->at = path_index(at, i);
		if (!nm->at)
			return oom(p);
		if (get_name(p, item, nm->at, what, &nm->name) < 0)
			return -1;
	}
	return 0;
}

static int parse_order_by(struct parser *p, json_t *v, const char *at,
			  struct spec_queryset *qs)
{
	json_t *item;
	size_t i, n;

	if (!json_is_array(v))
		return pf_err_set(
			p->err, 400, "bad_spec", at,
			"\"order_by\" must be an array of field names "
			"(\"field\" or \"-field\"), not %s",
			type_name(v));
	qs->has_order_by = true;
	n = json_array_size(v);
	if (n == 0)
		return 0;
	qs->order_by = calloc(n, sizeof(*qs->order_by));
	if (!qs->order_by)
		return oom(p);
	qs->norder_by = n;
	json_array_foreach (v, i, item) {
		struct spec_order *o = &qs->order_by[i];
		const char *s;
		size_t len;

		o->at = path_index(at, i);
		if (!o->at)
			return oom(p);
		if (!json_is_string(item))
			return pf_err_set(p->err, 400, "bad_spec", o->at,
					  "expected a field name (\"field\" or "
					  "\"-field\"), got %s",
					  type_name(item));
		s = json_string_value(item);
		len = json_string_length(item);
		if (len > 0 && s[0] == '-') {
			o->desc = true;
			s++;
			len--;
		}
		if (check_name_text(p, s, len, o->at,
				    "a field name after the optional '-'") < 0)
			return -1;
		if (dup_to(p, s, &o->field) < 0)
			return -1;
	}
	return 0;
}

/* "offset" and "limit": an integer >= 0. */
static int parse_slice(struct parser *p, json_t *v, const char *key,
		       const char *at, long long *out)
{
	if (!json_is_integer(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"%s\" must be an integer >= 0, not %s", key,
				  type_name(v));
	if (json_integer_value(v) < 0)
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "Negative indexing is not supported.");
	*out = json_integer_value(v);
	return 0;
}

/*
 * A filter value. Scalars keep their bind text; arrays and objects keep
 * their compact JSON text; a top-level array also keeps its items (one
 * level: a nested array or object is an item with only its JSON text).
 */
int parse_value(struct parser *p, json_t *v, const char *at, bool nested,
		struct spec_value *out)
{
	struct sbuf b = {0};
	char num[64];
	json_t *item;
	size_t i, n;

	switch (json_typeof(v)) {
	case JSON_NULL:
		out->kind = SPEC_NULL;
		return 0;
	case JSON_TRUE:
	case JSON_FALSE:
		out->kind = SPEC_BOOL;
		return dup_to(p, json_is_true(v) ? "true" : "false",
			      &out->text);
	case JSON_INTEGER:
		out->kind = SPEC_NUMBER;
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(v));
		return dup_to(p, num, &out->text);
	case JSON_REAL:
		out->kind = SPEC_NUMBER;
		out->real = true;
		real_text(json_real_value(v), num, sizeof(num));
		return dup_to(p, num, &out->text);
	case JSON_STRING:
		out->kind = SPEC_STRING;
		/* Values are bound as C strings: a NUL would cut them short
		 * (and PostgreSQL text cannot hold one anyway). */
		if (strlen(json_string_value(v)) != json_string_length(v))
			return pf_err_set(p->err, 400, "bad_spec", at,
					  "a string value must not contain a "
					  "NUL character (\\u0000)");
		return dup_to(p, json_string_value(v), &out->text);
	case JSON_ARRAY:
	case JSON_OBJECT:
		out->kind = json_is_array(v) ? SPEC_ARRAY : SPEC_OBJECT;
		dump_json(&b, v);
		out->text = sb_take(&b);
		if (!out->text)
			return oom(p);
		break;
	}
	if (out->kind != SPEC_ARRAY || nested)
		return 0;
	n = json_array_size(v);
	if (n == 0)
		return 0;
	out->items = calloc(n, sizeof(*out->items));
	if (!out->items)
		return oom(p);
	out->nitems = n;
	json_array_foreach (v, i, item) {
		char *item_at = path_index(at, i);
		int rc;

		if (!item_at)
			return oom(p);
		rc = parse_value(p, item, item_at, true, &out->items[i]);
		free(item_at);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_scalar(const json_t *v)
{
	return !json_is_array(v) && !json_is_object(v);
}

/* ---- conditions ---- */

/* The operands that "in", "range" and "isnull" need: an expression is
 * refused for them, as spec cannot tell what it evaluates to. */
static int check_term_value(struct parser *p, const char *key, json_t *v,
			    const char *op, const char *at)
{
	bool expr = op != NULL;
	const char *what = expr ? "an expression" : type_name(v);

	/* id__in=Subquery(...): the one expression "in" takes */
	if (ends_with(key, "__in") && op && strcmp(op, "$subquery") == 0)
		return 0;
	if (ends_with(key, "__in") && (expr || !json_is_array(v)))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "'in' needs an array of values, not %s",
				  what);
	if (ends_with(key, "__range") &&
	    (expr || !json_is_array(v) || json_array_size(v) != 2 ||
	     !is_scalar(json_array_get(v, 0)) ||
	     !is_scalar(json_array_get(v, 1))))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "'range' needs [low, high]: an array of "
				  "exactly two scalar values");
	if (ends_with(key, "__isnull") && (expr || !json_is_boolean(v)))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "'isnull' needs true or false, not %s", what);
	return 0;
}

/*
 * A term of the condition object at depth. Its value is a literal, or an
 * expression when it is an object with a '$' key (DESIGN.md §6.1), one
 * level deeper. {"$value": X} alone is X as a literal, so that a jsonb
 * column can be compared with any object.
 */
static int parse_term(struct parser *p, const char *key, json_t *v, int depth,
		      struct spec_cond *out)
{
	const char *op = expr_operator(v);
	char *value_at = NULL;
	int rc = -1;

	out->kind = SPEC_TERM;
	if (check_name_text(p, key, strlen(key), out->at, "a lookup") < 0)
		return -1;
	if (op && strcmp(op, "$value") == 0 && json_object_size(v) == 1) {
		v = json_object_get(v, op);
		op = NULL;
		value_at = path_key(out->at, "$value");
		if (!value_at)
			return oom(p);
	}
	if (check_term_value(p, key, v, op, out->at) < 0)
		goto out;
	if (dup_to(p, key, &out->lookup) < 0)
		goto out;
	if (!op) {
		rc = parse_value(p, v, value_at ? value_at : out->at, false,
				 &out->value);
		goto out;
	}
	out->rhs = calloc(1, sizeof(*out->rhs));
	if (!out->rhs) {
		oom(p);
		goto out;
	}
	rc = parse_expr(p, v, out->at, depth + 1, STR_FIELD, out->rhs);
out:
	free(value_at);
	return rc;
}

/* "$and" / "$or": an array of conditions. */
static int parse_cond_list(struct parser *p, const char *key, json_t *v,
			   int depth, struct spec_cond *out)
{
	json_t *item;
	size_t i, n;

	out->kind = strcmp(key, "$or") == 0 ? SPEC_OR : SPEC_AND;
	if (!json_is_array(v))
		return pf_err_set(p->err, 400, "bad_spec", out->at,
				  "\"%s\" must be an array of condition "
				  "objects, not %s",
				  key, type_name(v));
	n = json_array_size(v);
	if (n == 0 && out->kind == SPEC_OR)
		return pf_err_set(p->err, 400, "bad_spec", out->at,
				  "\"$or\" needs at least one condition");
	if (n == 0)
		return 0;
	out->children = calloc(n, sizeof(*out->children));
	if (!out->children)
		return oom(p);
	out->nchildren = n;
	json_array_foreach (v, i, item) {
		char *item_at = path_index(out->at, i);
		int rc;

		if (!item_at)
			return oom(p);
		rc = parse_cond(p, item, item_at, depth + 1, &out->children[i]);
		free(item_at);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* One key of a condition object: a term or "$and"/"$or"/"$not"/"$exists". */
static int parse_cond_key(struct parser *p, const char *obj_at, const char *key,
			  json_t *v, int depth, struct spec_cond *out)
{
	out->at = path_key(obj_at, key);
	if (!out->at)
		return oom(p);
	if (key[0] != '$')
		return parse_term(p, key, v, depth, out);
	if (strcmp(key, "$and") == 0 || strcmp(key, "$or") == 0)
		return parse_cond_list(p, key, v, depth, out);
	if (strcmp(key, "$not") == 0) {
		out->kind = SPEC_NOT;
		out->children = calloc(1, sizeof(*out->children));
		if (!out->children)
			return oom(p);
		out->nchildren = 1;
		return parse_cond(p, v, out->at, depth + 1, out->children);
	}
	if (strcmp(key, "$exists") == 0) {
		out->kind = SPEC_EXISTS;
		return parse_inner_queryset(p, key, v, out->at, depth,
					    &out->exists);
	}
	return pf_err_set(p->err, 400, "bad_spec", out->at,
			  "unknown key \"%s\" in condition; expected a lookup "
			  "or one of \"$and\", \"$or\", \"$not\", "
			  "\"$exists\"",
			  key);
}

/*
 * A CONDITION object at depth. One key → that node itself; several → a
 * SPEC_AND of them in key order (jansson 2.14 iterates objects in insertion
 * order); none → an empty SPEC_AND, i.e. no condition.
 */
int parse_cond(struct parser *p, json_t *v, const char *at, int depth,
	       struct spec_cond *out)
{
	const char *key;
	json_t *item;
	size_t i = 0, n;

	if (depth > p->max_depth)
		return too_deep(p, at);
	if (!json_is_object(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "expected a condition (an object of "
				  "lookups), got %s",
				  type_name(v));
	n = json_object_size(v);
	if (n == 1) {
		void *it = json_object_iter(v);

		return parse_cond_key(p, at, json_object_iter_key(it),
				      json_object_iter_value(it), depth, out);
	}
	out->kind = SPEC_AND;
	out->at = strdup(at);
	if (!out->at)
		return oom(p);
	if (n == 0)
		return 0;
	out->children = calloc(n, sizeof(*out->children));
	if (!out->children)
		return oom(p);
	out->nchildren = n;
	json_object_foreach (v, key, item) {
		if (parse_cond_key(p, at, key, item, depth, &out->children[i]) <
		    0)
			return -1;
		i++;
	}
	return 0;
}

/* "filter" / "exclude": a heap condition tree in *out. */
static int parse_filter(struct parser *p, json_t *v, const char *at, int depth,
			struct spec_cond **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return oom(p);
	return parse_cond(p, v, at, depth + 1, *out);
}

static int parse_prefetch_object(struct parser *p, json_t *obj, int depth,
				 struct spec_prefetch *pf)
{
	const char *key;
	json_t *v;
	char *at = NULL;
	int rc = -1;

	json_object_foreach (obj, key, v) {
		free(at);
		at = path_key(pf->at, key);
		if (!at) {
			oom(p);
			goto out;
		}
		if (strcmp(key, "lookup") == 0) {
			if (get_name(p, v, at, "a lookup", &pf->lookup) < 0)
				goto out;
		} else if (strcmp(key, "to_attr") == 0) {
			if (get_name(p, v, at, "an attribute name",
				     &pf->to_attr) < 0)
				goto out;
		} else if (strcmp(key, "queryset") == 0) {
			if (!json_is_object(v)) {
				pf_err_set(p->err, 400, "bad_spec", at,
					   "\"queryset\" must be a queryset "
					   "object, not %s",
					   type_name(v));
				goto out;
			}
			pf->queryset = calloc(1, sizeof(*pf->queryset));
			if (!pf->queryset) {
				oom(p);
				goto out;
			}
			if (parse_queryset(p, v, at, QS_PREFETCH, depth + 1,
					   pf->queryset) < 0)
				goto out;
		} else {
			pf_err_set(p->err, 400, "bad_spec", at,
				   "unknown key \"%s\" in Prefetch; expected "
				   "\"lookup\", \"queryset\" or \"to_attr\"",
				   key);
			goto out;
		}
	}
	if (!pf->lookup) {
		pf_err_set(p->err, 400, "bad_spec", pf->at,
			   "a Prefetch object needs \"lookup\"");
		goto out;
	}
	rc = 0;
out:
	free(at);
	return rc;
}

static int parse_prefetch_related(struct parser *p, json_t *v, const char *at,
				  int depth, struct spec_queryset *qs)
{
	json_t *item;
	size_t i, n;

	if (!json_is_array(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"prefetch_related\" must be an array of "
				  "lookups, not %s",
				  type_name(v));
	n = json_array_size(v);
	if (n == 0)
		return 0;
	qs->prefetch_related = calloc(n, sizeof(*qs->prefetch_related));
	if (!qs->prefetch_related)
		return oom(p);
	qs->nprefetch_related = n;
	json_array_foreach (v, i, item) {
		struct spec_prefetch *pf = &qs->prefetch_related[i];

		pf->at = path_index(at, i);
		if (!pf->at)
			return oom(p);
		if (++p->nlookups > p->max_lookups)
			return pf_err_set(p->err, 400, "bad_spec", pf->at,
					  "too many prefetch_related lookups "
					  "(at most %d in a request)",
					  p->max_lookups);
		if (json_is_string(item)) {
			if (get_name(p, item, pf->at, "a lookup", &pf->lookup) <
			    0)
				return -1;
		} else if (json_is_object(item)) {
			if (parse_prefetch_object(p, item, depth, pf) < 0)
				return -1;
		} else {
			return pf_err_set(p->err, 400, "bad_spec", pf->at,
					  "expected a lookup (a string) or a "
					  "Prefetch object, got %s",
					  type_name(item));
		}
	}
	return 0;
}

static int parse_values(struct parser *p, json_t *v, const char *at,
			struct spec_queryset *qs)
{
	/* Checked here, not after the loop: the second would leak the first. */
	if (qs->has_values)
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"values\" and \"values_list\" cannot both "
				  "be given");
	qs->has_values = true;
	return parse_names(p, v, "values", at, "a field or annotation name",
			   "field or annotation names", &qs->values,
			   &qs->nvalues);
}

/* "values_list": {"fields": [ENTRY, ...], "flat": bool}; "fields" is
 * required ([] is Django's values_list() of every field). */
static int parse_values_list(struct parser *p, json_t *v, const char *at,
			     struct spec_queryset *qs)
{
	const char *key;
	json_t *item;
	char *key_at = NULL;
	bool has_fields = false;
	int rc = -1;

	if (qs->has_values)
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"values\" and \"values_list\" cannot both "
				  "be given");
	if (!json_is_object(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"values_list\" must be an object "
				  "{\"fields\": [...], \"flat\": bool}, not %s",
				  type_name(v));
	qs->has_values = true;
	qs->values_list = true;
	json_object_foreach (v, key, item) {
		free(key_at);
		key_at = path_key(at, key);
		if (!key_at) {
			oom(p);
			goto out;
		}
		if (strcmp(key, "fields") == 0) {
			has_fields = true;
			if (parse_names(p, item, key, key_at,
					"a field or annotation name",
					"field or annotation names",
					&qs->values, &qs->nvalues) < 0)
				goto out;
		} else if (strcmp(key, "flat") == 0) {
			if (!json_is_boolean(item)) {
				pf_err_set(p->err, 400, "bad_spec", key_at,
					   "\"flat\" must be true or false, "
					   "not %s",
					   type_name(item));
				goto out;
			}
			qs->flat = json_is_true(item);
		} else {
			pf_err_set(p->err, 400, "bad_spec", key_at,
				   "unknown key \"%s\" in values_list; "
				   "expected \"fields\" or \"flat\"",
				   key);
			goto out;
		}
	}
	if (!has_fields) {
		missing_key(p, at, "fields",
			    "\"values_list\" needs \"fields\"");
		goto out;
	}
	/* Django allows flat with no fields (the pk); DESIGN.md §6.4 does
	 * not, as "fields": [] would then be two different things. */
	if (qs->flat && qs->nvalues != 1) {
		missing_key(p, at, "flat",
			    qs->nvalues > 1
				    ? "'flat' is not valid when values_list is "
				      "called with more than one field."
				    : "'flat' needs exactly one entry in "
				      "\"fields\"");
		goto out;
	}
	rc = 0;
out:
	free(key_at);
	return rc;
}

static int parse_queryset_key(struct parser *p, const char *key, json_t *v,
			      const char *at, enum qs_place place, int depth,
			      struct spec_queryset *qs)
{
	if (strcmp(key, "model") == 0)
		return get_name(p, v, at, "a model name", &qs->model);
	if (strcmp(key, "only") == 0) {
		qs->has_only = true;
		return parse_names(p, v, key, at, "a field name", "field names",
				   &qs->only, &qs->nonly);
	}
	if (strcmp(key, "defer") == 0)
		return parse_names(p, v, key, at, "a field name", "field names",
				   &qs->defer, &qs->ndefer);
	if (strcmp(key, "filter") == 0)
		return parse_filter(p, v, at, depth, &qs->filter);
	if (strcmp(key, "exclude") == 0)
		return parse_filter(p, v, at, depth, &qs->exclude);
	if (strcmp(key, "order_by") == 0)
		return parse_order_by(p, v, at, qs);
	if (strcmp(key, "distinct") == 0) {
		if (!json_is_boolean(v))
			return pf_err_set(p->err, 400, "bad_spec", at,
					  "\"distinct\" must be true or false, "
					  "not %s",
					  type_name(v));
		qs->distinct = json_is_true(v);
		return 0;
	}
	if (strcmp(key, "offset") == 0)
		return parse_slice(p, v, key, at, &qs->offset);
	if (strcmp(key, "limit") == 0) {
		qs->has_limit = true;
		return parse_slice(p, v, key, at, &qs->limit);
	}
	if (strcmp(key, "select_related") == 0)
		return parse_names(p, v, key, at, "a relation path",
				   "relation paths", &qs->select_related,
				   &qs->nselect_related);
	if (strcmp(key, "prefetch_related") == 0)
		return parse_prefetch_related(p, v, at, depth, qs);
	if (strcmp(key, "annotate") == 0)
		return parse_annotations(p, v, key, at, depth, &qs->annotate,
					 &qs->nannotate);
	if (strcmp(key, "aggregate") == 0) {
		if (place != QS_TOP)
			return pf_err_set(p->err, 400, "bad_spec", at,
					  "\"aggregate\" is allowed in the "
					  "top-level queryset only, not in %s",
					  place == QS_PREFETCH
						  ? "a Prefetch queryset"
						  : "a subquery");
		qs->has_aggregate = true;
		return parse_annotations(p, v, key, at, depth, &qs->aggregate,
					 &qs->naggregate);
	}
	if (strcmp(key, "values") == 0)
		return parse_values(p, v, at, qs);
	if (strcmp(key, "values_list") == 0)
		return parse_values_list(p, v, at, qs);
	return pf_err_set(p->err, 400, "bad_spec", at,
			  "unknown key \"%s\" in queryset; expected one of "
			  "model, only, defer, filter, exclude, order_by, "
			  "distinct, offset, limit, select_related, "
			  "prefetch_related, annotate, aggregate, values, "
			  "values_list",
			  key);
}

/* Checks between keys, once all are parsed. */
static int check_queryset(struct parser *p, json_t *obj, enum qs_place place,
			  struct spec_queryset *qs)
{
	const char *vkey = qs->values_list ? "values_list" : "values";
	const char *other = json_object_get(obj, "only") ? "only" : "defer";
	char *at;

	if (place != QS_PREFETCH && !qs->model)
		return missing_key(
			p, qs->at, "model",
			place == QS_TOP ? "\"model\" is required in the "
					  "top-level queryset"
					: "\"model\" is required in the "
					  "queryset of $exists and $subquery");
	if (!qs->has_values || !json_object_get(obj, other))
		return 0;
	at = path_key(qs->at, vkey);
	if (!at)
		return oom(p);
	pf_err_set(p->err, 400, "bad_spec", at,
		   "\"%s\" cannot be combined with \"%s\": the entries "
		   "of \"%s\" are the fields returned",
		   vkey, other, vkey);
	free(at);
	return -1;
}

/* Fills qs (zeroed by the caller; on error it may be partly filled and
 * spec_free-able). depth counts this queryset: 1 at the top. */
int parse_queryset(struct parser *p, json_t *obj, const char *at,
		   enum qs_place place, int depth, struct spec_queryset *qs)
{
	const char *key;
	json_t *v;
	char *key_at;
	int rc;

	qs->at = strdup(at);
	if (!qs->at)
		return oom(p);
	if (depth > p->max_depth)
		return too_deep(p, at);
	json_object_foreach (obj, key, v) {
		key_at = path_key(at, key);
		if (!key_at)
			return oom(p);
		rc = parse_queryset_key(p, key, v, key_at, place, depth, qs);
		free(key_at);
		if (rc < 0)
			return -1;
	}
	return check_queryset(p, obj, place, qs);
}

struct spec_queryset *spec_parse(const char *body, size_t len,
				 const struct spec_limits *limits,
				 struct pf_err *err)
{
	struct parser p = {
		.err = err,
		.max_depth = SPEC_DEFAULT_MAX_DEPTH,
		.max_lookups = SPEC_DEFAULT_MAX_LOOKUPS,
	};
	struct spec_queryset *qs = NULL;
	json_error_t jerr;
	json_t *root;

	if (limits && limits->max_depth > 0)
		p.max_depth = limits->max_depth;
	if (limits && limits->max_lookups > 0)
		p.max_lookups = limits->max_lookups;

	if (len == 0) {
		pf_err_set(err, 400, "bad_json", "",
			   "the body is empty: POST a queryset as JSON");
		return NULL;
	}
	/* JSON_ALLOW_NUL lets "\u0000" in a string through so that it is
	 * reported as bad_spec at its path rather than as unparseable;
	 * JSON_DECODE_ANY lets a scalar body through to say what it is. */
	root = json_loadb(body, len,
			  JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL |
				  JSON_DECODE_ANY,
			  &jerr);
	if (!root) {
		if (json_error_code(&jerr) == json_error_numeric_overflow)
			pf_err_set(err, 400, "bad_json", "",
				   "number out of range at line %d, column "
				   "%d: %s (integers must fit in 64 bits; send "
				   "larger ones as strings)",
				   jerr.line, jerr.column, jerr.text);
		else
			pf_err_set(err, 400, "bad_json", "",
				   "the body is not valid JSON: %s (line %d, "
				   "column %d)",
				   jerr.text, jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(root)) {
		pf_err_set(err, 400, "bad_json", "",
			   "the body must be a JSON object (a queryset), "
			   "not %s",
			   type_name(root));
		goto fail;
	}
	qs = calloc(1, sizeof(*qs));
	if (!qs) {
		oom(&p);
		goto fail;
	}
	if (parse_queryset(&p, root, "", QS_TOP, 1, qs) < 0)
		goto fail;
	json_decref(root);
	return qs;
fail:
	spec_free(qs);
	json_decref(root);
	return NULL;
}

static void value_cleanup(struct spec_value *v)
{
	for (size_t i = 0; i < v->nitems; i++)
		value_cleanup(&v->items[i]);
	free(v->items);
	free(v->text);
}

static void expr_free(struct spec_expr *e);

static void cond_cleanup(struct spec_cond *c)
{
	for (size_t i = 0; i < c->nchildren; i++)
		cond_cleanup(&c->children[i]);
	free(c->children);
	value_cleanup(&c->value);
	expr_free(c->rhs);
	spec_free(c->exists);
	free(c->lookup);
	free(c->at);
}

static void cond_free(struct spec_cond *c)
{
	if (!c)
		return;
	cond_cleanup(c);
	free(c);
}

static void expr_cleanup(struct spec_expr *e)
{
	for (size_t i = 0; i < e->nargs; i++)
		expr_cleanup(&e->args[i]);
	free(e->args);
	for (size_t i = 0; i < e->nwhens; i++) {
		cond_free(e->whens[i].when);
		expr_free(e->whens[i].then);
		free(e->whens[i].at);
	}
	free(e->whens);
	cond_free(e->filter);
	expr_free(e->dflt);
	spec_free(e->query);
	value_cleanup(&e->value);
	free(e->name);
	free(e->at);
}

static void expr_free(struct spec_expr *e)
{
	if (!e)
		return;
	expr_cleanup(e);
	free(e);
}

static void annotations_free(struct spec_annotation *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		expr_cleanup(&a[i].expr);
		free(a[i].name);
		free(a[i].at);
	}
	free(a);
}

static void names_free(struct spec_name *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(names[i].name);
		free(names[i].at);
	}
	free(names);
}

void spec_free(struct spec_queryset *qs)
{
	if (!qs)
		return;
	names_free(qs->only, qs->nonly);
	names_free(qs->defer, qs->ndefer);
	names_free(qs->select_related, qs->nselect_related);
	names_free(qs->values, qs->nvalues);
	annotations_free(qs->annotate, qs->nannotate);
	annotations_free(qs->aggregate, qs->naggregate);
	cond_free(qs->filter);
	cond_free(qs->exclude);
	for (size_t i = 0; i < qs->norder_by; i++) {
		free(qs->order_by[i].field);
		free(qs->order_by[i].at);
	}
	free(qs->order_by);
	for (size_t i = 0; i < qs->nprefetch_related; i++) {
		struct spec_prefetch *pf = &qs->prefetch_related[i];

		free(pf->lookup);
		free(pf->to_attr);
		free(pf->at);
		spec_free(pf->queryset);
	}
	free(qs->prefetch_related);
	free(qs->model);
	free(qs->at);
	free(qs);
}
