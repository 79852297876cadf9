/*
 * The object graph of one request (see graph.h): the PGresult of every query,
 * the objects of each node (computed on demand, cached), one key hash per
 * keyed query (key text -> its rows in result order), and the JSON writer.
 * Values go straight from the PGresults into space reserved in the evbuffer:
 * no jansson tree, no staging copy, no allocation per value or per row.
 */
#include "graph.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The objects of a node: rows of its src result, in order. all = every row
 * (rows is NULL then), so the main result needs no index array. */
struct objs {
	bool known;
	bool all;
	int *rows;
	size_t n;
};

/* Key text -> rows of a result, open addressing. head/tail hold row + 1
 * (0 = empty slot) and next chains the rows of one key in result order, so
 * building it costs three arrays and no allocation per key. */
struct keyhash {
	bool built;
	size_t mask;
	int *head;
	int *tail;
	int *next;
};

/* A JSON key ready to write: ",\"name\":" escaped once per plan; the first
 * member of an object skips the comma. */
struct jkey {
	char *s;
	size_t len;
};

/* Output goes straight into space reserved at the end of the evbuffer
 * (evbuffer_reserve_space), chunk bytes or more at a time, committed when
 * full and at the end: no evbuffer call per token (a brace, a key, a value:
 * a result writes millions) and no copy through a staging buffer. Nothing
 * else may write to the evbuffer meanwhile. p and end bound the free part
 * of the reservation; with nothing reserved (before the first byte, after
 * a failure) both point at no_space, so that the fast path of sink_put
 * needs no other test. */
#define SINK_CHUNK 16384

struct sink {
	struct evbuffer *out;
	struct evbuffer_iovec vec; /* the reservation (iov_base NULL: none) */
	char *p;
	char *end;
	size_t chunk; /* bytes to reserve at least */
	int failed;
};

static char no_space[1];

struct node_keys {
	struct jkey *fields;
	struct jkey *edges;
	int parent_edge; /* edge of the parent node leading here, or -1 */
};

struct graph {
	const struct plan *plan;
	PGresult **res;
	struct keyhash *hash; /* per query */
	struct objs *objs;    /* per node */
	struct node_keys *keys;
	long rows;
};

/* The (node, row) pairs being written, root first: EDGE_BACKREF writes the
 * entry below the top. */
struct frame {
	int node;
	int row;
};

struct writer {
	struct graph *g;
	struct frame *stack;
	size_t depth;
	size_t cap;
	int failed; /* out of memory */
	struct sink sink;
};

/* ---- output ---- */

/* chunk: the bytes to reserve at a time; what a small write needs, so that
 * it takes no more of the evbuffer than that (a reservation larger than
 * what is left in its last chain starts a new chain). */
static void sink_init(struct sink *k, struct evbuffer *out, size_t chunk)
{
	k->out = out;
	k->vec.iov_base = NULL;
	k->p = k->end = no_space;
	k->chunk = chunk;
	k->failed = 0;
}

/* Hands the bytes written so far to the evbuffer (the rest of the
 * reservation goes back to it). */
static void sink_flush(struct sink *k)
{
	if (k->vec.iov_base) {
		k->vec.iov_len = (size_t)(k->p - (char *)k->vec.iov_base);
		if (evbuffer_commit_space(k->out, &k->vec, 1) < 0)
			k->failed = -1;
	}
	k->vec.iov_base = NULL;
	k->p = k->end = no_space;
}

/* The rare case of sink_put: the reservation is full, or there is none
 * yet. Fills what is left of it, commits it, and reserves room for the
 * rest: chunk bytes, or more for a longer value. Kept out of line so
 * that the fast path below stays small enough to inline everywhere. */
static void sink_put_slow(struct sink *k, const char *s, size_t len)
{
	size_t room = (size_t)(k->end - k->p);
	size_t want = len - room > k->chunk ? len - room : k->chunk;

	memcpy(k->p, s, room);
	k->p += room;
	sink_flush(k);
	if (k->failed ||
	    evbuffer_reserve_space(k->out, (ev_ssize_t)want, &k->vec, 1) != 1) {
		k->failed = -1;
		k->vec.iov_base = NULL;
		return;
	}
	k->p = k->vec.iov_base;
	k->end = k->p + k->vec.iov_len;
	memcpy(k->p, s + room, len - room);
	k->p += len - room;
}

/* Inline: the writer calls this for every brace, key and value, and nearly
 * always the bytes fit (a short memcpy, a store for constant lengths). */
static inline void sink_put(struct sink *k, const char *s, size_t len)
{
	if (len <= (size_t)(k->end - k->p)) {
		memcpy(k->p, s, len);
		k->p += len;
		return;
	}
	sink_put_slow(k, s, len);
}

/* ---- escaping ---- */

/* escape_json() of PostgreSQL: the two-character escapes, \u00xx (lower-case
 * hex) for the other control characters, every other byte as is (UTF-8
 * and DEL included). */
static bool needs_escape(unsigned char c)
{
	return c < 0x20 || c == '"' || c == '\\';
}

/* Writes the escape of c (needs_escape) into buf; returns its length. */
static size_t escape_of(unsigned char c, char buf[6])
{
	static const char hex[] = "0123456789abcdef";
	char short_form = 0;

	switch (c) {
	case '"':
	case '\\':
		short_form = (char)c;
		break;
	case '\b':
		short_form = 'b';
		break;
	case '\f':
		short_form = 'f';
		break;
	case '\n':
		short_form = 'n';
		break;
	case '\r':
		short_form = 'r';
		break;
	case '\t':
		short_form = 't';
		break;
	}
	buf[0] = '\\';
	if (short_form) {
		buf[1] = short_form;
		return 2;
	}
	memcpy(buf + 1, "u00", 3);
	buf[4] = hex[c >> 4];
	buf[5] = hex[c & 15];
	return 6;
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Whether any of the 8 bytes of x needs_escape, all 8 at once (the "has a
 * byte less than n / equal to zero" tricks of Bit Twiddling Hacks). Only
 * bytes below 0x80 can need escaping, and & ~x keeps their high bits. In
 * such a byte, x - 0x20 sets the high bit when the byte is below 0x20, and
 * (x ^ '"') - 1 when it is '"' (0 - 1 = 0xff); likewise '\\'. A borrow out
 * of a byte that matched may flag the bytes above it too, but never
 * without a real match: the yes/no answer is exact, whatever the byte order
 * of the load, and next_escape finds the byte itself one byte at a time. */
static bool word_needs_escape(uint64_t x)
{
	uint64_t below = x - ONES * 0x20;
	uint64_t quote = (x ^ (ONES * '"')) - ONES;
	uint64_t bslash = (x ^ (ONES * '\\')) - ONES;

	return ((below | quote | bslash) & ~x & HIGHS) != 0;
}

/* The first byte at or after i that needs escaping, or len. Skips clean
 * words 8 bytes at a time (memcpy: s need not be aligned), then finds the
 * byte within the word, or in the last few bytes, one at a time. */
static size_t next_escape(const char *s, size_t len, size_t i)
{
	for (; len - i >= 8; i += 8) {
		uint64_t x;

		memcpy(&x, s + i, 8);
		if (word_needs_escape(x))
			break;
	}
	while (i < len && !needs_escape((unsigned char)s[i]))
		i++;
	return i;
}

/* s as a JSON string: each clean run is one sink_put. */
static void put_string(struct sink *k, const char *s, size_t len)
{
	size_t start = 0, i;

	sink_put(k, "\"", 1);
	while ((i = next_escape(s, len, start)) < len) {
		char buf[6];

		sink_put(k, s + start, i - start);
		sink_put(k, buf, escape_of((unsigned char)s[i], buf));
		start = i + 1;
	}
	sink_put(k, s + start, len - start);
	sink_put(k, "\"", 1);
}

void graph_write_string(struct evbuffer *out, const char *s, size_t len)
{
	struct sink k;

	sink_init(&k, out, len + 2); /* enough unless s needs escapes */
	put_string(&k, s, len);
	sink_flush(&k);
}

/*
 * The text and length of a value; false for SQL NULL. Two libpq calls
 * rather than three (PQgetisnull, PQgetvalue, PQgetlength), and this runs
 * for every value written: PQgetlength reads a NULL's length as 0
 * (fe-exec.c: NULL_LEN gives 0), so only an empty value can be NULL and
 * only then is PQgetisnull asked.
 */
static bool cell(const PGresult *res, int row, int col, const char **v,
		 size_t *len)
{
	*len = (size_t)PQgetlength(res, row, col);
	if (*len == 0 && PQgetisnull(res, row, col))
		return false;
	*v = PQgetvalue(res, row, col);
	return true;
}

static size_t skip_digits(const char *s, size_t len, size_t i)
{
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	return i;
}

/* PostgreSQL's IsValidJsonNumber: what to_json() leaves bare. NaN and
 * Infinity are not JSON numbers and get quoted. */
static bool is_json_number(const char *s, size_t len)
{
	size_t i = 0, j;

	if (i < len && s[i] == '-')
		i++;
	if (i < len && s[i] == '0') {
		i++;
	} else {
		j = skip_digits(s, len, i);
		if (j == i)
			return false;
		i = j;
	}
	if (i < len && s[i] == '.') {
		j = skip_digits(s, len, i + 1);
		if (j == i + 1)
			return false;
		i = j;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		j = skip_digits(s, len, i);
		if (j == i)
			return false;
		i = j;
	}
	return i == len;
}

static void put_value(struct sink *k, const PGresult *res, int row, int col,
		      enum schema_render render)
{
	const char *v;
	size_t len;

	if (!cell(res, row, col, &v, &len)) {
		sink_put(k, "null", 4);
		return;
	}
	switch (render) {
	case RENDER_NUMBER:
		if (is_json_number(v, len))
			sink_put(k, v, len);
		else
			put_string(k, v, len);
		return;
	case RENDER_BOOL:
		if (v[0] == 't')
			sink_put(k, "true", 4);
		else
			sink_put(k, "false", 5);
		return;
	case RENDER_STRING:
		put_string(k, v, len);
		return;
	case RENDER_RAW:
	case RENDER_TO_JSON:
		break;
	}
	sink_put(k, v, len);
}

/* ---- construction ---- */

/* A JSON key as written before a value: `,"name":` escaped once per plan
 * (the writer skips the comma for a first member). */
static int make_key(struct jkey *key, const char *name)
{
	size_t len = strlen(name);
	char *s = malloc(len * 6 + 4), *o = s;

	if (!s)
		return -1;
	*o++ = ',';
	*o++ = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (needs_escape(c))
			o += escape_of(c, o);
		else
			*o++ = (char)c;
	}
	*o++ = '"';
	*o++ = ':';
	key->s = s;
	key->len = (size_t)(o - s);
	return 0;
}

static int find_parent_edge(const struct plan *p, int node)
{
	int parent = p->nodes[node].parent;

	if (parent < 0)
		return -1;
	for (size_t e = 0; e < p->nodes[parent].nedges; e++)
		if (p->nodes[parent].edges[e].node == node)
			return (int)e;
	return -1;
}

static int init_node_keys(struct graph *g, size_t n)
{
	const struct plan_node *node = &g->plan->nodes[n];
	struct node_keys *k = &g->keys[n];

	k->parent_edge = find_parent_edge(g->plan, (int)n);
	k->fields = calloc(node->nfields + 1, sizeof(*k->fields));
	k->edges = calloc(node->nedges + 1, sizeof(*k->edges));
	if (!k->fields || !k->edges)
		return -1;
	for (size_t i = 0; i < node->nfields; i++)
		if (make_key(&k->fields[i], node->fields[i].name))
			return -1;
	for (size_t i = 0; i < node->nedges; i++)
		if (make_key(&k->edges[i], node->edges[i].name))
			return -1;
	return 0;
}

struct graph *graph_new(const struct plan *plan)
{
	struct graph *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->plan = plan;
	g->res = calloc(plan->nqueries + 1, sizeof(*g->res));
	g->hash = calloc(plan->nqueries + 1, sizeof(*g->hash));
	g->objs = calloc(plan->nnodes + 1, sizeof(*g->objs));
	g->keys = calloc(plan->nnodes + 1, sizeof(*g->keys));
	if (!g->res || !g->hash || !g->objs || !g->keys)
		goto fail;
	for (size_t n = 0; n < plan->nnodes; n++)
		if (init_node_keys(g, n))
			goto fail;
	return g;
fail:
	graph_free(g);
	return NULL;
}

static void hash_cleanup(struct keyhash *h)
{
	free(h->head);
	free(h->tail);
	free(h->next);
	memset(h, 0, sizeof(*h));
}

void graph_free(struct graph *g)
{
	if (!g)
		return;
	for (size_t q = 0; g->res && q < g->plan->nqueries; q++)
		PQclear(g->res[q]);
	for (size_t q = 0; g->hash && q < g->plan->nqueries; q++)
		hash_cleanup(&g->hash[q]);
	for (size_t n = 0; g->objs && n < g->plan->nnodes; n++)
		free(g->objs[n].rows);
	for (size_t n = 0; g->keys && n < g->plan->nnodes; n++) {
		const struct plan_node *node = &g->plan->nodes[n];

		for (size_t i = 0; g->keys[n].fields && i < node->nfields; i++)
			free(g->keys[n].fields[i].s);
		for (size_t i = 0; g->keys[n].edges && i < node->nedges; i++)
			free(g->keys[n].edges[i].s);
		free(g->keys[n].fields);
		free(g->keys[n].edges);
	}
	free(g->res);
	free(g->hash);
	free(g->objs);
	free(g->keys);
	free(g);
}

void graph_set_result(struct graph *g, int q, PGresult *res)
{
	if (g->res[q]) {
		g->rows -= PQntuples(g->res[q]);
		PQclear(g->res[q]);
	}
	g->res[q] = res;
	if (res)
		g->rows += PQntuples(res);
}

long graph_rows(const struct graph *g)
{
	return g->rows;
}

/* ---- hashing ---- */

static size_t hash_text(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29));
}

static size_t table_size(size_t n)
{
	size_t cap = 8;

	while (cap < n * 2)
		cap <<= 1;
	return cap;
}

static int ntuples(const PGresult *res)
{
	return res ? PQntuples(res) : 0;
}

/* The slot of key s in a table of row + 1 (0 = empty) keyed by column col
 * of res: the slot holding it, or the empty slot where it belongs. */
static size_t find_slot(const int *table, size_t mask, const PGresult *res,
			int col, const char *s, size_t len)
{
	size_t i = hash_text(s, len) & mask;

	for (;; i = (i + 1) & mask) {
		int row = table[i] - 1;

		if (row < 0)
			return i;
		if ((size_t)PQgetlength(res, row, col) == len &&
		    memcmp(PQgetvalue(res, row, col), s, len) == 0)
			return i;
	}
}

static int hash_build(struct keyhash *h, const PGresult *res, int col)
{
	int n = ntuples(res);
	size_t cap = table_size((size_t)n);

	h->head = calloc(cap, sizeof(int));
	h->tail = calloc(cap, sizeof(int));
	h->next = calloc((size_t)n + 1, sizeof(int));
	if (!h->head || !h->tail || !h->next) {
		hash_cleanup(h);
		return -1;
	}
	h->mask = cap - 1;
	for (int row = 0; row < n; row++) {
		const char *key;
		size_t len, i;

		if (!cell(res, row, col, &key, &len))
			continue;
		i = find_slot(h->head, h->mask, res, col, key, len);
		if (h->head[i] == 0)
			h->head[i] = row + 1;
		else
			h->next[h->tail[i] - 1] = row + 1;
		h->tail[i] = row + 1;
	}
	h->built = true;
	return 0;
}

/* The hash of keyed query q over its key_col, built on first use. */
static struct keyhash *query_hash(struct graph *g, int q)
{
	struct keyhash *h = &g->hash[q];

	if (!h->built && hash_build(h, g->res[q], g->plan->queries[q].key_col))
		return NULL;
	return h;
}

/* The first row of query q whose key equals column col of row (row + 1;
 * 0 when none). Follow h->next for the others. */
static int hash_first(const struct graph *g, const struct keyhash *h, int q,
		      const PGresult *pres, int row, int col)
{
	const PGresult *res = g->res[q];
	const char *key;
	size_t len;

	if (!res || !cell(pres, row, col, &key, &len))
		return 0;
	return h->head[find_slot(h->head, h->mask, res,
				 g->plan->queries[q].key_col, key, len)];
}

/* ---- the objects of a node ---- */

static const struct objs *node_objs(struct graph *g, int node);

static int objs_row(const struct objs *o, size_t i)
{
	return o->all ? (int)i : o->rows[i];
}

/* Keeps the objects of from for which keep() holds. */
static int objs_filter(struct graph *g, struct objs *o, const struct objs *from,
		       bool (*keep)(struct graph *, const void *, int),
		       const void *arg)
{
	o->rows = malloc((from->n + 1) * sizeof(int));
	if (!o->rows)
		return -1;
	for (size_t i = 0; i < from->n; i++) {
		int row = objs_row(from, i);

		if (keep(g, arg, row))
			o->rows[o->n++] = row;
	}
	return 0;
}

struct edge_ref {
	int node; /* the node holding the edge */
	const struct plan_edge *edge;
};

/* The row's object at the edge is not null (EDGE_JOINED) or has at least one
 * child (EDGE_QUERY). */
static bool has_child(struct graph *g, const void *arg, int row)
{
	const struct edge_ref *ref = arg;
	const struct plan_edge *e = ref->edge;
	const PGresult *res = g->res[g->plan->nodes[ref->node].src];

	switch (e->kind) {
	case EDGE_JOINED:
		return !PQgetisnull(res, row, e->null_col);
	case EDGE_QUERY:
		return hash_first(g, &g->hash[e->query], e->query, res, row,
				  e->match_col) != 0;
	case EDGE_BACKREF:
		break;
	}
	return true;
}

/* The objects of node parent that have an object in node child (one of its
 * edges leads there). */
static int objs_with_child(struct graph *g, struct objs *o, int parent,
			   int child)
{
	int e = g->keys[child].parent_edge;
	const struct objs *from;
	struct edge_ref ref;

	if (parent < 0 || e < 0)
		return -1;
	from = node_objs(g, parent);
	if (!from)
		return -1;
	ref.node = parent;
	ref.edge = &g->plan->nodes[parent].edges[e];
	if (ref.edge->kind == EDGE_QUERY && !query_hash(g, ref.edge->query))
		return -1;
	return objs_filter(g, o, from, has_child, &ref);
}

static const struct objs *node_objs(struct graph *g, int node)
{
	const struct plan_node *n = &g->plan->nodes[node];
	struct objs *o = &g->objs[node];
	int rc = 0;

	if (o->known)
		return o;
	switch (n->kind) {
	case NODE_QUERY:
		o->all = true;
		o->n = (size_t)ntuples(g->res[n->src]);
		break;
	case NODE_JOINED:
		rc = objs_with_child(g, o, n->parent, node);
		break;
	case NODE_BACKREF:
		/* book_set__author: the authors (grandparent objects) that
		 * have at least one book (parent object). */
		if (n->parent < 0)
			rc = -1;
		else
			rc = objs_with_child(g, o,
					     g->plan->nodes[n->parent].parent,
					     n->parent);
		break;
	}
	if (rc) {
		free(o->rows);
		memset(o, 0, sizeof(*o));
		return NULL;
	}
	o->known = true;
	return o;
}

/* ---- keys ---- */

/* Bytes of one element of an array literal: quotes, and a backslash before
 * every '"' and '\'. */
static size_t element_len(const char *s, size_t len)
{
	size_t n = len + 2;

	for (size_t i = 0; i < len; i++)
		if (s[i] == '"' || s[i] == '\\')
			n++;
	return n;
}

static char *append_element(char *p, const char *s, size_t len)
{
	*p++ = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			*p++ = '\\';
		*p++ = s[i];
	}
	*p++ = '"';
	return p;
}

/* The distinct non-NULL values of col over the objects, first-seen order:
 * their rows, in *rows (malloc'd). */
static int distinct_rows(const PGresult *res, int col, const struct objs *o,
			 int **rows, size_t *n)
{
	size_t cap = table_size(o->n), mask = cap - 1;
	int *table = calloc(cap, sizeof(int));

	*n = 0;
	*rows = malloc((o->n + 1) * sizeof(int));
	if (!table || !*rows) {
		free(table);
		free(*rows);
		*rows = NULL;
		return -1;
	}
	for (size_t i = 0; i < o->n; i++) {
		int row = objs_row(o, i);
		const char *key;
		size_t len, slot;

		if (!cell(res, row, col, &key, &len))
			continue;
		slot = find_slot(table, mask, res, col, key, len);
		if (table[slot] == 0) {
			table[slot] = row + 1;
			(*rows)[(*n)++] = row;
		}
	}
	free(table);
	return 0;
}

static char *array_literal(const PGresult *res, int col, const int *rows,
			   size_t n)
{
	size_t len = 2 + n;
	char *lit, *p;

	for (size_t i = 0; i < n; i++)
		len += element_len(PQgetvalue(res, rows[i], col),
				   (size_t)PQgetlength(res, rows[i], col));
	lit = malloc(len + 1);
	if (!lit)
		return NULL;
	p = lit;
	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			*p++ = ',';
		p = append_element(p, PQgetvalue(res, rows[i], col),
				   (size_t)PQgetlength(res, rows[i], col));
	}
	*p++ = '}';
	*p = '\0';
	return lit;
}

char *graph_keys(struct graph *g, int q, size_t *nkeys)
{
	const struct plan_query *pq = &g->plan->queries[q];
	const struct plan_node *node = &g->plan->nodes[pq->parent_node];
	const PGresult *res = g->res[node->src];
	const struct objs *o = node_objs(g, pq->parent_node);
	int *rows = NULL;
	char *lit = NULL;

	*nkeys = 0;
	if (!o || distinct_rows(res, pq->parent_col, o, &rows, nkeys))
		goto oom;
	if (*nkeys > 0) {
		lit = array_literal(res, pq->parent_col, rows, *nkeys);
		if (!lit)
			goto oom;
	}
	free(rows);
	return lit;
oom:
	free(rows);
	*nkeys = 1; /* NULL with keys: out of memory (see graph.h) */
	return NULL;
}

/* ---- writing ---- */

static void put(struct writer *w, const char *s, size_t len)
{
	sink_put(&w->sink, s, len);
}

static void write_object(struct writer *w, int node, int row);

/* Writes the object of node at row, or null when row < 0. */
static void write_object_or_null(struct writer *w, int node, int row)
{
	if (row < 0)
		put(w, "null", 4);
	else
		write_object(w, node, row);
}

static void write_query_edge(struct writer *w, const PGresult *res, int row,
			     const struct plan_edge *e)
{
	struct graph *g = w->g;
	const struct keyhash *h = query_hash(g, e->query);
	int child;

	if (!h) {
		w->failed = -1;
		return;
	}
	child = hash_first(g, h, e->query, res, row, e->match_col);
	if (!e->to_many) {
		write_object_or_null(w, e->node, child - 1);
		return;
	}
	put(w, "[", 1);
	for (bool first = true; child != 0; child = h->next[child - 1]) {
		if (!first)
			put(w, ",", 1);
		first = false;
		write_object(w, e->node, child - 1);
	}
	put(w, "]", 1);
}

/* The object the current one was reached from: the frame below the top. */
static void write_backref_edge(struct writer *w, const struct plan_edge *e)
{
	int row = w->depth >= 2 ? w->stack[w->depth - 2].row : -1;

	if (e->to_many)
		put(w, "[", 1);
	if (!e->to_many || row >= 0)
		write_object_or_null(w, e->node, row);
	if (e->to_many)
		put(w, "]", 1);
}

static void write_edge(struct writer *w, const PGresult *res, int row,
		       const struct plan_edge *e)
{
	switch (e->kind) {
	case EDGE_JOINED:
		write_object_or_null(w, e->node,
				     PQgetisnull(res, row, e->null_col) ? -1
									: row);
		break;
	case EDGE_QUERY:
		write_query_edge(w, res, row, e);
		break;
	case EDGE_BACKREF:
		write_backref_edge(w, e);
		break;
	}
}

static int push(struct writer *w, int node, int row)
{
	if (w->depth == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct frame *s = realloc(w->stack, cap * sizeof(*s));

		if (!s)
			return -1;
		w->stack = s;
		w->cap = cap;
	}
	w->stack[w->depth].node = node;
	w->stack[w->depth].row = row;
	w->depth++;
	return 0;
}

static void write_object(struct writer *w, int node, int row)
{
	const struct plan_node *n = &w->g->plan->nodes[node];
	const struct node_keys *k = &w->g->keys[node];
	const PGresult *res = w->g->res[n->src];
	size_t skip = 1; /* no comma before the first member */

	if (w->failed || w->sink.failed || push(w, node, row)) {
		w->failed = -1;
		return;
	}
	put(w, "{", 1);
	for (size_t i = 0; i < n->nfields; i++, skip = 0) {
		put(w, k->fields[i].s + skip, k->fields[i].len - skip);
		put_value(&w->sink, res, row, n->fields[i].col,
			  n->fields[i].render);
	}
	for (size_t i = 0; i < n->nedges; i++, skip = 0) {
		put(w, k->edges[i].s + skip, k->edges[i].len - skip);
		write_edge(w, res, row, &n->edges[i]);
	}
	put(w, "}", 1);
	w->depth--;
}

static void writer_init(struct writer *w, struct graph *g, struct evbuffer *out)
{
	w->g = g;
	w->stack = NULL;
	w->depth = 0;
	w->cap = 0;
	w->failed = 0;
	sink_init(&w->sink, out, SINK_CHUNK);
}

size_t graph_count(struct graph *g)
{
	const struct objs *o = g->plan->nnodes ? node_objs(g, 0) : NULL;

	return o ? o->n : 0;
}

int graph_write_range(struct graph *g, struct evbuffer *out, size_t from,
		      size_t to)
{
	struct writer w;

	writer_init(&w, g, out);
	const struct objs *o = g->plan->nnodes ? node_objs(g, 0) : NULL;

	if (!o)
		return -1;
	for (size_t i = from; i < to && i < o->n && !w.failed; i++) {
		if (i > 0)
			put(&w, ",", 1);
		write_object(&w, 0, objs_row(o, i));
	}
	sink_flush(&w.sink);
	free(w.stack);
	return w.failed || w.sink.failed ? -1 : 0;
}

int graph_write(struct graph *g, struct evbuffer *out)
{
	if (evbuffer_add(out, "[", 1) < 0 ||
	    graph_write_range(g, out, 0, graph_count(g)) < 0)
		return -1;
	return evbuffer_add(out, "]", 1);
}
