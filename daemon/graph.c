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

#include "hash.h"
#include "keys.h"

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
	int64_t *ints; /* each row's key when the key column is an integer
			  type (most keys): a probe compares numbers, not
			  text read through libpq */
};

/* A JSON key ready to write: `,"name":` escaped once per plan, or
 * `{"name":` for the first member of an object, so that the brace costs no
 * write of its own. s is padded with zeros to a multiple of KEY_WORD bytes:
 * put_key copies whole words (two vector moves for most keys, no memcpy
 * call). */
#define KEY_WORD 32

struct jkey {
	char *s;
	size_t len;
	size_t padded; /* len rounded up to KEY_WORD */
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

/* How the writer writes a field: its schema_render, with the integer
 * columns (int2/int4/int8: known from the result, PQftype, not from the
 * plan) told apart from other numbers. The first two need only the text of
 * a value (put_by_text). */
enum value_kind {
	VALUE_INTEGER,
	VALUE_BOOL,
	VALUE_NUMBER,
	VALUE_STRING,
	VALUE_DATETIME,	   /* date, timestamp: put_datetime */
	VALUE_TIMESTAMPTZ, /* the same with a zone offset */
	VALUE_STRINGS,	   /* text[], varchar[], bpchar[]: put_array */
	VALUE_INTEGERS,	   /* int2[], int4[], int8[] */
	VALUE_BOOLS,	   /* bool[] */
	VALUE_VERBATIM,	   /* RENDER_RAW, RENDER_TO_JSON */
};

/* What the writer prepares per node. members: the keys of the fields, then
 * of the edges, in writing order; kinds: per field. */
struct node_out {
	struct jkey *members;
	enum value_kind *kinds;
	int parent_edge; /* edge of the parent node leading here, or -1 */
};

struct graph {
	const struct plan *plan;
	PGresult **res;
	struct keyhash *hash; /* per query */
	struct objs *objs;    /* per node */
	struct node_out *out; /* per node */
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

/* Commits what was written and reserves room for n bytes or more (chunk,
 * or n when larger). False when out of memory: the sink has no room then,
 * and every later write is dropped. */
static bool sink_grow(struct sink *k, size_t n)
{
	sink_flush(k);
	if (k->failed ||
	    evbuffer_reserve_space(k->out,
				   (ev_ssize_t)(n > k->chunk ? n : k->chunk),
				   &k->vec, 1) != 1) {
		k->failed = -1;
		k->vec.iov_base = NULL;
		return false;
	}
	k->p = k->vec.iov_base;
	k->end = k->p + k->vec.iov_len;
	return true;
}

/* Whether n bytes can be written at k->p, after reserving more if need
 * be: for the writers that store into the reservation themselves. */
static inline bool sink_room(struct sink *k, size_t n)
{
	return n <= (size_t)(k->end - k->p) || sink_grow(k, n);
}

/* The rare case of sink_put: the reservation is full, or there is none
 * yet. Fills what is left of it, and the rest goes into a new one. Kept
 * out of line so that the fast path below stays small enough to inline
 * everywhere. */
static void sink_put_slow(struct sink *k, const char *s, size_t len)
{
	size_t room = (size_t)(k->end - k->p);

	memcpy(k->p, s, room);
	k->p += room;
	if (!sink_grow(k, len - room))
		return;
	memcpy(k->p, s + room, len - room);
	k->p += len - room;
}

/* Copies len <= 32 bytes with two fixed-size moves that overlap as much as
 * need be (reading and writing only those len bytes): most values are
 * that short, and this costs less than a call to memcpy. */
static inline void copy_short(char *d, const char *s, size_t len)
{
	if (len >= 16) {
		memcpy(d, s, 16);
		memcpy(d + len - 16, s + len - 16, 16);
	} else if (len >= 8) {
		memcpy(d, s, 8);
		memcpy(d + len - 8, s + len - 8, 8);
	} else if (len >= 4) {
		memcpy(d, s, 4);
		memcpy(d + len - 4, s + len - 4, 4);
	} else if (len > 0) {
		d[0] = s[0];
		d[len / 2] = s[len / 2];
		d[len - 1] = s[len - 1];
	}
}

/* Inline: the writer calls this for every brace, key and value, and nearly
 * always the bytes fit (a short copy, a store for constant lengths). */
static inline void sink_put(struct sink *k, const char *s, size_t len)
{
	if (len <= (size_t)(k->end - k->p)) {
		if (len <= 32)
			copy_short(k->p, s, len);
		else
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

/* The 8 bytes at s as a little-endian word, whatever the host: byte n of
 * s is bits 8n..8n+7 (memcpy: s need not be aligned). */
static uint64_t load_word(const char *s)
{
	uint64_t x;

	memcpy(&x, s, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	x = __builtin_bswap64(x);
#endif
	return x;
}

/* The high bit of each byte of x (load_word) that may need escaping, all 8
 * at once (the "has a byte less than n / equal to zero" tricks of Bit
 * Twiddling Hacks). Only bytes below 0x80 can need escaping, and & ~x keeps
 * their high bits. In such a byte, x - 0x20 sets the high bit when the byte
 * is below 0x20, and (x ^ '"') - 1 when it is '"' (0 - 1 = 0xff); likewise
 * '\\'. A borrow out of a byte that matched may flag the bytes above it
 * too, but only a real match starts a borrow: the lowest flag, the first
 * byte in memory, is exact. */
static uint64_t escape_flags(uint64_t x)
{
	uint64_t below = x - ONES * 0x20;
	uint64_t quote = (x ^ (ONES * '"')) - ONES;
	uint64_t bslash = (x ^ (ONES * '\\')) - ONES;

	return (below | quote | bslash) & ~x & HIGHS;
}

/* The offset of the first flagged byte (flags != 0). */
static size_t first_flagged(uint64_t flags)
{
	return (size_t)__builtin_ctzll(flags) / 8;
}

/* The first byte at or after i that needs escaping, or len. Checks 8
 * bytes at a time: whole words, then the word that ends s, with the bytes
 * before i made clean (one of them may match, and its borrow would flag
 * a byte after it). Strings shorter than a word, one byte at a time. */
static size_t next_escape(const char *s, size_t len, size_t i)
{
	uint64_t flags;

	for (; len - i >= 8; i += 8) {
		flags = escape_flags(load_word(s + i));
		if (flags)
			return i + first_flagged(flags);
	}
	if (len >= 8 && i < len) {
		size_t last = len - 8;
		uint64_t seen = (UINT64_C(1) << (8 * (i - last))) - 1;

		flags = escape_flags((load_word(s + last) & ~seen) |
				     (ONES * 'a' & seen));
		return flags ? last + first_flagged(flags) : len;
	}
	while (i < len && !needs_escape((unsigned char)s[i]))
		i++;
	return i;
}

/* s escaped, without the quotes: each clean run is one sink_put. */
static void put_escaped(struct sink *k, const char *s, size_t len)
{
	size_t start = 0, i;

	while ((i = next_escape(s, len, start)) < len) {
		sink_put(k, s + start, i - start);
		if (sink_room(k, 6)) /* the escape goes straight in */
			k->p += escape_of((unsigned char)s[i], k->p);
		start = i + 1;
	}
	sink_put(k, s + start, len - start);
}

/* s as a JSON string. */
static void put_string(struct sink *k, const char *s, size_t len)
{
	sink_put(k, "\"", 1);
	put_escaped(k, s, len);
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

/* The longest text of an int8: "-9223372036854775808". */
#define INTEGER_TEXT_MAX 20

/* The text of an int2/int4/int8 value: an optional '-' and digits, a JSON
 * number as it is (no is_json_number), copied up to its NUL (no
 * PQgetlength): at most INTEGER_TEXT_MAX bytes, so one test for room. */
static void put_integer(struct sink *k, const char *v)
{
	size_t i = 0;

	if (!sink_room(k, INTEGER_TEXT_MAX))
		return;
	for (; v[i] != '\0' && i < INTEGER_TEXT_MAX; i++)
		k->p[i] = v[i];
	k->p += i;
	/* Never from PostgreSQL; written whole all the same. */
	if (v[i] != '\0')
		sink_put(k, v + i, strlen(v + i));
}

/* A bool's text, 't' or 'f', as JSON. */
static void put_bool(struct sink *k, char text)
{
	if (text == 't')
		sink_put(k, "true", 4);
	else
		sink_put(k, "false", 5);
}

/* The values that need only their text, not its length: integers (see
 * put_integer) and bools ('t' or 'f'). Neither is ever empty text, so an
 * empty one (PQgetvalue gives "" for NULL) is left to put_value: false. */
static bool put_by_text(struct sink *k, const PGresult *res, int row, int col,
			enum value_kind kind)
{
	const char *v = PQgetvalue(res, row, col);

	if (v[0] == '\0')
		return false;
	if (kind == VALUE_INTEGER)
		put_integer(k, v);
	else
		put_bool(k, v[0]);
	return true;
}

/*
 * A date, timestamp or timestamptz as to_json writes it. The text comes in
 * the session's DateStyle ISO (pool.c), which is to_json's XSD style but
 * for two things: the space between date and time is a 'T', and a zone
 * offset of whole hours (TimeZone is UTC: always "+00") gets its minutes.
 * "2020-01-04 10:00:00.5+00 BC" -> "2020-01-04T10:00:00.5+00:00 BC";
 * "infinity" and dates stay as they are. Nothing in it needs escaping.
 */
static void put_datetime(struct sink *k, const char *v, size_t len, bool zone)
{
	size_t end = len, t;
	bool bc = len > 3 && memcmp(v + len - 3, " BC", 3) == 0;

	if (bc)
		end -= 3;
	if (!sink_room(k, len + 5)) /* quotes, 'T', ":00" */
		return;
	*k->p++ = '"';
	for (t = 0; t < end && v[t] != ' '; t++)
		;
	memcpy(k->p, v, end);
	if (t < end) {
		size_t sign = end;

		k->p[t] = 'T';
		while (zone && sign > t && v[sign - 1] != '+' &&
		       v[sign - 1] != '-')
			sign--;
		if (zone && sign > t && end - sign == 2) {
			memcpy(k->p + end, ":00", 3);
			k->p += 3;
		}
	}
	k->p += end;
	if (bc) {
		memcpy(k->p, " BC", 3);
		k->p += 3;
	}
	*k->p++ = '"';
}

/* An array element that array_out left unquoted, up to a ',' or '}':
 * NULL, or an element of the kind's type. Returns where it ends. */
static size_t put_bare_element(struct sink *k, const char *v, size_t len,
			       size_t i, enum value_kind kind)
{
	size_t end = i;

	while (end < len && v[end] != ',' && v[end] != '}')
		end++;
	if (end - i == 4 && memcmp(v + i, "NULL", 4) == 0)
		sink_put(k, "null", 4);
	else if (kind == VALUE_STRINGS)
		put_string(k, v + i, end - i);
	else if (kind == VALUE_BOOLS)
		put_bool(k, v[i]);
	else
		sink_put(k, v + i, end - i);
	return end;
}

/* An element array_out quoted, from after its opening quote: a string
 * whose '"' and '\\' come escaped with a backslash. Returns where its
 * closing quote is. */
static size_t put_quoted_element(struct sink *k, const char *v, size_t len,
				 size_t i)
{
	size_t start = i;

	sink_put(k, "\"", 1);
	for (; i < len && v[i] != '"'; i++) {
		if (v[i] != '\\')
			continue;
		put_escaped(k, v + start, i - start);
		start = ++i; /* the escaped byte opens the next run */
	}
	put_escaped(k, v + start, (i < len ? i : len) - start);
	sink_put(k, "\"", 1);
	return i;
}

/*
 * An array's text (array_out) as to_json writes it: braces become
 * brackets at every depth, NULL null, and each element a string, a number
 * or a bool by the element type (kind). The dimensions that array_out puts
 * first when a lower bound is not 1 ("[0:1]={1,2}") are dropped, as
 * to_json drops them. The element types here all use ',' between
 * elements, and array_out adds no spaces.
 */
static void put_array(struct sink *k, const char *v, size_t len,
		      enum value_kind kind)
{
	size_t i = 0;

	if (len > 0 && v[0] == '[') {
		while (i < len && v[i] != '=')
			i++;
		i++;
	}
	for (; i < len; i++) {
		switch (v[i]) {
		case '{':
			sink_put(k, "[", 1);
			break;
		case '}':
			sink_put(k, "]", 1);
			break;
		case ',':
			sink_put(k, ",", 1);
			break;
		case '"':
			i = put_quoted_element(k, v, len, i + 1);
			break;
		default:
			i = put_bare_element(k, v, len, i, kind) - 1;
			break;
		}
	}
}

static void put_value(struct sink *k, const PGresult *res, int row, int col,
		      enum value_kind kind)
{
	const char *v;
	size_t len;

	if (kind <= VALUE_BOOL && put_by_text(k, res, row, col, kind))
		return;
	if (!cell(res, row, col, &v, &len)) {
		sink_put(k, "null", 4);
		return;
	}
	switch (kind) {
	case VALUE_INTEGER: /* empty text, never PostgreSQL's: no number */
	case VALUE_NUMBER:
		if (is_json_number(v, len))
			sink_put(k, v, len);
		else
			put_string(k, v, len);
		return;
	case VALUE_BOOL:
		put_bool(k, v[0]);
		return;
	case VALUE_STRING:
		put_string(k, v, len);
		return;
	case VALUE_DATETIME:
	case VALUE_TIMESTAMPTZ:
		put_datetime(k, v, len, kind == VALUE_TIMESTAMPTZ);
		return;
	case VALUE_STRINGS:
	case VALUE_INTEGERS:
	case VALUE_BOOLS:
		put_array(k, v, len, kind);
		return;
	case VALUE_VERBATIM:
		break;
	}
	sink_put(k, v, len);
}

/* ---- construction ---- */

/* Type OIDs (pg_type.dat: fixed for good). */
enum {
	OID_INT8 = 20,
	OID_INT2 = 21,
	OID_INT4 = 23,
	OID_BOOL_ARRAY = 1000,
	OID_INT2_ARRAY = 1005,
	OID_INT4_ARRAY = 1007,
	OID_TEXT_ARRAY = 1009,
	OID_BPCHAR_ARRAY = 1014,
	OID_VARCHAR_ARRAY = 1015,
	OID_INT8_ARRAY = 1016,
	OID_TIMESTAMPTZ = 1184,
};

static bool is_integer_type(Oid type)
{
	return type == OID_INT8 || type == OID_INT2 || type == OID_INT4;
}

/* The arrays RENDER_ARRAY covers (schema.c's catalog query), by the
 * element's kind. */
static enum value_kind array_kind(Oid type)
{
	switch (type) {
	case OID_TEXT_ARRAY:
	case OID_VARCHAR_ARRAY:
	case OID_BPCHAR_ARRAY:
		return VALUE_STRINGS;
	case OID_INT2_ARRAY:
	case OID_INT4_ARRAY:
	case OID_INT8_ARRAY:
		return VALUE_INTEGERS;
	case OID_BOOL_ARRAY:
		return VALUE_BOOLS;
	}
	return VALUE_STRING; /* not one of them: never from the catalog */
}

/* type: the column's, or InvalidOid before the result is known. */
static enum value_kind kind_of(enum schema_render render, Oid type)
{
	switch (render) {
	case RENDER_NUMBER:
		return is_integer_type(type) ? VALUE_INTEGER : VALUE_NUMBER;
	case RENDER_BOOL:
		return VALUE_BOOL;
	case RENDER_STRING:
		return VALUE_STRING;
	case RENDER_DATETIME:
		return type == OID_TIMESTAMPTZ ? VALUE_TIMESTAMPTZ
					       : VALUE_DATETIME;
	case RENDER_ARRAY:
		return array_kind(type);
	case RENDER_RAW:
	case RENDER_TO_JSON:
		break;
	}
	return VALUE_VERBATIM;
}

/* A JSON key as written before a value (struct jkey): opening is ',', or
 * '{' for the first member. */
static int make_key(struct jkey *key, const char *name, char opening)
{
	size_t len = strlen(name);
	size_t room = (len * 6 + 4 + KEY_WORD - 1) / KEY_WORD * KEY_WORD;
	char *s = calloc(1, room), *o = s;

	if (!s)
		return -1;
	*o++ = opening;
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
	key->padded = (key->len + KEY_WORD - 1) / KEY_WORD * KEY_WORD;
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

static int init_node_out(struct graph *g, size_t n)
{
	const struct plan_node *node = &g->plan->nodes[n];
	struct node_out *k = &g->out[n];
	size_t nmembers = node->nfields + node->nedges;

	k->parent_edge = find_parent_edge(g->plan, (int)n);
	k->members = calloc(nmembers + 1, sizeof(*k->members));
	k->kinds = calloc(node->nfields + 1, sizeof(*k->kinds));
	if (!k->members || !k->kinds)
		return -1;
	for (size_t i = 0; i < node->nfields; i++)
		k->kinds[i] = kind_of(node->fields[i].render, InvalidOid);
	for (size_t i = 0; i < nmembers; i++) {
		const char *name =
			i < node->nfields ? node->fields[i].name
					  : node->edges[i - node->nfields].name;

		if (make_key(&k->members[i], name, i == 0 ? '{' : ','))
			return -1;
	}
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
	g->out = calloc(plan->nnodes + 1, sizeof(*g->out));
	if (!g->res || !g->hash || !g->objs || !g->out)
		goto fail;
	for (size_t n = 0; n < plan->nnodes; n++)
		if (init_node_out(g, n))
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
	free(h->ints);
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
	for (size_t n = 0; g->out && n < g->plan->nnodes; n++) {
		const struct plan_node *node = &g->plan->nodes[n];
		struct jkey *members = g->out[n].members;

		for (size_t i = 0; members && i < node->nfields + node->nedges;
		     i++)
			free(members[i].s);
		free(members);
		free(g->out[n].kinds);
	}
	free(g->res);
	free(g->hash);
	free(g->objs);
	free(g->out);
	free(g);
}

/* Sets the kinds of the fields of the nodes written from result q, now
 * that their column types are known (PostgreSQL reports a domain's base
 * type). */
static void find_value_kinds(struct graph *g, int q, const PGresult *res)
{
	for (size_t n = 0; n < g->plan->nnodes; n++) {
		const struct plan_node *node = &g->plan->nodes[n];

		if (node->src != q)
			continue;
		for (size_t i = 0; i < node->nfields; i++) {
			const struct plan_field *f = &node->fields[i];

			g->out[n].kinds[i] =
				kind_of(f->render, res ? PQftype(res, f->col)
						       : InvalidOid);
		}
	}
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
	find_value_kinds(g, q, res);
}

long graph_rows(const struct graph *g)
{
	return g->rows;
}

/* ---- hashing ---- */

/* The table's index takes the low bits: fold the high ones in. */
static size_t hash_text(const char *s, size_t len)
{
	uint64_t h = bytes_hash(s, len);

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

/* The value of an int2/int4/int8 column's text: '-' and digits, always
 * in range (PostgreSQL's own output). */
static int64_t integer_of(const char *s)
{
	bool negative = *s == '-';
	uint64_t v = 0;

	for (s += negative; *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (uint64_t)(*s - '0');
	return negative ? (int64_t)(0 - v) : (int64_t)v;
}

static size_t hash_integer(int64_t v)
{
	uint64_t h = (uint64_t)v * UINT64_C(0x9e3779b97f4a7c15);

	return (size_t)(h ^ (h >> 29));
}

/* find_slot for integer keys: ints holds each row's key. */
static size_t find_integer_slot(const int *table, size_t mask,
				const int64_t *ints, int64_t key)
{
	size_t i = hash_integer(key) & mask;

	while (table[i] != 0 && ints[table[i] - 1] != key)
		i = (i + 1) & mask;
	return i;
}

size_t graph_index_bytes(const struct graph *g, int q)
{
	const PGresult *res = g->res[q];
	const struct plan_query *pq = &g->plan->queries[q];
	size_t n = (size_t)ntuples(res);

	if (!pq->keyed || n == 0)
		return 0;
	/* what hash_build allocates */
	return table_size(n) * 2 * sizeof(int) + (n + 1) * sizeof(int) +
	       (is_integer_type(PQftype(res, pq->key_col)) ? n * sizeof(int64_t)
							   : 0);
}

static int hash_build(struct keyhash *h, const PGresult *res, int col)
{
	int n = ntuples(res);
	size_t cap = table_size((size_t)n);
	bool integers = n > 0 && is_integer_type(PQftype(res, col));

	h->head = calloc(cap, sizeof(int));
	h->tail = calloc(cap, sizeof(int));
	h->next = calloc((size_t)n + 1, sizeof(int));
	if (integers)
		h->ints = malloc((size_t)n * sizeof(*h->ints));
	if (!h->head || !h->tail || !h->next || (integers && !h->ints)) {
		hash_cleanup(h);
		return -1;
	}
	h->mask = cap - 1;
	for (int row = 0; row < n; row++) {
		const char *key;
		size_t len, i;

		if (!cell(res, row, col, &key, &len))
			continue;
		if (h->ints) {
			h->ints[row] = integer_of(key);
			i = find_integer_slot(h->head, h->mask, h->ints,
					      h->ints[row]);
		} else {
			i = find_slot(h->head, h->mask, res, col, key, len);
		}
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
	/* Numbers compare equal whatever the width: an int4 column may
	 * reference an int8 key. A key of another type is compared as
	 * text. */
	if (h->ints && is_integer_type(PQftype(pres, col)))
		return h->head[find_integer_slot(h->head, h->mask, h->ints,
						 integer_of(key))];
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
	int e = g->out[child].parent_edge;
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

/* The keys as array_recv reads them (keys.h), where the key type allows;
 * else the text literal. */
static int keys_value(const PGresult *res, int col, const int *rows,
		      enum keys_elem elem, struct graph_keys *out)
{
	const char **vals;
	int *lens;

	out->binary = false;
	if (elem != KEYS_TEXT_LITERAL) {
		vals = malloc(out->n * sizeof(*vals));
		lens = malloc(out->n * sizeof(*lens));
		if (!vals || !lens) {
			free(vals);
			free(lens);
			return -1;
		}
		for (size_t i = 0; i < out->n; i++) {
			vals[i] = PQgetvalue(res, rows[i], col);
			lens[i] = PQgetlength(res, rows[i], col);
		}
		out->value = keys_binary(elem, vals, lens, out->n, &out->len);
		free(vals);
		free(lens);
		if (out->value) {
			out->binary = true;
			return 0;
		}
		if (out->len < 0)
			return -1;
	}
	out->value = array_literal(res, col, rows, out->n);
	out->len = 0;
	return out->value ? 0 : -1;
}

int graph_keys(struct graph *g, int q, bool binary, struct graph_keys *out)
{
	const struct plan_query *pq = &g->plan->queries[q];
	const struct plan_node *node = &g->plan->nodes[pq->parent_node];
	const PGresult *res = g->res[node->src];
	const struct objs *o = node_objs(g, pq->parent_node);
	int *rows = NULL;
	int rc = 0;

	*out = (struct graph_keys){0};
	if (!o || distinct_rows(res, pq->parent_col, o, &rows, &out->n))
		rc = -1;
	else if (out->n > 0)
		rc = keys_value(res, pq->parent_col, rows,
				binary ? pq->key_elem : KEYS_TEXT_LITERAL, out);
	free(rows);
	if (rc)
		*out = (struct graph_keys){0};
	return rc;
}

/* ---- writing ---- */

static void put(struct writer *w, const char *s, size_t len)
{
	sink_put(&w->sink, s, len);
}

/* Copies whole words of the padded key: what lies past key->len is
 * overwritten by the next write. Inline: it runs for every member. */
static inline void put_key(struct sink *k, const struct jkey *key)
{
	if (!sink_room(k, key->padded))
		return;
	memcpy(k->p, key->s, KEY_WORD);
	for (size_t i = KEY_WORD; i < key->len; i += KEY_WORD)
		memcpy(k->p + i, key->s + i, KEY_WORD);
	k->p += key->len;
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

/* values_list (DESIGN.md §6.4): [v, ...], or the bare value when flat.
 * Such a node has fields only. */
static void write_values(struct writer *w, const struct plan_node *n,
			 const struct node_out *k, const PGresult *res, int row)
{
	bool flat = n->shape == PLAN_FLAT;

	if (!flat)
		put(w, "[", 1);
	for (size_t i = 0; i < n->nfields; i++) {
		if (i)
			put(w, ",", 1);
		put_value(&w->sink, res, row, n->fields[i].col, k->kinds[i]);
	}
	if (!flat)
		put(w, "]", 1);
}

static void write_object(struct writer *w, int node, int row)
{
	const struct plan_node *n = &w->g->plan->nodes[node];
	const struct node_out *k = &w->g->out[node];
	const PGresult *res = w->g->res[n->src];
	const struct jkey *key = k->members; /* the first opens the object */

	if (w->failed || w->sink.failed || push(w, node, row)) {
		w->failed = -1;
		return;
	}
	if (n->shape == PLAN_LISTS || n->shape == PLAN_FLAT) {
		write_values(w, n, k, res, row);
		w->depth--;
		return;
	}
	if (n->nfields + n->nedges == 0)
		put(w, "{", 1);
	for (size_t i = 0; i < n->nfields; i++) {
		put_key(&w->sink, key++);
		put_value(&w->sink, res, row, n->fields[i].col, k->kinds[i]);
	}
	for (size_t i = 0; i < n->nedges; i++) {
		put_key(&w->sink, key++);
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

bool graph_is_aggregate(const struct graph *g)
{
	return g->plan->nnodes && g->plan->nodes[0].shape == PLAN_AGGREGATE;
}

int graph_write_aggregate(struct graph *g, struct evbuffer *out)
{
	const struct plan_node *n = &g->plan->nodes[0];
	const PGresult *res = g->res[n->src];
	struct writer w;

	if (res && PQntuples(res) > 0) {
		writer_init(&w, g, out);
		write_object(&w, 0, 0);
		sink_flush(&w.sink);
		free(w.stack);
		return w.failed || w.sink.failed ? -1 : 0;
	}
	/* no statement was sent: each entry's value over no rows */
	if (evbuffer_add(out, "{", 1) < 0)
		return -1;
	for (size_t i = 0; i < n->nfields; i++) {
		const struct plan_field *f = &n->fields[i];
		const char *v = n->empty && n->empty[i] ? n->empty[i] : "null";
		if ((i && evbuffer_add(out, ",", 1) < 0))
			return -1;
		graph_write_string(out, f->name, strlen(f->name));
		if (evbuffer_add(out, ":", 1) < 0 ||
		    evbuffer_add(out, v, strlen(v)) < 0)
			return -1;
	}
	return evbuffer_add(out, "}", 1);
}

int graph_write(struct graph *g, struct evbuffer *out)
{
	if (evbuffer_add(out, "[", 1) < 0 ||
	    graph_write_range(g, out, 0, graph_count(g)) < 0)
		return -1;
	return evbuffer_add(out, "]", 1);
}
