/*
 * Which of PostgreSQL's plans a prefetch level runs on, learned by timing
 * both. A level's statement is prepared once per connection; it can run on
 * the generic plan (made once, for a key array PostgreSQL assumes has 10
 * elements) or on a custom plan made for its actual keys at every
 * execution. Neither wins everywhere. A custom plan costs planning at
 * every execution (0.5 ms for 500 articles' comments, whose plan is the
 * same either way), and left to choose, PostgreSQL plans each execution of
 * a one-key level anew. But the generic plan is made for 10 keys of a
 * column's average value: where a few values hold most rows, it scans the
 * whole table for keys that an index finds at once. PostgreSQL's own
 * choice compares estimated costs, the generic plan's for 10 keys; so
 * prefetchd times both plans instead. One per event loop, owned by its
 * thread (no locks), bounded (a fixed table). Knows nothing of libpq or
 * plans: exec asks it and tells it the times.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum plan_mode {
	PLAN_AUTO,    /* PostgreSQL's choice (the main query's) */
	PLAN_GENERIC, /* plan_cache_mode = force_generic_plan */
	PLAN_CUSTOM,  /* plan_cache_mode = force_custom_plan */
};

struct planmode;

/* NULL when out of memory. */
struct planmode *planmode_new(void);
void planmode_free(struct planmode *pm); /* NULL ok */

/* A statement with a number of keys: the text_hash of its SQL text, with
 * the power of two below nkeys (plans change with the number of keys, not
 * with the keys). Never 0. */
uint64_t planmode_key(uint64_t sql_hash, size_t nkeys);

/*
 * The plan to run the statement on now: until each plan has been timed
 * PLANMODE_SAMPLES times, the one timed less; then the generic plan,
 * unless the custom plan's time is at most PLANMODE_MARGIN of the generic
 * one's (each plan's time: the fastest of its last PLANMODE_SAMPLES); and
 * now and then the other one, so that a choice follows the data when it
 * changes: PLANMODE_REVISIT runs after a choice, then twice as many runs
 * after each revisit that confirms it, up to PLANMODE_REVISIT_MAX (a
 * generic plan 40 times slower, timed every 32 runs, would cost more than
 * all the others). The margin is wide because on a busy machine a time
 * is mostly waiting (for a core, for the event loop): under 8 connections
 * on 2 cores, the 0.1-0.3 ms that 100 authors' books may gain on a custom
 * plan could not be told from noise (a margin of 0.92 chose it for 45% of
 * the requests, and chose a custom plan of the same shape as the generic
 * one for 10% of one parent's [:5]). What the choice
 * is for is a generic plan that is wrong by an order: made for ten keys of
 * a column with few values, it scans the whole table where the actual
 * keys' custom plan reads an index (tests/integration/check_planning.c:
 * 12 ms against 0.1). A statement the table forgot (another took its slot)
 * starts over.
 */
#define PLANMODE_SAMPLES 5
#define PLANMODE_MARGIN 0.5
#define PLANMODE_REVISIT 32
#define PLANMODE_REVISIT_MAX 1024
enum plan_mode planmode_pick(struct planmode *pm, uint64_t key);

/* A statement's choice, and the times it was made on. */
struct planmode_choice {
	enum plan_mode plan;
	double generic_ms, custom_ms; /* the fastest of the last ones */
};

/* The statement ran on mode in ms (from sending its batch to having its
 * whole result). Returns true when that changed the plan it runs on (the
 * first choice counts when it is the custom plan), with *now filled. */
bool planmode_learn(struct planmode *pm, uint64_t key, enum plan_mode mode,
		    double ms, struct planmode_choice *now);

struct planmode_stats {
	unsigned long generic, custom; /* picks, since the start */
};
void planmode_get_stats(const struct planmode *pm, struct planmode_stats *out);
