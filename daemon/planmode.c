/*
 * The plan choices (see planmode.h): a table of statements, indexed by
 * their key and overwritten on collision, each with the last few times of
 * either plan. The fastest of them, not their mean or median: a time is
 * the statement's own plus waiting, and the waiting varies with the load.
 */
#include "planmode.h"

#include <stdbool.h>
#include <stdlib.h>

/* Statements with their number of keys: a process sees few shapes, and
 * forgetting one costs only a few runs to learn it again. */
#define PLANMODE_SLOTS 1024

struct timings {
	float ms[PLANMODE_SAMPLES]; /* a ring: the last n */
	unsigned n;		    /* up to PLANMODE_SAMPLES */
	unsigned next;		    /* where the next time goes */
};

struct choice {
	uint64_t key; /* 0: empty */
	struct timings generic, custom;
	enum plan_mode best;
	unsigned revisit; /* runs between two timings of the other plan */
	unsigned since;	  /* runs since the last */
	bool revisiting;  /* the other plan's time is awaited */
};

struct planmode {
	struct choice slots[PLANMODE_SLOTS];
	struct planmode_stats stats;
};

struct planmode *planmode_new(void)
{
	return calloc(1, sizeof(struct planmode));
}

void planmode_free(struct planmode *pm)
{
	free(pm);
}

uint64_t planmode_key(uint64_t sql_hash, size_t nkeys)
{
	uint64_t bits = 0;

	while (nkeys > 1) {
		nkeys >>= 1;
		bits++;
	}
	/* Spread the bucket over every bit, so that the buckets of one
	 * statement take different slots. */
	sql_hash ^= (bits + 1) * 0x9e3779b97f4a7c15ULL;
	return sql_hash ? sql_hash : 1;
}

/* The statement's choice, or NULL when its slot holds another. */
static struct choice *find(struct planmode *pm, uint64_t key)
{
	struct choice *c = &pm->slots[key % PLANMODE_SLOTS];

	return c->key == key ? c : NULL;
}

static double fastest(const struct timings *t)
{
	float v = t->ms[0];

	for (int i = 1; i < PLANMODE_SAMPLES; i++)
		if (t->ms[i] < v)
			v = t->ms[i];
	return v;
}

static enum plan_mode other(enum plan_mode mode)
{
	return mode == PLAN_CUSTOM ? PLAN_GENERIC : PLAN_CUSTOM;
}

static bool timed(const struct choice *c)
{
	return c->generic.n >= PLANMODE_SAMPLES &&
	       c->custom.n >= PLANMODE_SAMPLES;
}

static enum plan_mode choose(struct choice *c)
{
	if (!timed(c))
		return c->custom.n < c->generic.n ? PLAN_CUSTOM : PLAN_GENERIC;
	if (++c->since < c->revisit)
		return c->best;
	c->since = 0;
	c->revisiting = true;
	return other(c->best);
}

/* Chooses again, with a new time of timed_mode; true when the choice
 * changed. A revisit that leaves the choice as it was makes the next one
 * twice as far; a new choice brings them back to PLANMODE_REVISIT. */
static bool decide(struct choice *c, enum plan_mode timed_mode)
{
	bool revisited = c->revisiting && timed_mode != c->best;
	enum plan_mode best =
		fastest(&c->custom) < PLANMODE_MARGIN * fastest(&c->generic)
			? PLAN_CUSTOM
			: PLAN_GENERIC;

	if (revisited)
		c->revisiting = false;
	if (best == c->best) {
		if (revisited && c->revisit < PLANMODE_REVISIT_MAX)
			c->revisit *= 2;
		return false;
	}
	c->best = best;
	c->revisit = PLANMODE_REVISIT;
	c->since = 0;
	return true;
}

enum plan_mode planmode_pick(struct planmode *pm, uint64_t key)
{
	struct choice *c = find(pm, key);
	enum plan_mode mode;

	if (!c) {
		c = &pm->slots[key % PLANMODE_SLOTS];
		*c = (struct choice){.key = key,
				     .best = PLAN_GENERIC,
				     .revisit = PLANMODE_REVISIT};
	}
	mode = choose(c);
	if (mode == PLAN_CUSTOM)
		pm->stats.custom++;
	else
		pm->stats.generic++;
	return mode;
}

bool planmode_learn(struct planmode *pm, uint64_t key, enum plan_mode mode,
		    double ms, struct planmode_choice *now)
{
	struct choice *c = find(pm, key);
	struct timings *t;

	if (!c || (mode != PLAN_GENERIC && mode != PLAN_CUSTOM))
		return false;
	t = mode == PLAN_CUSTOM ? &c->custom : &c->generic;
	t->ms[t->next] = (float)ms;
	t->next = (t->next + 1) % PLANMODE_SAMPLES;
	if (t->n < PLANMODE_SAMPLES)
		t->n++;
	if (!timed(c) || !decide(c, mode))
		return false;
	*now = (struct planmode_choice){.plan = c->best,
					.generic_ms = fastest(&c->generic),
					.custom_ms = fastest(&c->custom)};
	return true;
}

void planmode_get_stats(const struct planmode *pm, struct planmode_stats *out)
{
	*out = pm->stats;
}
