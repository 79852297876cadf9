/*
 * The form of expressions (DESIGN.md §6.1) and of the annotate and
 * aggregate entries that hold them (§6.3-6.5): $f, $value, $outer, calls and
 * their options, $case, $cast, $exists/$subquery, as struct spec_expr. Only
 * the JSON shape is checked: which operators exist, their arity and the
 * types they take are resolve's. Conditions, values and querysets inside an
 * expression are parsed by spec.c (see spec_int.h); the tree is freed there.
 */
#include "spec_int.h"

#include <stdlib.h>
#include <string.h>

/* The first key of v that starts with '$' (an expression's operator), or
 * NULL when v is not an object or has none. */
const char *expr_operator(json_t *v)
{
	const char *key;
	json_t *item;

	if (!json_is_object(v))
		return NULL;
	json_object_foreach (v, key, item) {
		if (key[0] == '$')
			return key;
	}
	return NULL;
}

/* resolve decides which operators exist; here a name only has to look like
 * one, so that garbage is a 400 at its key and not a 422 about a function. */
static bool is_operator_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SPEC_MAX_NAME)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '_'))
			return false;
	return true;
}

static bool is_arithmetic(const char *name)
{
	static const char *const ops[] = {"add", "sub", "mul", "div", "mod"};

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(name, ops[i]) == 0)
			return true;
	return false;
}

/* The queryset of "$exists" or "$subquery" (op), at at, one level below
 * the object holding it. */
int parse_inner_queryset(struct parser *p, const char *op, json_t *v,
			 const char *at, int depth, struct spec_queryset **out)
{
	if (!json_is_object(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"%s\" must be a queryset object, not %s",
				  op, type_name(v));
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return oom(p);
	return parse_queryset(p, v, at, QS_SUBQUERY, depth + 1, *out);
}

/*
 * The operands of a call or $cast. With allow_list, a JSON array is the
 * list form: each item one operand at "<at>[i]" (an item that is an array
 * is refused by parse_expr). Anything else is one operand at at.
 */
static int parse_operands(struct parser *p, json_t *v, const char *at,
			  int depth, enum str_mode mode, bool allow_list,
			  struct spec_expr *out)
{
	json_t *item;
	size_t i, n = 1;

	if (allow_list && json_is_array(v)) {
		out->list_form = true;
		n = json_array_size(v);
	}
	if (n == 0)
		return 0;
	out->args = calloc(n, sizeof(*out->args));
	if (!out->args)
		return oom(p);
	out->nargs = n;
	if (!out->list_form)
		return parse_expr(p, v, at, depth + 1, mode, out->args);
	json_array_foreach (v, i, item) {
		char *item_at = path_index(at, i);
		int rc;

		if (!item_at)
			return oom(p);
		rc = parse_expr(p, item, item_at, depth + 1, mode,
				&out->args[i]);
		free(item_at);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* {"$outer": "path"} is OuterRef("path"); {"$outer": {"$outer": "path"}}
 * is OuterRef(OuterRef("path")), two querysets out, which is as far as
 * DESIGN.md §6.1 goes. at is the path of the "$outer" key. */
static int parse_outer(struct parser *p, json_t *v, const char *at,
		       struct spec_expr *out)
{
	json_t *inner;
	char *inner_at;
	int rc;

	out->kind = SPEC_EX_OUTER;
	out->outer_depth = 1;
	if (!json_is_object(v))
		return get_name(p, v, at, "a field path", &out->name);
	inner = json_object_get(v, "$outer");
	if (!inner || json_object_size(v) != 1)
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"$outer\" takes a field path or "
				  "{\"$outer\": \"path\"}, not another object");
	inner_at = path_key(at, "$outer");
	if (!inner_at)
		return oom(p);
	out->outer_depth = 2;
	if (json_is_object(inner))
		rc = pf_err_set(p->err, 400, "bad_spec", inner_at,
				"\"$outer\" reaches at most two querysets out: "
				"{\"$outer\": {\"$outer\": \"path\"}}");
	else
		rc = get_name(p, inner, inner_at, "a field path", &out->name);
	free(inner_at);
	return rc;
}

/* One {"when": CONDITION, "then": ARG} of $case, at w->at; depth is the
 * $case expression's. */
static int parse_when(struct parser *p, json_t *obj, int depth,
		      struct spec_when *w)
{
	const char *key;
	json_t *v;
	char *at = NULL;
	int rc = -1;

	json_object_foreach (obj, key, v) {
		free(at);
		at = path_key(w->at, key);
		if (!at) {
			oom(p);
			goto out;
		}
		if (strcmp(key, "when") == 0) {
			w->when = calloc(1, sizeof(*w->when));
			if (!w->when) {
				oom(p);
				goto out;
			}
			if (parse_cond(p, v, at, depth + 1, w->when) < 0)
				goto out;
			/* Django: When(Q()) is a ValueError. */
			if (w->when->kind == SPEC_AND &&
			    w->when->nchildren == 0) {
				pf_err_set(p->err, 400, "bad_spec", at,
					   "An empty Q() can't be used as a "
					   "When() condition.");
				goto out;
			}
		} else if (strcmp(key, "then") == 0) {
			w->then = calloc(1, sizeof(*w->then));
			if (!w->then) {
				oom(p);
				goto out;
			}
			if (parse_expr(p, v, at, depth + 1, STR_FIELD,
				       w->then) < 0)
				goto out;
		} else {
			pf_err_set(p->err, 400, "bad_spec", at,
				   "unknown key \"%s\" in a \"$case\" entry; "
				   "expected \"when\" and \"then\"",
				   key);
			goto out;
		}
	}
	if (!w->when) {
		missing_key(p, w->at, "when",
			    "a \"$case\" entry needs \"when\"");
		goto out;
	}
	if (!w->then) {
		missing_key(p, w->at, "then",
			    "a \"$case\" entry needs \"then\"");
		goto out;
	}
	rc = 0;
out:
	free(at);
	return rc;
}

/* {"$case": [{"when": ..., "then": ...}, ...]}; at is the "$case" key's. */
static int parse_case(struct parser *p, json_t *v, const char *at, int depth,
		      struct spec_expr *out)
{
	json_t *item;
	size_t i, n;

	out->kind = SPEC_EX_CASE;
	if (!json_is_array(v) || json_array_size(v) == 0)
		return pf_err_set(
			p->err, 400, "bad_spec", at,
			"\"$case\" must be a non-empty array of "
			"{\"when\": CONDITION, \"then\": ARG}, not %s",
			json_is_array(v) ? "an empty array" : type_name(v));
	n = json_array_size(v);
	out->whens = calloc(n, sizeof(*out->whens));
	if (!out->whens)
		return oom(p);
	out->nwhens = n;
	json_array_foreach (v, i, item) {
		struct spec_when *w = &out->whens[i];

		w->at = path_index(at, i);
		if (!w->at)
			return oom(p);
		if (!json_is_object(item))
			return pf_err_set(p->err, 400, "bad_spec", w->at,
					  "expected {\"when\": CONDITION, "
					  "\"then\": ARG}, got %s",
					  type_name(item));
		if (parse_when(p, item, depth, w) < 0)
			return -1;
	}
	return 0;
}

/* {"$name": OPERAND}: a function, an aggregate or arithmetic. */
static int parse_call(struct parser *p, const char *op, json_t *v,
		      const char *at, int depth, struct spec_expr *out)
{
	const char *name = op + 1;

	out->kind = SPEC_EX_CALL;
	if (!is_operator_name(name))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"%s\" is not an operator: expected '$' and "
				  "a name of lowercase letters, digits and '_' "
				  "(\"$count\", \"$trunc_month\")",
				  op);
	if (dup_to(p, name, &out->name) < 0)
		return -1;
	return parse_operands(p, v, at, depth,
			      is_arithmetic(name) ? STR_LITERAL : STR_FIELD,
			      true, out);
}

/* The value of the operator key op, at at (the key's path). */
static int parse_operator(struct parser *p, const char *op, json_t *v,
			  const char *at, int depth, struct spec_expr *out)
{
	if (strcmp(op, "$f") == 0) {
		out->kind = SPEC_EX_FIELD;
		return get_name(p, v, at, "a field path", &out->name);
	}
	if (strcmp(op, "$value") == 0) {
		out->kind = SPEC_EX_VALUE;
		return parse_value(p, v, at, false, &out->value);
	}
	if (strcmp(op, "$outer") == 0)
		return parse_outer(p, v, at, out);
	if (strcmp(op, "$case") == 0)
		return parse_case(p, v, at, depth, out);
	if (strcmp(op, "$cast") == 0) {
		out->kind = SPEC_EX_CAST;
		return parse_operands(p, v, at, depth, STR_FIELD, false, out);
	}
	if (strcmp(op, "$exists") == 0) {
		out->kind = SPEC_EX_EXISTS;
		return parse_inner_queryset(p, op, v, at, depth, &out->query);
	}
	if (strcmp(op, "$subquery") == 0) {
		out->kind = SPEC_EX_SUBQUERY;
		return parse_inner_queryset(p, op, v, at, depth, &out->query);
	}
	return parse_call(p, op, v, at, depth, out);
}

static int parse_flag(struct parser *p, const char *key, json_t *v,
		      const char *at, bool *has, bool *out)
{
	if (!json_is_boolean(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"%s\" must be true or false, not %s", key,
				  type_name(v));
	*has = true;
	*out = json_is_true(v);
	return 0;
}

/* "default" of a call or of $case: an ARG. */
static int parse_default(struct parser *p, json_t *v, const char *at, int depth,
			 struct spec_expr *out)
{
	out->dflt = calloc(1, sizeof(*out->dflt));
	if (!out->dflt)
		return oom(p);
	return parse_expr(p, v, at, depth + 1, STR_FIELD, out->dflt);
}

/*
 * A key of an expression object other than its operator op: an option.
 * Which call takes which option is resolve's to say; a key that no
 * operator of this form takes is refused here, naming it.
 */
static int parse_option(struct parser *p, const char *op, const char *key,
			json_t *v, const char *at, int depth,
			struct spec_expr *out)
{
	const char *expected;

	switch (out->kind) {
	case SPEC_EX_CALL:
		if (strcmp(key, "distinct") == 0)
			return parse_flag(p, key, v, at, &out->has_distinct,
					  &out->distinct);
		if (strcmp(key, "sample") == 0)
			return parse_flag(p, key, v, at, &out->has_sample,
					  &out->sample);
		if (strcmp(key, "filter") == 0) {
			out->filter = calloc(1, sizeof(*out->filter));
			if (!out->filter)
				return oom(p);
			return parse_cond(p, v, at, depth + 1, out->filter);
		}
		if (strcmp(key, "default") == 0)
			return parse_default(p, v, at, depth, out);
		expected =
			"\"distinct\", \"sample\", \"filter\" or \"default\"";
		break;
	case SPEC_EX_CASE:
		if (strcmp(key, "default") == 0)
			return parse_default(p, v, at, depth, out);
		expected = "\"default\"";
		break;
	case SPEC_EX_CAST:
		if (strcmp(key, "to") == 0)
			return get_name(p, v, at, "a type name", &out->name);
		expected = "\"to\"";
		break;
	default:
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "unknown key \"%s\" in a \"%s\" expression, "
				  "which takes no options",
				  key, op);
	}
	return pf_err_set(p->err, 400, "bad_spec", at,
			  "unknown key \"%s\" in a \"%s\" expression; "
			  "expected %s",
			  key, op, expected);
}

/* An EXPR object: its one '$' key, then its options in key order. */
static int parse_expr_object(struct parser *p, json_t *obj, int depth,
			     struct spec_expr *out)
{
	const char *op = NULL, *key;
	json_t *v;
	char *at = NULL;
	int rc = -1;

	json_object_foreach (obj, key, v) {
		if (key[0] != '$')
			continue;
		if (op) {
			pf_err_set(p->err, 400, "bad_spec", out->at,
				   "two operators, \"%s\" and \"%s\", in one "
				   "expression; a literal object is written "
				   "{\"$value\": {...}}",
				   op, key);
			goto out;
		}
		op = key;
	}
	if (!op) {
		pf_err_set(p->err, 400, "bad_spec", out->at,
			   "expected an expression (an object with one "
			   "\"$\" key, such as {\"$f\": \"field\"}), got an "
			   "object without one; a literal object is written "
			   "{\"$value\": {...}}");
		goto out;
	}
	at = path_key(out->at, op);
	if (!at) {
		oom(p);
		goto out;
	}
	if (parse_operator(p, op, json_object_get(obj, op), at, depth, out) < 0)
		goto out;
	json_object_foreach (obj, key, v) {
		if (key[0] == '$')
			continue;
		free(at);
		at = path_key(out->at, key);
		if (!at) {
			oom(p);
			goto out;
		}
		if (parse_option(p, op, key, v, at, depth, out) < 0)
			goto out;
	}
	if (out->kind == SPEC_EX_CAST && !out->name) {
		missing_key(p, out->at, "to",
			    "\"$cast\" needs \"to\", the type to cast to");
		goto out;
	}
	rc = 0;
out:
	free(at);
	return rc;
}

/*
 * An expression at at (copied into out->at). An object is an EXPR and one
 * level of nesting (depth, which counts it); a string is a field path or a
 * literal by mode; other scalars are literals. An array is refused: a
 * literal array is {"$value": [...]}, so that a list of operands never
 * reads as one.
 */
int parse_expr(struct parser *p, json_t *v, const char *at, int depth,
	       enum str_mode mode, struct spec_expr *out)
{
	out->at = strdup(at);
	if (!out->at)
		return oom(p);
	if (json_is_object(v)) {
		if (depth > p->max_depth)
			return too_deep(p, at);
		return parse_expr_object(p, v, depth, out);
	}
	if (json_is_array(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "expected an expression or a scalar, got an "
				  "array; a literal array is written "
				  "{\"$value\": [...]}");
	if (json_is_string(v) && mode == STR_FIELD) {
		out->kind = SPEC_EX_FIELD;
		return get_name(p, v, at, "a field path", &out->name);
	}
	out->kind = SPEC_EX_VALUE;
	return parse_value(p, v, at, false, &out->value);
}

/* "annotate" / "aggregate" (key): {NAME: EXPR | ARG, ...} in key order,
 * each entry at "<at>.NAME", its expression one level below depth. */
int parse_annotations(struct parser *p, json_t *v, const char *key,
		      const char *at, int depth, struct spec_annotation **out,
		      size_t *nout)
{
	const char *name;
	json_t *item;
	size_t i = 0, n;

	if (!json_is_object(v))
		return pf_err_set(p->err, 400, "bad_spec", at,
				  "\"%s\" must be an object of names and "
				  "expressions, not %s",
				  key, type_name(v));
	n = json_object_size(v);
	if (n == 0)
		return 0;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return oom(p);
	*nout = n;
	json_object_foreach (v, name, item) {
		struct spec_annotation *a = &(*out)[i++];

		a->at = path_key(at, name);
		if (!a->at)
			return oom(p);
		if (check_name_text(p, name, strlen(name), a->at,
				    "an annotation name") < 0)
			return -1;
		if (dup_to(p, name, &a->name) < 0)
			return -1;
		if (parse_expr(p, item, a->at, depth + 1, STR_FIELD, &a->expr) <
		    0)
			return -1;
	}
	return 0;
}
