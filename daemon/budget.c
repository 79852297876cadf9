/*
 * The rows budget (see budget.h). Users that have asked are "active" and
 * kept in start order, so the oldest is the first; waiting users are a
 * FIFO. A user's reservation is its estimate less what it holds already,
 * so that nothing is counted twice. Admissions from the queue happen in a
 * callback of their own (pump_ev), never inside budget_done or
 * budget_user_free: those run deep in an exec's or a request's teardown,
 * and an admission starts another request.
 */
#include "budget.h"

#include <stdlib.h>
#include <sys/queue.h>

/* Learned sizes: a small table indexed by the shape's hash, overwritten
 * on collision. Shapes are few in practice; forgetting one only makes its
 * next request "unknown". */
#define LEARNED_SLOTS 256

struct learned {
	uint64_t shape; /* 0: empty */
	size_t bytes;	/* held by its last complete request */
};

struct budget_user {
	struct budget *b; /* NULL once the budget is freed */
	unsigned long seq;
	uint64_t shape;
	size_t held, reserved;
	bool active;   /* has asked: in b->active */
	bool waiting;  /* in b->waits_q */
	bool admitted; /* never waits again */
	budget_admit_cb cb;
	void *arg;
	struct event *timer; /* the wait's timeout, made on first wait */
	TAILQ_ENTRY(budget_user) active_link;
	TAILQ_ENTRY(budget_user) wait_link;
};

TAILQ_HEAD(user_list, budget_user);

struct budget {
	struct event_base *base;
	size_t limit;
	int wait_timeout_ms;
	size_t held, reserved;
	int nwaiting;
	unsigned long waits;
	unsigned long next_seq;
	struct user_list active; /* by seq: the first is the oldest */
	struct user_list waits_q;
	struct event *pump_ev;
	struct learned table[LEARNED_SLOTS];
};

/* ---- the learned sizes ---- */

static size_t slot_of(uint64_t shape)
{
	return (size_t)(shape % LEARNED_SLOTS);
}

bool budget_estimate(const struct budget *b, uint64_t shape, size_t *bytes)
{
	const struct learned *l = &b->table[slot_of(shape)];

	*bytes = 0;
	if (l->shape != shape || shape == 0)
		return false;
	*bytes = l->bytes;
	return true;
}

static void learn(struct budget *b, uint64_t shape, size_t bytes)
{
	struct learned *l = &b->table[slot_of(shape)];

	l->shape = shape;
	l->bytes = bytes;
}

/* ---- admission ---- */

static size_t free_bytes(const struct budget *b)
{
	size_t used = b->held + b->reserved;

	return used < b->limit ? b->limit - used : 0;
}

/* An unknown request also needs some room to take: one that reserved all
 * that was free must keep the next unknown one (est 0) out. */
static bool fits(const struct budget *b, size_t est, bool unknown)
{
	size_t used = b->held + b->reserved;

	if (b->limit == 0)
		return true;
	return unknown ? used + est < b->limit : used + est <= b->limit;
}

/* Looked up again each time: a request of the same shape that ended while
 * u waited may have taught its size. */
static bool user_fits(const struct budget_user *u)
{
	size_t est;
	bool unknown = !budget_estimate(u->b, u->shape, &est);

	return fits(u->b, est, unknown);
}

static bool is_oldest(const struct budget_user *u)
{
	return TAILQ_FIRST(&u->b->active) == u;
}

/* Admits u: from now on it never waits. It holds nothing yet (it asks
 * before its first statement), so all of its estimate is reserved. */
static void reserve(struct budget_user *u)
{
	size_t want;
	bool unknown = !budget_estimate(u->b, u->shape, &want);

	if (unknown && u->b->limit && free_bytes(u->b) > want)
		want = free_bytes(u->b);
	u->admitted = true;
	u->reserved = want;
	u->b->reserved += want;
}

/* In start order, so that the first active user is the oldest. */
static void activate(struct budget_user *u)
{
	struct budget_user *before;

	u->active = true;
	TAILQ_FOREACH_REVERSE(before, &u->b->active, user_list, active_link)
	{
		if (before->seq < u->seq) {
			TAILQ_INSERT_AFTER(&u->b->active, before, u,
					   active_link);
			return;
		}
	}
	TAILQ_INSERT_HEAD(&u->b->active, u, active_link);
}

static void leave_queue(struct budget_user *u)
{
	TAILQ_REMOVE(&u->b->waits_q, u, wait_link);
	u->b->nwaiting--;
	u->waiting = false;
	if (u->timer)
		evtimer_del(u->timer);
}

/* held or reserved went down, or the queue's head left: admissions are
 * looked at again from the loop. */
static void schedule_pump(struct budget *b)
{
	if (b->nwaiting > 0)
		event_active(b->pump_ev, 0, 0);
}

/* The next request to admit from the queue: the head while it fits (one that
 * does not blocks those behind it), or the oldest user's wherever it is. */
static struct budget_user *next_admissible(struct budget *b)
{
	struct budget_user *u;
	bool blocked = false;

	TAILQ_FOREACH (u, &b->waits_q, wait_link) {
		if (!blocked && user_fits(u))
			return u;
		if (is_oldest(u))
			return u;
		blocked = true;
	}
	return NULL;
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
	struct budget *b = arg;
	struct budget_user *u;

	/* At most the requests queued now: a callback cannot keep us here. */
	for (int n = b->nwaiting; n > 0 && (u = next_admissible(b)); n--) {
		leave_queue(u);
		reserve(u);
		u->cb(NULL, u->arg); /* may free u, ask or free others */
	}
}

/* The same 503 that a request gets when no pool connection comes in time,
 * but with the code of --max-concurrent's 503: the database is fine, this
 * process is at its capacity, and database_unavailable would send the
 * operator to the wrong place. The client's answer is the same: retry
 * (Retry-After: 1). */
static void on_wait_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct budget_user *u = arg;
	struct budget *b = u->b;
	struct pf_err err;

	leave_queue(u);
	/* The head leaving may unblock those behind it. */
	schedule_pump(b);
	pf_err_set(&err, 503, "overloaded", "",
		   "timed out waiting for memory to hold its rows "
		   "(--max-held-mb)");
	u->cb(&err, u->arg);
}

static int enqueue(struct budget_user *u, budget_admit_cb cb, void *arg)
{
	struct budget *b = u->b;

	if (b->wait_timeout_ms > 0 && !u->timer) {
		u->timer = evtimer_new(b->base, on_wait_timeout, u);
		if (!u->timer)
			return -1;
	}
	if (u->timer) {
		struct timeval tv = {b->wait_timeout_ms / 1000,
				     (b->wait_timeout_ms % 1000) * 1000};

		if (evtimer_add(u->timer, &tv) < 0)
			return -1;
	}
	u->cb = cb;
	u->arg = arg;
	u->waiting = true;
	TAILQ_INSERT_TAIL(&b->waits_q, u, wait_link);
	b->nwaiting++;
	b->waits++;
	return 0;
}

int budget_ask(struct budget_user *u, budget_admit_cb cb, void *arg)
{
	struct budget *b = u->b;

	if (!b || u->admitted)
		return 1;
	if (u->waiting)
		return 0;
	if (!u->active)
		activate(u);
	/* Nothing jumps the queue but the oldest: otherwise a stream of
	 * small requests could keep a large one waiting for ever. */
	if ((b->nwaiting == 0 && user_fits(u)) || is_oldest(u)) {
		reserve(u);
		return 1;
	}
	return enqueue(u, cb, arg);
}

void budget_cancel(struct budget_user *u)
{
	if (!u || !u->b || !u->waiting)
		return;
	leave_queue(u);
	schedule_pump(u->b);
}

/* held + reserved stays the same until held passes the estimate: no
 * room is freed, so nothing to pump. */
void budget_hold(struct budget_user *u, size_t bytes)
{
	struct budget *b = u->b;
	size_t used = bytes < u->reserved ? bytes : u->reserved;

	if (!b)
		return;
	u->reserved -= used;
	b->reserved -= used;
	u->held += bytes;
	b->held += bytes;
}

void budget_done(struct budget_user *u)
{
	struct budget *b = u->b;

	if (!b || !u->admitted)
		return;
	learn(b, u->shape, u->held);
	b->reserved -= u->reserved;
	u->reserved = 0;
	schedule_pump(b);
}

struct budget_user *budget_user_new(struct budget *b, uint64_t shape)
{
	struct budget_user *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->b = b;
	u->shape = shape;
	u->seq = b->next_seq++;
	return u;
}

void budget_user_free(struct budget_user *u)
{
	struct budget *b;

	if (!u)
		return;
	b = u->b;
	if (b) {
		if (u->waiting)
			leave_queue(u);
		if (u->active)
			TAILQ_REMOVE(&b->active, u, active_link);
		b->held -= u->held;
		b->reserved -= u->reserved;
		schedule_pump(b);
	}
	if (u->timer)
		event_free(u->timer);
	free(u);
}

void budget_get_stats(const struct budget *b, struct budget_stats *out)
{
	*out = (struct budget_stats){.limit = b->limit,
				     .held = b->held,
				     .reserved = b->reserved,
				     .waiting = b->nwaiting,
				     .waits = b->waits};
}

/* ---- the budget ---- */

struct budget *budget_new(struct event_base *base, size_t limit,
			  int wait_timeout_ms)
{
	struct budget *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->base = base;
	b->limit = limit;
	b->wait_timeout_ms = wait_timeout_ms;
	TAILQ_INIT(&b->active);
	TAILQ_INIT(&b->waits_q);
	b->pump_ev = event_new(base, -1, 0, on_pump, b);
	if (!b->pump_ev) {
		free(b);
		return NULL;
	}
	return b;
}

void budget_free(struct budget *b)
{
	struct budget_user *u;

	if (!b)
		return;
	while ((u = TAILQ_FIRST(&b->waits_q)))
		leave_queue(u);
	while ((u = TAILQ_FIRST(&b->active))) {
		TAILQ_REMOVE(&b->active, u, active_link);
		u->active = false;
		u->b = NULL;
	}
	event_free(b->pump_ev);
	free(b);
}
