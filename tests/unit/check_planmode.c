/*
 * planmode: which plan a keyed statement runs on, from the times it is
 * told. Each test drives one table with made-up times, the way exec does:
 * pick, then learn the time of the plan picked.
 */
#include <check.h>

#include "planmode.h"
#include "suites.h"

#define KEY 12345

/* Tells a time; true when it changed the choice. */
static bool learn(struct planmode *pm, uint64_t key, enum plan_mode mode,
		  double ms)
{
	struct planmode_choice now;

	return planmode_learn(pm, key, mode, ms, &now);
}

/* Picks for key and tells the time of the plan picked; returns the plan. */
static enum plan_mode run(struct planmode *pm, uint64_t key, double generic_ms,
			  double custom_ms)
{
	enum plan_mode mode = planmode_pick(pm, key);

	ck_assert(mode == PLAN_GENERIC || mode == PLAN_CUSTOM);
	learn(pm, key, mode, mode == PLAN_CUSTOM ? custom_ms : generic_ms);
	return mode;
}

/* Runs n times and counts the custom plans. */
static int count_custom(struct planmode *pm, uint64_t key, int n,
			double generic_ms, double custom_ms)
{
	int custom = 0;

	for (int i = 0; i < n; i++)
		custom += run(pm, key, generic_ms, custom_ms) == PLAN_CUSTOM;
	return custom;
}

/* Until each plan has its samples, the plans take turns, generic first. */
START_TEST(test_both_plans_are_timed_first)
{
	struct planmode *pm = planmode_new();

	for (int i = 0; i < 2 * PLANMODE_SAMPLES; i++)
		ck_assert_int_eq(run(pm, KEY, 1, 1),
				 i % 2 ? PLAN_CUSTOM : PLAN_GENERIC);
	planmode_free(pm);
}
END_TEST

/* Picks made before any time comes back (concurrent requests) all go to
 * the plan timed less, and the next picks make up for it. */
START_TEST(test_picks_follow_the_times_learned)
{
	struct planmode *pm = planmode_new();

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(planmode_pick(pm, KEY), PLAN_GENERIC);
	for (int i = 0; i < 3; i++)
		learn(pm, KEY, PLAN_GENERIC, 1);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(run(pm, KEY, 1, 1), PLAN_CUSTOM);
	planmode_free(pm);
}
END_TEST

/* A custom plan faster past the margin wins once both are timed; the
 * generic plan wins when it is the faster. The other plan is timed again
 * PLANMODE_REVISIT runs later. */
START_TEST(test_the_faster_plan_wins)
{
	struct planmode *pm = planmode_new();
	double custom = 2.0 * (PLANMODE_MARGIN - 0.02);
	int n = PLANMODE_REVISIT;

	count_custom(pm, KEY, 2 * PLANMODE_SAMPLES, 2.0, custom);
	ck_assert_int_eq(count_custom(pm, KEY, n, 2.0, custom),
			 n - n / PLANMODE_REVISIT);
	count_custom(pm, KEY + 1, 2 * PLANMODE_SAMPLES, 1.5, 2.0);
	ck_assert_int_eq(count_custom(pm, KEY + 1, n, 1.5, 2.0),
			 n / PLANMODE_REVISIT);
	planmode_free(pm);
}
END_TEST

/* A custom plan faster by less than the margin may be noise: the generic
 * plan stays. */
START_TEST(test_generic_plan_kept_within_the_margin)
{
	struct planmode *pm = planmode_new();
	double custom = 2.0 * (PLANMODE_MARGIN + 0.02);
	int n = PLANMODE_REVISIT;

	count_custom(pm, KEY, 2 * PLANMODE_SAMPLES, 2.0, custom);
	ck_assert_int_eq(count_custom(pm, KEY, n, 2.0, custom),
			 n / PLANMODE_REVISIT);
	planmode_free(pm);
}
END_TEST

/* While revisits confirm the choice they grow twice as far apart, up to
 * PLANMODE_REVISIT_MAX runs. */
START_TEST(test_revisits_grow_apart)
{
	struct planmode *pm = planmode_new();
	int last = 0, gap = PLANMODE_REVISIT;

	count_custom(pm, KEY, 2 * PLANMODE_SAMPLES, 40.0, 1.0);
	for (int i = 1; i <= 6 * PLANMODE_REVISIT_MAX; i++) {
		if (run(pm, KEY, 40.0, 1.0) == PLAN_CUSTOM)
			continue;
		ck_assert_int_eq(i - last, gap);
		last = i;
		if (gap < PLANMODE_REVISIT_MAX)
			gap *= 2;
	}
	ck_assert_int_eq(gap, PLANMODE_REVISIT_MAX);
	ck_assert_int_gt(last, 4 * PLANMODE_REVISIT_MAX);
	planmode_free(pm);
}
END_TEST

/* Each plan's time is the fastest of its last ones: slow runs (waiting
 * for a core) do not change the choice until every time of the last few
 * is slow; one fast run shows at once what a plan can do. A new choice
 * brings the revisits back to PLANMODE_REVISIT runs. */
START_TEST(test_choice_follows_lasting_change_only)
{
	struct planmode *pm = planmode_new();

	count_custom(pm, KEY, 2 * PLANMODE_SAMPLES, 10.0, 1.0);
	for (int i = 0; i < PLANMODE_SAMPLES; i++)
		ck_assert_int_eq(run(pm, KEY, 10.0, 50.0), PLAN_CUSTOM);
	/* every custom time is now slow: the generic plan, and the custom
	 * one again on the last run of PLANMODE_REVISIT */
	ck_assert_int_eq(
		count_custom(pm, KEY, PLANMODE_REVISIT - 1, 10.0, 50.0), 0);
	ck_assert_int_eq(run(pm, KEY, 10.0, 50.0), PLAN_CUSTOM);
	/* fast again: chosen from its next revisit on, twice as far */
	ck_assert_int_eq(
		count_custom(pm, KEY, 2 * PLANMODE_REVISIT - 1, 10.0, 1.0), 0);
	ck_assert_int_eq(run(pm, KEY, 10.0, 1.0), PLAN_CUSTOM);
	ck_assert_int_eq(count_custom(pm, KEY, PLANMODE_REVISIT - 1, 10.0, 1.0),
			 PLANMODE_REVISIT - 1);
	ck_assert_int_eq(run(pm, KEY, 10.0, 1.0), PLAN_GENERIC);
	planmode_free(pm);
}
END_TEST

/* Statements are told apart by their key: the number of keys counts by
 * powers of two. */
START_TEST(test_keys_by_statement_and_power_of_two)
{
	uint64_t h = 0xabcdefULL;

	ck_assert(planmode_key(h, 100) == planmode_key(h, 127));
	ck_assert(planmode_key(h, 64) == planmode_key(h, 100));
	ck_assert(planmode_key(h, 127) != planmode_key(h, 128));
	ck_assert(planmode_key(h, 1) != planmode_key(h, 2));
	ck_assert(planmode_key(h, 100) != planmode_key(h + 1, 100));
	/* 0 marks an empty slot: the one hash that would give 0 */
	ck_assert(planmode_key(0x9e3779b97f4a7c15ULL, 1) != 0);
}
END_TEST

/* A statement whose slot another took starts over; a time for a statement
 * the table no longer holds is dropped. */
START_TEST(test_a_forgotten_statement_starts_over)
{
	struct planmode *pm = planmode_new();
	uint64_t a = KEY, b = KEY + 1024 * 7;

	count_custom(pm, a, 2 * PLANMODE_SAMPLES + 3, 10.0, 1.0);
	ck_assert_int_eq(run(pm, a, 10.0, 1.0), PLAN_CUSTOM);
	/* b takes a's slot */
	ck_assert_int_eq(planmode_pick(pm, b), PLAN_GENERIC);
	learn(pm, a, PLAN_GENERIC, 0.1);
	/* still no time for b: the generic plan again */
	ck_assert_int_eq(planmode_pick(pm, b), PLAN_GENERIC);
	/* a is timed anew, from the generic plan */
	ck_assert_int_eq(planmode_pick(pm, a), PLAN_GENERIC);
	learn(pm, a, PLAN_GENERIC, 2.0);
	ck_assert_int_eq(planmode_pick(pm, a), PLAN_CUSTOM);
	planmode_free(pm);
}
END_TEST

/* A change of plan is reported with the times it was made on; the first
 * choice only when it is the custom plan, the default being generic. */
START_TEST(test_changes_are_reported)
{
	struct planmode *pm = planmode_new();
	struct planmode_choice now = {0};

	/* a statement's first pick makes its slot */
	planmode_pick(pm, KEY);
	for (int i = 0; i < PLANMODE_SAMPLES; i++)
		ck_assert(!learn(pm, KEY, PLAN_GENERIC, 10.0 + i));
	for (int i = 0; i < PLANMODE_SAMPLES - 1; i++)
		ck_assert(!learn(pm, KEY, PLAN_CUSTOM, 1.0));
	ck_assert(planmode_learn(pm, KEY, PLAN_CUSTOM, 2.0, &now));
	ck_assert_int_eq(now.plan, PLAN_CUSTOM);
	ck_assert_double_eq_tol(now.generic_ms, 10.0, 1e-6);
	ck_assert_double_eq_tol(now.custom_ms, 1.0, 1e-6);
	ck_assert(!learn(pm, KEY, PLAN_CUSTOM, 1.0));
	for (int i = 0; i < PLANMODE_SAMPLES - 1; i++)
		ck_assert(!learn(pm, KEY, PLAN_CUSTOM, 30.0));
	ck_assert(planmode_learn(pm, KEY, PLAN_CUSTOM, 30.0, &now));
	ck_assert_int_eq(now.plan, PLAN_GENERIC);
	ck_assert_double_eq_tol(now.custom_ms, 30.0, 1e-6);
	/* generic from the start: nothing to report */
	planmode_pick(pm, KEY + 1);
	for (int i = 0; i < PLANMODE_SAMPLES; i++) {
		ck_assert(!learn(pm, KEY + 1, PLAN_GENERIC, 1.0));
		ck_assert(!learn(pm, KEY + 1, PLAN_CUSTOM, 1.0));
	}
	planmode_free(pm);
}
END_TEST

START_TEST(test_picks_are_counted)
{
	struct planmode *pm = planmode_new();
	struct planmode_stats st;

	count_custom(pm, KEY, 2 * PLANMODE_SAMPLES + 2, 10.0, 1.0);
	planmode_get_stats(pm, &st);
	ck_assert_int_eq(st.generic, PLANMODE_SAMPLES);
	ck_assert_int_eq(st.custom, PLANMODE_SAMPLES + 2);
	planmode_free(pm);
}
END_TEST

Suite *planmode_suite(void)
{
	Suite *s = suite_create("planmode");
	TCase *tc = tcase_create("choice");

	tcase_add_test(tc, test_both_plans_are_timed_first);
	tcase_add_test(tc, test_picks_follow_the_times_learned);
	tcase_add_test(tc, test_the_faster_plan_wins);
	tcase_add_test(tc, test_generic_plan_kept_within_the_margin);
	tcase_add_test(tc, test_revisits_grow_apart);
	tcase_add_test(tc, test_choice_follows_lasting_change_only);
	tcase_add_test(tc, test_keys_by_statement_and_power_of_two);
	tcase_add_test(tc, test_a_forgotten_statement_starts_over);
	tcase_add_test(tc, test_changes_are_reported);
	tcase_add_test(tc, test_picks_are_counted);
	suite_add_tcase(s, tc);
	return s;
}
