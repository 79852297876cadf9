/*
 * The object graph of one request: owns the PGresult of every query of a
 * plan, finds each node's objects, gives the keys of the next level, matches
 * children to parents by key (a hash per query) and writes the JSON straight
 * into an evbuffer, values rendered as PostgreSQL's to_json() renders them.
 * It reads results (libpq) but never talks to the server.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <event2/buffer.h>
#include <libpq-fe.h>

#include "err.h"
#include "plan.h"

struct graph;

/* plan must outlive the graph. Returns NULL when out of memory. */
struct graph *graph_new(const struct plan *plan);
void graph_free(struct graph *g); /* clears every result; NULL ok */

/* Hands over the result of query q (the graph now owns it). A query that
 * was not sent (empty, or no keys) gets NULL: zero rows. */
void graph_set_result(struct graph *g, int q, PGresult *res);

/* The keys of a keyed query: its $1. */
struct graph_keys {
	char *value; /* malloc'd; NULL when there are none */
	int len;     /* bytes of a binary value */
	bool binary; /* array_recv's format (keys.h), else the text literal */
	size_t n;    /* how many */
};

/*
 * The keys of keyed query q, distinct, NULLs dropped, in first-seen order:
 * in binary when asked and the query's key_elem allows (and every key
 * converts), else as one PostgreSQL array literal ("{"1","7"}"). None
 * (n == 0, value NULL): the query is then not sent and its deeper levels
 * have no parents. Needs the results of every query its parent node's
 * objects depend on. Returns -1 when out of memory (*out zeroed).
 */
int graph_keys(struct graph *g, int q, bool binary, struct graph_keys *out);

/* The bytes the graph will hold for result q besides the rows themselves:
 * the index from key to rows that it builds over a keyed query's result
 * (about 32 bytes a row). The rows budget counts them with the rows. */
size_t graph_index_bytes(const struct graph *g, int q);

/* Rows of every result handed over so far. */
long graph_rows(const struct graph *g);

/* The number of main objects (the top-level results). */
size_t graph_count(struct graph *g);

/* Writes main objects from..to-1, comma-separated (a comma before each but
 * the very first object), so that a large answer can be sent in pieces.
 * Returns 0, or -1 when out of memory. */
int graph_write_range(struct graph *g, struct evbuffer *out, size_t from,
		      size_t to);

/* Writes the main objects as a JSON array ("[...]"). Returns 0, or -1 when
 * out of memory (out then holds a partial document). */
int graph_write(struct graph *g, struct evbuffer *out);

/* Whether the answer is an aggregate (DESIGN.md §6.5): one object, from
 * the main query's one row, written by graph_write_aggregate. */
bool graph_is_aggregate(const struct graph *g);
int graph_write_aggregate(struct graph *g, struct evbuffer *out);

/* Appends s as a JSON string (quoted, escaped exactly as to_json does). */
void graph_write_string(struct evbuffer *out, const char *s, size_t len);
