/*
 * Replays the fuzz corpora through the fuzz target's own check
 * (tests/fuzz/fuzz_one.h: spec -> resolve -> plan and its invariants)
 * against both schema fixtures: every input libFuzzer ever found in
 * tests/fuzz/regressions/ (crashes, leaks, timeouts, broken invariants,
 * kept with their fix) and the hand-written tests/fuzz/corpus/. Under
 * make asan and make valgrind that is the fuzzer's own sanitizer check.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "../fuzz/fuzz_one.h"
#include "suites.h"

static struct schema *plain, *overlay;

static void setup(void)
{
	ck_assert_int_eq(
		fuzz_load_schemas("tests/unit/fixtures", &plain, &overlay), 0);
}

static void teardown(void)
{
	schema_unref(plain);
	schema_unref(overlay);
}

/* Runs every regular file of dir; returns how many. */
static int replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_msg(d != NULL, "cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		char path[1024];
		size_t len = 0;
		char *data;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		data = fuzz_slurp(path, &len);
		if (!data)
			continue; /* not a file */
		fuzz_one(plain, NULL, (const unsigned char *)data, len);
		fuzz_one(overlay, FUZZ_HIDDEN_TABLE,
			 (const unsigned char *)data, len);
		free(data);
		n++;
	}
	closedir(d);
	return n;
}

START_TEST(test_fuzz_regressions_replay_clean)
{
	replay_dir("tests/fuzz/regressions");
}
END_TEST

START_TEST(test_fuzz_corpus_replays_clean)
{
	ck_assert_int_gt(replay_dir("tests/fuzz/corpus"), 0);
}
END_TEST

Suite *fuzz_suite(void)
{
	Suite *s = suite_create("fuzz");
	TCase *tc = tcase_create("replay");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_fuzz_regressions_replay_clean);
	tcase_add_test(tc, test_fuzz_corpus_replays_clean);
	suite_add_tcase(s, tc);
	return s;
}
