/*
 * The unit test suites, one per module (check_<module>.c). check_main.c runs
 * every suite listed here; a new module adds its prototype and one line there.
 */
#pragma once

#include <check.h>

Suite *spec_suite(void);
Suite *graph_suite(void);
Suite *plan_suite(void);
Suite *schema_suite(void);
Suite *fuzz_suite(void);
Suite *budget_suite(void);
Suite *planmode_suite(void);
