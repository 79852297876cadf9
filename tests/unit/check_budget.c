/*
 * Unit tests of the rows budget (budget.c) on an event_base of their own,
 * no database: the admission rule, a request asked once whose reservation
 * shrinks as its held bytes grow, the oldest request going past the limit,
 * the FIFO and its blocked head, every way a reservation or a hold is given
 * back (done, freeing, cancelling, the wait's timeout), and the sizes
 * learned per shape.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "budget.h"
#include "hash.h"
#include "suites.h"

static struct event_base *base;

/* What an admission callback saw, in order. */
struct seen {
	int admitted[16]; /* ids, in the order admitted */
	int nadmitted;
	int failed; /* errors */
	int status;
	char code[32];
};

static struct seen seen;

struct ticket {
	int id;
};

static void on_admit(const struct pf_err *err, void *arg)
{
	const struct ticket *t = arg;

	if (err) {
		seen.failed++;
		seen.status = err->status;
		snprintf(seen.code, sizeof(seen.code), "%s", err->code);
		return;
	}
	ck_assert_int_lt(seen.nadmitted, 16);
	seen.admitted[seen.nadmitted++] = t->id;
}

static void setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	memset(&seen, 0, sizeof(seen));
}

static void teardown(void)
{
	event_base_free(base);
	base = NULL;
}

/* Runs what the loop has ready (the budget's admissions). */
static void run_loop(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
}

static struct budget_stats stats(const struct budget *b)
{
	struct budget_stats st;

	budget_get_stats(b, &st);
	return st;
}

/* Everything held or reserved has come back. */
static void assert_all_given_back(const struct budget *b)
{
	ck_assert_int_eq(stats(b).held, 0);
	ck_assert_int_eq(stats(b).reserved, 0);
}

/* A shape whose last complete request held bytes (taught by one that ran
 * alone, before the test's users start). */
static uint64_t shape(struct budget *b, const char *sql, size_t bytes)
{
	uint64_t h = text_hash(0, sql);
	struct budget_user *u = budget_user_new(b, h);

	ck_assert_int_eq(budget_ask(u, on_admit, NULL), 1);
	budget_hold(u, bytes);
	budget_done(u);
	budget_user_free(u);
	return h;
}

/* A user of a shape with a learned size, which asks. */
static struct budget_user *ask(struct budget *b, uint64_t h, int want,
			       struct ticket *t)
{
	struct budget_user *u = budget_user_new(b, h);

	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(budget_ask(u, on_admit, t), want);
	return u;
}

START_TEST(test_requests_that_fit_are_admitted_at_once)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t s40 = shape(b, "s40", 40), s55 = shape(b, "s55", 55);
	struct budget_user *u0, *u1;
	struct ticket t0 = {0}, t1 = {1};

	assert_all_given_back(b);
	u0 = ask(b, s40, 1, &t0);
	ck_assert_int_eq(stats(b).reserved, 40);
	budget_hold(u0, 45); /* past its estimate: held 45, reserved 0 */
	ck_assert_int_eq(stats(b).reserved, 0);
	ck_assert_int_eq(stats(b).held, 45);
	/* 45 + 55 == 100: exactly the limit fits */
	u1 = ask(b, s55, 1, &t1);
	ck_assert_int_eq(stats(b).reserved, 55);
	ck_assert_int_eq(stats(b).waits, 0);
	budget_user_free(u0);
	budget_user_free(u1);
	assert_all_given_back(b);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0); /* admitted at once: no cb */
	budget_free(b);
}
END_TEST

START_TEST(test_a_request_past_the_limit_waits_for_a_release)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t s60 = shape(b, "s60", 60), s50 = shape(b, "s50", 50);
	struct budget_user *u0, *u1;
	struct ticket t1 = {1};

	u0 = ask(b, s60, 1, NULL);
	budget_hold(u0, 60);
	u1 = ask(b, s50, 0, &t1);
	ck_assert_int_eq(stats(b).waiting, 1);
	ck_assert_int_eq(stats(b).waits, 1);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0);
	/* the request holding 60 ends: the waiter goes, from the loop */
	budget_user_free(u0);
	ck_assert_int_eq(seen.nadmitted, 0);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(seen.admitted[0], 1);
	ck_assert_int_eq(stats(b).waiting, 0);
	ck_assert_int_eq(stats(b).reserved, 50);
	budget_hold(u1, 70);
	ck_assert_int_eq(stats(b).held, 70);
	ck_assert_int_eq(stats(b).reserved, 0);
	budget_user_free(u1);
	assert_all_given_back(b);
	budget_free(b);
}
END_TEST

/* What a request holds comes out of what it reserved: its share of the
 * total is max(estimate, held), never both; when its results are all in,
 * the part it did not use goes back, and others go. */
START_TEST(test_the_reservation_shrinks_as_held_grows)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t s90 = shape(b, "s90", 90), s20 = shape(b, "s20", 20);
	struct budget_user *u0, *u1;
	struct ticket t1 = {1};

	u0 = ask(b, s90, 1, NULL);
	ck_assert_int_eq(stats(b).reserved, 90);
	budget_hold(u0, 30);
	ck_assert_int_eq(stats(b).held, 30);
	ck_assert_int_eq(stats(b).reserved, 60);
	/* 30 + 60 + 20 > 100: counted once, still too much */
	u1 = ask(b, s20, 0, &t1);
	budget_hold(u0, 40);
	ck_assert_int_eq(stats(b).held, 70);
	ck_assert_int_eq(stats(b).reserved, 20);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0);
	/* done at 70: the 20 it did not use go back, u1 fits (70 + 20) */
	budget_done(u0);
	ck_assert_int_eq(stats(b).reserved, 0);
	ck_assert_int_eq(stats(b).held, 70);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(stats(b).reserved, 20);
	/* past its estimate it holds more, and nothing is reserved */
	budget_hold(u1, 15);
	ck_assert_int_eq(stats(b).reserved, 5);
	budget_hold(u1, 15);
	ck_assert_int_eq(stats(b).reserved, 0);
	ck_assert_int_eq(stats(b).held, 100);
	budget_user_free(u0);
	ck_assert_int_eq(stats(b).held, 30);
	budget_user_free(u1);
	assert_all_given_back(b);
	budget_free(b);
}
END_TEST

/* Admitted once, a request never waits again, whatever it holds; asking
 * again changes nothing. */
START_TEST(test_a_request_is_asked_once)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t s10 = shape(b, "s10", 10);
	struct budget_user *a, *u1;
	struct ticket t1 = {1};

	a = ask(b, s10, 1, NULL);
	budget_hold(a, 150); /* far past its estimate and the limit */
	ck_assert_int_eq(stats(b).held, 150);
	ck_assert_int_eq(budget_ask(a, on_admit, NULL), 1);
	ck_assert_int_eq(stats(b).reserved, 0);
	u1 = ask(b, s10, 0, &t1);
	/* a second ask of a waiting request does not queue it twice */
	ck_assert_int_eq(budget_ask(u1, on_admit, &t1), 0);
	ck_assert_int_eq(stats(b).waiting, 1);
	ck_assert_int_eq(stats(b).waits, 1);
	budget_hold(a, 50);
	ck_assert_int_eq(stats(b).held, 200);
	budget_user_free(a);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(budget_ask(u1, on_admit, &t1), 1);
	ck_assert_int_eq(stats(b).reserved, 10);
	ck_assert_int_eq(stats(b).waits, 1);
	budget_user_free(u1);
	budget_free(b);
}
END_TEST

/* The oldest request that holds, reserves or waits always goes, past the
 * limit: no request can wait for ever behind younger ones. */
START_TEST(test_the_oldest_request_goes_past_the_limit)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t s150 = shape(b, "s150", 150), s80 = shape(b, "s80", 80),
		 s120 = shape(b, "s120", 120);
	struct budget_user *old, *young, *last;
	struct ticket ty = {1}, tl = {2};

	old = budget_user_new(b, s80);
	young = budget_user_new(b, s150);
	last = budget_user_new(b, s120);
	/* the young one asks first: alone, it is the oldest active one,
	 * and goes although 150 is past the limit */
	ck_assert_int_eq(budget_ask(young, on_admit, &ty), 1);
	budget_hold(young, 150);
	/* the older request (started first) goes at once, over the limit */
	ck_assert_int_eq(budget_ask(old, on_admit, NULL), 1);
	budget_hold(old, 80);
	ck_assert_int_eq(stats(b).held, 230);
	ck_assert_int_eq(budget_ask(last, on_admit, &tl), 0);
	budget_user_free(old);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0);
	/* once young ends, last is the oldest: alone, 120 goes */
	budget_user_free(young);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(seen.admitted[0], 2);
	ck_assert_int_eq(stats(b).reserved, 120);
	budget_user_free(last);
	budget_free(b);
}
END_TEST

/* The FIFO: a later request that would fit does not pass a head that does
 * not (no starvation of large requests), and releases admit in order. */
START_TEST(test_fifo_order_and_the_blocked_head)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t s70 = shape(b, "s70", 70), s5 = shape(b, "s5", 5),
		 s40 = shape(b, "s40", 40), s20 = shape(b, "s20", 20),
		 s50 = shape(b, "s50", 50);
	struct budget_user *a = budget_user_new(b, s70),
			   *u1 = budget_user_new(b, s5),
			   *u2 = budget_user_new(b, s40),
			   *u3 = budget_user_new(b, s20), *u4;
	struct ticket t1 = {1}, t2 = {2}, t3 = {3}, t4 = {4};

	ck_assert_int_eq(budget_ask(a, on_admit, NULL), 1);
	budget_hold(a, 70);
	ck_assert_int_eq(budget_ask(u3, on_admit, &t3), 1);
	budget_hold(u3, 20); /* held 90 */
	ck_assert_int_eq(budget_ask(u2, on_admit, &t2), 0);
	/* 5 would fit, but u2 waits first */
	ck_assert_int_eq(budget_ask(u1, on_admit, &t1), 0);
	ck_assert_int_eq(stats(b).waiting, 2);
	/* a ends: held 20; u2 (head, 40) fits, then u1 */
	budget_user_free(a);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 2);
	ck_assert_int_eq(seen.admitted[0], 2);
	ck_assert_int_eq(seen.admitted[1], 1);
	budget_hold(u2, 40);
	budget_hold(u1, 5); /* held 65 */
	u4 = ask(b, s50, 0, &t4);
	budget_user_free(u3); /* held 45: 45 + 50 fits */
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 3);
	ck_assert_int_eq(seen.admitted[2], 4);
	budget_user_free(u1);
	budget_user_free(u2);
	budget_user_free(u4);
	assert_all_given_back(b);
	budget_free(b);
}
END_TEST

/* The oldest request waiting behind a head that does not fit. */
START_TEST(test_the_oldest_passes_a_blocked_head)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t s70 = shape(b, "s70", 70), s85 = shape(b, "s85", 85),
		 s90 = shape(b, "s90", 90), s20 = shape(b, "s20", 20);
	struct budget_user *a = budget_user_new(b, s70),
			   *old = budget_user_new(b, s85),
			   *head = budget_user_new(b, s90),
			   *d = budget_user_new(b, s20);
	struct ticket to = {1}, th = {2};

	ck_assert_int_eq(budget_ask(a, on_admit, NULL), 1);
	budget_hold(a, 70);
	ck_assert_int_eq(budget_ask(d, on_admit, NULL), 1);
	budget_hold(d, 20);
	ck_assert_int_eq(budget_ask(head, on_admit, &th), 0);
	/* old is not the oldest yet (a is) */
	ck_assert_int_eq(budget_ask(old, on_admit, &to), 0);
	budget_user_free(a); /* held 20: neither fits; old is the oldest */
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(seen.admitted[0], 1);
	ck_assert_int_eq(stats(b).waiting, 1);
	budget_user_free(old);
	budget_user_free(d);
	budget_user_free(head); /* waiting: leaves the queue */
	ck_assert_int_eq(stats(b).waiting, 0);
	assert_all_given_back(b);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	budget_free(b);
}
END_TEST

/* A request of an unknown shape takes what is free: such requests go one
 * at a time until their size is learned; one that waited with the same
 * shape then goes with the size learned meanwhile. */
START_TEST(test_an_unknown_shape_reserves_all_that_is_free)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t s30 = shape(b, "s30", 30), x = text_hash(0, "unseen");
	struct budget_user *a = budget_user_new(b, s30),
			   *u1 = budget_user_new(b, x),
			   *u2 = budget_user_new(b, x);
	struct ticket t2 = {2};
	size_t est;

	ck_assert_int_eq(budget_ask(a, on_admit, NULL), 1);
	budget_hold(a, 30);
	ck_assert_int_eq(budget_ask(u1, on_admit, NULL), 1);
	ck_assert_int_eq(stats(b).reserved, 70);
	/* even with nothing estimated, the next unknown one waits */
	ck_assert_int_eq(budget_ask(u2, on_admit, &t2), 0);
	budget_hold(u1, 5);
	ck_assert_int_eq(stats(b).reserved, 65);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0);
	ck_assert(!budget_estimate(b, x, &est));
	budget_done(u1); /* x takes 5 */
	ck_assert(budget_estimate(b, x, &est));
	ck_assert_int_eq(est, 5);
	ck_assert_int_eq(stats(b).reserved, 0);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(stats(b).reserved, 5);
	budget_user_free(u2);
	budget_user_free(u1);
	budget_user_free(a);
	ck_assert_int_eq(stats(b).reserved, 0);
	assert_all_given_back(b);
	budget_free(b);
}
END_TEST

START_TEST(test_a_cancelled_wait_never_fires_and_frees_its_place)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t s90 = shape(b, "s90", 90), s50 = shape(b, "s50", 50),
		 s10 = shape(b, "s10", 10);
	struct budget_user *a, *u1, *u2;
	struct ticket t1 = {1}, t2 = {2};

	a = ask(b, s90, 1, NULL);
	budget_hold(a, 90);
	u1 = ask(b, s50, 0, &t1);
	u2 = ask(b, s10, 0, &t2);
	budget_cancel(u1); /* the client left */
	budget_cancel(u1); /* twice is harmless */
	ck_assert_int_eq(stats(b).waiting, 1);
	run_loop(); /* u2 is the head now, and 90 + 10 fits */
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(seen.admitted[0], 2);
	budget_user_free(a);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	budget_user_free(u1);
	budget_user_free(u2);
	assert_all_given_back(b);
	ck_assert_int_eq(stats(b).waits, 2);
	budget_free(b);
}
END_TEST

START_TEST(test_a_wait_past_the_timeout_is_503)
{
	struct budget *b = budget_new(base, 100, 50);
	uint64_t s100 = shape(b, "s100", 100), s1 = shape(b, "s1", 1);
	struct budget_user *a, *u1;
	struct ticket t1 = {1};

	a = ask(b, s100, 1, NULL);
	budget_hold(a, 100);
	u1 = ask(b, s1, 0, &t1);
	event_base_loop(base, EVLOOP_ONCE); /* blocks until the timer */
	ck_assert_int_eq(seen.failed, 1);
	ck_assert_int_eq(seen.status, 503);
	ck_assert_str_eq(seen.code, "overloaded");
	ck_assert_int_eq(seen.nadmitted, 0);
	ck_assert_int_eq(stats(b).waiting, 0);
	ck_assert_int_eq(stats(b).reserved, 0);
	budget_user_free(u1);
	budget_user_free(a);
	budget_free(b);
}
END_TEST

START_TEST(test_no_limit_admits_everything_and_counts)
{
	struct budget *b = budget_new(base, 0, 0);
	struct budget_user *u[4];

	for (int i = 0; i < 4; i++) {
		u[i] = ask(b, text_hash(0, "unseen"), 1, NULL);
		budget_hold(u[i], 1000);
	}
	ck_assert_int_eq(stats(b).held, 4000);
	ck_assert_int_eq(stats(b).reserved, 0);
	ck_assert_int_eq(stats(b).waits, 0);
	for (int i = 0; i < 4; i++)
		budget_user_free(u[i]);
	assert_all_given_back(b);
	budget_free(b);
}
END_TEST

/* Users still alive when the budget goes (a drain that timed out) are
 * detached: freeing them later is safe. */
START_TEST(test_users_outliving_the_budget)
{
	struct budget *b = budget_new(base, 10, 0);
	uint64_t s10 = shape(b, "s10", 10);
	struct budget_user *a, *u1;

	a = ask(b, s10, 1, NULL);
	budget_hold(a, 10);
	u1 = ask(b, s10, 0, NULL);
	budget_free(b);
	budget_hold(a, 5);
	budget_done(a);
	ck_assert_int_eq(budget_ask(u1, on_admit, NULL), 1);
	budget_user_free(u1);
	budget_user_free(a);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0);
}
END_TEST

/* A shape's size is what its last complete request held in all; a request
 * that ends without budget_done (failed, cancelled) teaches nothing. */
START_TEST(test_sizes_are_learned_per_shape_when_a_request_completes)
{
	struct budget *b = budget_new(base, 1000, 0);
	uint64_t h = text_hash(text_hash(0, "SELECT main"), "SELECT $1");
	uint64_t other = text_hash(text_hash(0, "SELECT $1"), "SELECT main");
	struct budget_user *u;
	size_t bytes = 1;

	ck_assert(h != other);
	ck_assert(text_hash(text_hash(0, "ab"), "c") !=
		  text_hash(text_hash(0, "a"), "bc"));
	ck_assert(text_hash(0, "") != 0);
	ck_assert(!budget_estimate(b, h, &bytes));
	ck_assert_int_eq(bytes, 0);

	/* the bytes of every batch, learned at the end */
	u = ask(b, h, 1, NULL);
	budget_hold(u, 100);
	budget_hold(u, 200);
	ck_assert(!budget_estimate(b, h, &bytes));
	budget_done(u);
	budget_user_free(u);
	ck_assert(budget_estimate(b, h, &bytes));
	ck_assert_int_eq(bytes, 300);
	ck_assert(!budget_estimate(b, other, &bytes));

	/* a failed one teaches nothing */
	u = ask(b, h, 1, NULL);
	ck_assert_int_eq(stats(b).reserved, 300);
	budget_hold(u, 7);
	budget_user_free(u);
	ck_assert(budget_estimate(b, h, &bytes));
	ck_assert_int_eq(bytes, 300);

	/* the last complete one counts, smaller or larger */
	u = ask(b, h, 1, NULL);
	budget_hold(u, 120);
	budget_done(u);
	budget_user_free(u);
	ck_assert(budget_estimate(b, h, &bytes));
	ck_assert_int_eq(bytes, 120);

	/* a collision (same slot, another shape) overwrites */
	u = ask(b, h + 256, 1, NULL);
	budget_done(u);
	budget_user_free(u);
	ck_assert(!budget_estimate(b, h, &bytes));
	ck_assert(budget_estimate(b, h + 256, &bytes));
	ck_assert_int_eq(bytes, 0);
	assert_all_given_back(b);
	budget_free(b);
}
END_TEST

Suite *budget_suite(void)
{
	Suite *s = suite_create("budget");
	TCase *tc = tcase_create("admission");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_requests_that_fit_are_admitted_at_once);
	tcase_add_test(tc, test_a_request_past_the_limit_waits_for_a_release);
	tcase_add_test(tc, test_the_reservation_shrinks_as_held_grows);
	tcase_add_test(tc, test_a_request_is_asked_once);
	tcase_add_test(tc, test_the_oldest_request_goes_past_the_limit);
	tcase_add_test(tc, test_fifo_order_and_the_blocked_head);
	tcase_add_test(tc, test_the_oldest_passes_a_blocked_head);
	tcase_add_test(tc, test_an_unknown_shape_reserves_all_that_is_free);
	tcase_add_test(tc,
		       test_a_cancelled_wait_never_fires_and_frees_its_place);
	tcase_add_test(tc, test_a_wait_past_the_timeout_is_503);
	tcase_add_test(tc, test_no_limit_admits_everything_and_counts);
	tcase_add_test(tc, test_users_outliving_the_budget);
	tcase_add_test(
		tc, test_sizes_are_learned_per_shape_when_a_request_completes);
	suite_add_tcase(s, tc);
	return s;
}
