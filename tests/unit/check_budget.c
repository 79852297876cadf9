/*
 * Unit tests of the rows budget (budget.c) on an event_base of their own,
 * no database: the admission rule, the oldest request going past the limit,
 * the FIFO and its blocked head, every way a reservation or a hold is given
 * back (arrival, freeing, cancelling, the wait's timeout), and the table of
 * learned sizes.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "budget.h"
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

START_TEST(test_batches_that_fit_are_admitted_at_once)
{
	struct budget *b = budget_new(base, 100, 0);
	struct budget_user *u0 = budget_user_new(b), *u1 = budget_user_new(b);
	struct ticket t0 = {0}, t1 = {1};

	ck_assert_int_eq(budget_ask(u0, 40, false, on_admit, &t0), 1);
	ck_assert_int_eq(stats(b).reserved, 40);
	budget_arrived(u0, 45);
	ck_assert_int_eq(stats(b).reserved, 0);
	ck_assert_int_eq(stats(b).held, 45);
	/* 45 + 55 == 100: exactly the limit fits */
	ck_assert_int_eq(budget_ask(u1, 55, false, on_admit, &t1), 1);
	ck_assert_int_eq(stats(b).reserved, 55);
	ck_assert_int_eq(stats(b).waits, 0);
	budget_user_free(u0);
	budget_user_free(u1);
	ck_assert_int_eq(stats(b).held, 0);
	ck_assert_int_eq(stats(b).reserved, 0);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0); /* admitted at once: no cb */
	budget_free(b);
}
END_TEST

START_TEST(test_a_batch_past_the_limit_waits_for_a_release)
{
	struct budget *b = budget_new(base, 100, 0);
	struct budget_user *u0 = budget_user_new(b), *u1 = budget_user_new(b);
	struct ticket t1 = {1};

	ck_assert_int_eq(budget_ask(u0, 60, false, on_admit, NULL), 1);
	budget_arrived(u0, 60);
	ck_assert_int_eq(budget_ask(u1, 50, false, on_admit, &t1), 0);
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
	budget_arrived(u1, 70);
	ck_assert_int_eq(stats(b).held, 70);
	budget_user_free(u1);
	ck_assert_int_eq(stats(b).held, 0);
	budget_free(b);
}
END_TEST

/* Reserved estimates count too: a batch in flight keeps others out until
 * its results arrive (and then what they really took counts). */
START_TEST(test_arrival_replaces_the_estimate_with_the_actual_bytes)
{
	struct budget *b = budget_new(base, 100, 0);
	struct budget_user *u0 = budget_user_new(b), *u1 = budget_user_new(b);
	struct ticket t1 = {1};

	ck_assert_int_eq(budget_ask(u0, 90, false, on_admit, NULL), 1);
	ck_assert_int_eq(budget_ask(u1, 20, false, on_admit, &t1), 0);
	budget_arrived(u0, 30); /* smaller than expected */
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(stats(b).held, 30);
	ck_assert_int_eq(stats(b).reserved, 20);
	budget_user_free(u1); /* freed with a batch in flight */
	ck_assert_int_eq(stats(b).reserved, 0);
	budget_user_free(u0);
	budget_free(b);
}
END_TEST

/* The oldest request that holds, reserves or waits always goes, past the
 * limit: its rows and another's can never wait for each other. */
START_TEST(test_the_oldest_request_goes_past_the_limit)
{
	struct budget *b = budget_new(base, 100, 0);
	struct budget_user *old = budget_user_new(b),
			   *young = budget_user_new(b);
	struct ticket ty = {1};

	/* the young one asks first: alone, it is the oldest active one */
	ck_assert_int_eq(budget_ask(young, 150, false, on_admit, &ty), 1);
	budget_arrived(young, 150);
	/* the older request (started first) goes at once, over the limit */
	ck_assert_int_eq(budget_ask(old, 80, false, on_admit, NULL), 1);
	budget_arrived(old, 80);
	ck_assert_int_eq(stats(b).held, 230);
	/* now the young one is not the oldest: it waits ... */
	ck_assert_int_eq(budget_ask(young, 10, false, on_admit, &ty), 0);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0);
	/* ... until the old one ends: then it is the oldest, and goes even
	 * though 150 + 10 is past the limit */
	budget_user_free(old);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(stats(b).held, 150);
	budget_user_free(young);
	budget_free(b);
}
END_TEST

/* The FIFO: a later batch that would fit does not pass a head that does
 * not (no starvation of large batches), releases admit in order, and the
 * oldest request's batch goes even from behind a blocked head. */
START_TEST(test_fifo_order_and_the_blocked_head)
{
	struct budget *b = budget_new(base, 100, 0);
	struct budget_user *a = budget_user_new(b), *u1 = budget_user_new(b),
			   *u2 = budget_user_new(b), *u3 = budget_user_new(b);
	struct ticket t1 = {1}, t2 = {2}, t3 = {3};

	ck_assert_int_eq(budget_ask(a, 70, false, on_admit, NULL), 1);
	budget_arrived(a, 70);
	ck_assert_int_eq(budget_ask(u3, 20, false, on_admit, &t3), 1);
	budget_arrived(u3, 20); /* held 90 */
	ck_assert_int_eq(budget_ask(u2, 40, false, on_admit, &t2), 0);
	/* 5 would fit, but u2 waits first */
	ck_assert_int_eq(budget_ask(u1, 5, false, on_admit, &t1), 0);
	ck_assert_int_eq(stats(b).waiting, 2);
	/* a ends: held 20; u2 (head, 40) fits, then u1 */
	budget_user_free(a);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 2);
	ck_assert_int_eq(seen.admitted[0], 2);
	ck_assert_int_eq(seen.admitted[1], 1);
	budget_arrived(u2, 40);
	budget_arrived(u1, 5); /* held 65 */

	/* u3 waits with 50 (65 + 50 > 100); u1, the oldest now, asks for
	 * 60 and goes at once, past the queue and the limit */
	ck_assert_int_eq(budget_ask(u3, 50, false, on_admit, &t3), 0);
	ck_assert_int_eq(stats(b).waiting, 1);
	seen.nadmitted = 0;
	ck_assert_int_eq(budget_ask(u1, 60, false, on_admit, &t1), 1);
	budget_arrived(u1, 60); /* held 125 */
	budget_user_free(u2);	/* held 85: u3 still does not fit */
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0);
	ck_assert_int_eq(stats(b).waiting, 1);
	budget_user_free(u1); /* held 20: u3 fits, and is the oldest */
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(seen.admitted[0], 3);
	budget_user_free(u3);
	ck_assert_int_eq(stats(b).held, 0);
	ck_assert_int_eq(stats(b).reserved, 0);
	budget_free(b);
}
END_TEST

/* The oldest request waiting behind a head that does not fit. */
START_TEST(test_the_oldest_passes_a_blocked_head)
{
	struct budget *b = budget_new(base, 100, 0);
	struct budget_user *a = budget_user_new(b), *old = budget_user_new(b),
			   *head = budget_user_new(b), *d = budget_user_new(b);
	struct ticket to = {1}, th = {2};

	ck_assert_int_eq(budget_ask(a, 70, false, on_admit, NULL), 1);
	budget_arrived(a, 70);
	ck_assert_int_eq(budget_ask(d, 20, false, on_admit, NULL), 1);
	budget_arrived(d, 20);
	ck_assert_int_eq(budget_ask(head, 90, false, on_admit, &th), 0);
	/* old is not the oldest yet (a is) */
	ck_assert_int_eq(budget_ask(old, 85, false, on_admit, &to), 0);
	budget_user_free(a); /* held 20: neither fits; old is the oldest */
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(seen.admitted[0], 1);
	ck_assert_int_eq(stats(b).waiting, 1);
	budget_user_free(old);
	budget_user_free(d);
	budget_user_free(head); /* waiting: leaves the queue */
	ck_assert_int_eq(stats(b).waiting, 0);
	ck_assert_int_eq(stats(b).held, 0);
	ck_assert_int_eq(stats(b).reserved, 0);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	budget_free(b);
}
END_TEST

/* A batch whose size is unknown takes what is free: such batches go one at
 * a time until their sizes are learned. */
START_TEST(test_an_unknown_batch_reserves_all_that_is_free)
{
	struct budget *b = budget_new(base, 100, 0);
	struct budget_user *a = budget_user_new(b), *u1 = budget_user_new(b),
			   *u2 = budget_user_new(b);
	struct ticket t2 = {2};

	ck_assert_int_eq(budget_ask(a, 30, false, on_admit, NULL), 1);
	budget_arrived(a, 30);
	ck_assert_int_eq(budget_ask(u1, 10, true, on_admit, NULL), 1);
	ck_assert_int_eq(stats(b).reserved, 70);
	/* even one estimated at 0 (all its statements unknown) waits */
	ck_assert_int_eq(budget_ask(u2, 0, true, on_admit, &t2), 0);
	budget_arrived(u1, 5);
	ck_assert_int_eq(stats(b).reserved, 0);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 1);
	ck_assert_int_eq(stats(b).reserved, 65);
	budget_user_free(u2);
	budget_user_free(u1);
	budget_user_free(a);
	ck_assert_int_eq(stats(b).reserved, 0);
	ck_assert_int_eq(stats(b).held, 0);
	budget_free(b);
}
END_TEST

START_TEST(test_a_cancelled_wait_never_fires_and_frees_its_place)
{
	struct budget *b = budget_new(base, 100, 0);
	struct budget_user *a = budget_user_new(b), *u1 = budget_user_new(b),
			   *u2 = budget_user_new(b);
	struct ticket t1 = {1}, t2 = {2};

	ck_assert_int_eq(budget_ask(a, 90, false, on_admit, NULL), 1);
	budget_arrived(a, 90);
	ck_assert_int_eq(budget_ask(u1, 50, false, on_admit, &t1), 0);
	ck_assert_int_eq(budget_ask(u2, 10, false, on_admit, &t2), 0);
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
	ck_assert_int_eq(stats(b).reserved, 0);
	ck_assert_int_eq(stats(b).held, 0);
	ck_assert_int_eq(stats(b).waits, 2);
	budget_free(b);
}
END_TEST

START_TEST(test_a_wait_past_the_timeout_is_503)
{
	struct budget *b = budget_new(base, 100, 50);
	struct budget_user *a = budget_user_new(b), *u1 = budget_user_new(b);
	struct ticket t1 = {1};

	ck_assert_int_eq(budget_ask(a, 100, false, on_admit, NULL), 1);
	budget_arrived(a, 100);
	ck_assert_int_eq(budget_ask(u1, 1, false, on_admit, &t1), 0);
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
		u[i] = budget_user_new(b);
		ck_assert_int_eq(budget_ask(u[i], 1000, true, on_admit, NULL),
				 1);
		budget_arrived(u[i], 1000);
	}
	ck_assert_int_eq(stats(b).held, 4000);
	ck_assert_int_eq(stats(b).reserved, 0);
	ck_assert_int_eq(stats(b).waits, 0);
	for (int i = 0; i < 4; i++)
		budget_user_free(u[i]);
	ck_assert_int_eq(stats(b).held, 0);
	budget_free(b);
}
END_TEST

/* Users still alive when the budget goes (a drain that timed out) are
 * detached: freeing them later is safe. */
START_TEST(test_users_outliving_the_budget)
{
	struct budget *b = budget_new(base, 10, 0);
	struct budget_user *a = budget_user_new(b), *u1 = budget_user_new(b);

	ck_assert_int_eq(budget_ask(a, 10, false, on_admit, NULL), 1);
	budget_arrived(a, 10);
	ck_assert_int_eq(budget_ask(u1, 10, false, on_admit, NULL), 0);
	budget_free(b);
	budget_arrived(a, 5);
	budget_user_free(u1);
	budget_user_free(a);
	run_loop();
	ck_assert_int_eq(seen.nadmitted, 0);
}
END_TEST

START_TEST(test_learned_sizes)
{
	struct budget *b = budget_new(base, 100, 0);
	uint64_t keyed = budget_sql_hash("SELECT ... WHERE id = ANY($1)");
	uint64_t plain = budget_sql_hash("SELECT ... FROM author");
	size_t bytes = 1;

	ck_assert(keyed != plain);
	ck_assert(keyed != 0 && budget_sql_hash("") != 0);
	ck_assert(!budget_estimate(b, keyed, 10, &bytes));
	ck_assert_int_eq(bytes, 0);
	/* per key for keyed statements */
	budget_learn(b, keyed, 10, 1000);
	ck_assert(budget_estimate(b, keyed, 5, &bytes));
	ck_assert_int_eq(bytes, 500);
	ck_assert(budget_estimate(b, keyed, 10000, &bytes));
	ck_assert_int_eq(bytes, 1000000);
	/* per execution for the others; the last one counts */
	budget_learn(b, plain, 0, 4096);
	budget_learn(b, plain, 0, 2048);
	ck_assert(budget_estimate(b, plain, 0, &bytes));
	ck_assert_int_eq(bytes, 2048);
	/* a collision (same slot, another text) overwrites */
	budget_learn(b, plain + 256, 0, 7);
	ck_assert(!budget_estimate(b, plain, 0, &bytes));
	ck_assert(budget_estimate(b, plain + 256, 0, &bytes));
	ck_assert_int_eq(bytes, 7);
	ck_assert(budget_estimate(b, keyed, 1, &bytes));
	ck_assert_int_eq(bytes, 100);
	budget_free(b);
}
END_TEST

Suite *budget_suite(void)
{
	Suite *s = suite_create("budget");
	TCase *tc = tcase_create("admission");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_batches_that_fit_are_admitted_at_once);
	tcase_add_test(tc, test_a_batch_past_the_limit_waits_for_a_release);
	tcase_add_test(
		tc, test_arrival_replaces_the_estimate_with_the_actual_bytes);
	tcase_add_test(tc, test_the_oldest_request_goes_past_the_limit);
	tcase_add_test(tc, test_fifo_order_and_the_blocked_head);
	tcase_add_test(tc, test_the_oldest_passes_a_blocked_head);
	tcase_add_test(tc, test_an_unknown_batch_reserves_all_that_is_free);
	tcase_add_test(tc,
		       test_a_cancelled_wait_never_fires_and_frees_its_place);
	tcase_add_test(tc, test_a_wait_past_the_timeout_is_503);
	tcase_add_test(tc, test_no_limit_admits_everything_and_counts);
	tcase_add_test(tc, test_users_outliving_the_budget);
	tcase_add_test(tc, test_learned_sizes);
	suite_add_tcase(s, tc);
	return s;
}
