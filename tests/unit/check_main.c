/*
 * The unit test runner: one SRunner over every suite of suites.h. Exits
 * non-zero when any test fails. CK_FORK=no runs the tests in-process (for
 * valgrind and LeakSanitizer).
 */
#include <stdlib.h>

#include "suites.h"

/* One line per suite of suites.h. */
static Suite *(*const suites[])(void) = {
	spec_suite, graph_suite,  plan_suite,	  schema_suite,
	fuzz_suite, budget_suite, planmode_suite,
};

int main(void)
{
	SRunner *sr = srunner_create(NULL);
	int failed;

	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		srunner_add_suite(sr, suites[i]());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
