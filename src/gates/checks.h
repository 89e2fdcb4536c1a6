/*
 * checks.h - gate 3: the automated checks run on collected or uploaded data
 * before a person reviews it.
 *
 * Input is the manifest (every file with size and SHA-256). Each check
 * yields {name, result, message} with result "passed", "failed" or
 * "not-scanned". "not-scanned" is never "clean": it says a scanner was not
 * available, and the reviewer sees it. The malware scan (clamd) and archive
 * inspection arrive with later work; until a scanner is configured the
 * malware check reports "not-scanned".
 *
 * Ownership: *out_checks and *out_reason are new (json_decref / free).
 */
#ifndef AL_GATES_CHECKS_H
#define AL_GATES_CHECKS_H

#include <jansson.h>

#include "config/config.h"

/* Runs every check. *out_passed is 1 when nothing failed; *out_reason names
 * the first failure in words a person can act on (NULL when passed). */
int checks_run(const struct airlock_config *cfg, const json_t *manifest, json_t **out_checks,
	       int *out_passed, char **out_reason);

#endif
