/*
 * jobresult.h - how a job hands its result back to the reconciler. Jobs run
 * where the data is (a local child process, a Kubernetes pod); the operator
 * only sees their output (runtime_job_logs) and their end (runtime_job_get).
 *
 * A job that has a result prints it as ONE line, the last of its output:
 *
 *     AIRLOCK-RESULT {compact JSON object}\n
 *
 * and exits 0. A job that fails prints a line a person can act on on stderr
 * (the runtime's failure reason is the last line of output) and exits
 * non-zero, without a result line. A result line longer than JOB_RESULT_MAX
 * is refused on both sides.
 *
 * The results:
 *   check-job    {"manifest": {...}, "checks": [...], "passed": true|false, "reason": "..."}
 *                (manifest and checks absent when the data could not be
 *                checked safely, e.g. a symbolic link; reason absent when
 *                passed)
 *   publish-job  {"published": "<path as the job sees it>", "digest": "<hex>"}
 *                or {"dataChanged": true, "reason": "..."}
 *
 * Ownership: outputs are new (json_decref / the _free functions).
 */
#ifndef AL_OPERATOR_JOBRESULT_H
#define AL_OPERATOR_JOBRESULT_H

#include <jansson.h>
#include <stdio.h>

#define JOB_RESULT_PREFIX "AIRLOCK-RESULT "
#define JOB_RESULT_MAX (((size_t)32) << 20)

/* Writes the result line for `result` (an object) to `out` and flushes it.
 * AL_ERR_TOO_LARGE (nothing written) when the line would exceed
 * JOB_RESULT_MAX; AL_ERR_IO when it cannot be written. */
int job_result_print(FILE *out, const json_t *result);

/* Finds the result in a job's output: its last non-empty line must be a
 * result line holding a JSON object. AL_ERR_INVALID (naming what was found
 * instead) or AL_ERR_TOO_LARGE otherwise. */
int job_result_parse(const char *output, json_t **out);

struct check_result {
	json_t *manifest;   /* NULL when the data could not be checked */
	json_t *checks;     /* NULL likewise */
	int passed;
	char *reason;       /* NULL when passed */
};

/* Parses and validates a check-job result: passed is a boolean; a manifest,
 * when present, has files and a digest that matches them (recomputed);
 * passing needs a manifest and checks; failing needs a reason. */
int job_result_parse_check(const char *output, struct check_result *out);
void check_result_free(struct check_result *r);

struct publish_result {
	int data_changed;   /* 1: nothing was published, see reason */
	char *published;    /* the published directory, as the job saw it */
	char *digest;       /* the digest of what was published */
	char *reason;       /* data_changed: why */
};

/* Parses and validates a publish-job result (one of the two shapes). */
int job_result_parse_publish(const char *output, struct publish_result *out);
void publish_result_free(struct publish_result *r);

#endif
