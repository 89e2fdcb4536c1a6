/*
 * airlock run-job: the native job runner (see src/runner/runner.h for the
 * contract every runner shares).
 */
#include "cli/args.h"
#include "cli/commands.h"
#include "common/error.h"
#include "runner/runner.h"
#include "runner/source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_job_usage(FILE *out)
{
	fprintf(out, "usage: airlock run-job [--datasource FILE] [--output DIR] [--credentials FILE]\n"
		     "                       [--format csv|csv.gz] [--quiet]\n\n"
		     "Collects every spec.objects[].table of an AnalyticsWorkspaceDataSource (JSON or YAML)\n"
		     "into DIR/<table>.csv (RFC 4180, CRLF, header row; .csv.gz with --format csv.gz), or for\n"
		     "a file connection DIR/<file name>, and writes DIR/ro-crate-metadata.json.\n"
		     "Connection types: %s (see docs/runner.md for their urls).\n"
		     "The credentials file is a JSON object of key -> string with mode 0600 or stricter.\n"
		     "A flag that is absent is taken from the environment, as the operator's import job\n"
		     "gets its mounts: --datasource from $AIRLOCK_DATASOURCE_FILE, --output from\n"
		     "$AIRLOCK_OUTPUT_DIR, --credentials from $AIRLOCK_CREDENTIALS_FILE. Flags win.\n"
		     "--format from $AIRLOCK_OUTPUT_FORMAT (default csv).\n"
		     "Exit status: 0 success, 1 failure, 2 usage error.\n",
		source_types());
}

int cmd_run_job(int argc, char **argv)
{
	const char *ds_path = NULL, *out_dir = NULL, *cred_path = NULL, *format = NULL;
	struct runner_options opts = { .progress = 1 };
	json_t *ds = NULL, *creds = NULL;
	int rc;

	for (int i = 1; i < argc; i++) {
		const char **slot = NULL;
		const char *v = NULL;
		int r = 0;
		static const char *const names[] = { "--datasource", "--output", "--credentials", "--format" };
		const char **slots[] = { &ds_path, &out_dir, &cred_path, &format };

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			run_job_usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
			opts.progress = 0;
			continue;
		}
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]) && !r; k++)
			if ((r = cli_take_opt(argc, argv, &i, names[k], &v)))
				slot = slots[k];
		if (r < 0) {
			fprintf(stderr, "airlock run-job: %s needs a value\n", argv[i]);
			return 2;
		}
		if (!r) {
			fprintf(stderr, "airlock run-job: unknown argument '%s'\n", argv[i]);
			run_job_usage(stderr);
			return 2;
		}
		*slot = v;
	}
	ds_path = cli_flag_or_env(ds_path, "AIRLOCK_DATASOURCE_FILE");
	out_dir = cli_flag_or_env(out_dir, "AIRLOCK_OUTPUT_DIR");
	cred_path = cli_flag_or_env(cred_path, "AIRLOCK_CREDENTIALS_FILE");
	if (!ds_path || !out_dir) {
		fprintf(stderr, "airlock run-job: --datasource and --output are required (or $AIRLOCK_DATASOURCE_FILE "
				"and $AIRLOCK_OUTPUT_DIR)\n");
		run_job_usage(stderr);
		return 2;
	}
	format = cli_flag_or_env(format, "AIRLOCK_OUTPUT_FORMAT");
	if (!format || !*format || !strcmp(format, "csv")) {
		opts.format = RUNNER_FORMAT_CSV;
	} else if (!strcmp(format, "csv.gz")) {
		opts.format = RUNNER_FORMAT_CSV_GZ;
	} else {
		fprintf(stderr, "airlock run-job: --format %s is not supported (supported: csv, csv.gz)\n", format);
		return 2;
	}
	if ((rc = runner_load_datasource(ds_path, &ds)))
		goto out;
	if (cred_path && (rc = runner_load_credentials(cred_path, &creds)))
		goto out;
	opts.output_dir = out_dir;
	rc = runner_run(ds, creds, &opts);
out:
	if (rc)
		fprintf(stderr, "airlock run-job: %s\n", al_error_message());
	runner_credentials_free(creds);
	json_decref(ds);
	return rc ? 1 : 0;
}
