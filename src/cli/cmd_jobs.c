/*
 * cmd_jobs.c - the hidden job subcommands the operator runs through the
 * runtime, where the data is:
 *
 *   airlock check-job    builds the manifest of the staged data and runs the
 *                        automated checks (gate 3)
 *   airlock publish-job  copies approved data into the workspace and proves
 *                        the copy is what was approved (gate 5)
 *
 * Their inputs come from flags or, when a flag is absent, from the variables
 * the runtime sets for the job's mounts (runtime.h). Each prints its result
 * as one final AIRLOCK-RESULT line on stdout (operator/jobresult.h); a
 * failure is a last line on stderr and a non-zero exit.
 */
#include "cli/args.h"
#include "cli/commands.h"
#include "common/error.h"
#include "common/util.h"
#include "config/config.h"
#include "gates/checks.h"
#include "operator/jobresult.h"
#include "operator/publish.h"
#include "rocrate/manifest.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

/* ---- check-job --------------------------------------------------------- */

static void check_job_usage(FILE *out)
{
	fprintf(out,
		"usage: airlock check-job [--data DIR] [--max-file-bytes N] [--max-total-bytes N] [--max-files N]\n"
		"                         [--allowed-extensions LIST] [--allowed-extension EXT]...\n\n"
		"Internal: run by the operator as a job. Builds the manifest of DIR (default\n"
		"$AIRLOCK_DATA_DIR), which it only reads, and runs the automated checks with the\n"
		"given limits (defaults: those of 'airlock serve'). LIST is comma-separated; an\n"
		"empty LIST allows no extension; --allowed-extension adds one extension exactly.\n"
		"Prints one final line on stdout:\n"
		"  AIRLOCK-RESULT {\"manifest\":{...},\"checks\":[...],\"passed\":true|false,\"reason\":\"...\"}\n"
		"Data that cannot be checked safely (a symbolic link, a device, too many files) is a\n"
		"failed check, reported without a manifest.\n"
		"Exit status: 0 a result was printed (passed or not), 1 failure, 2 usage error.\n");
}

/* Adds the comma-separated extensions of `list` (may be empty) to `arr`. */
static int add_extensions(json_t *arr, const char *list)
{
	const char *p = list;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		json_t *e;
		if (n && (!(e = json_stringn(p, n)) || json_array_append_new(arr, e) < 0))
			return -1;
		if (!comma)
			break;
		p = comma + 1;
	}
	return 0;
}

/* The result when the data cannot be checked at all. */
static int print_unsafe(const char *why)
{
	json_t *r = json_pack("{s:b, s:s}", "passed", 0, "reason", why);
	int rc = r ? job_result_print(stdout, r) : al_error_set(AL_ERR_NOMEM, "out of memory");
	json_decref(r);
	return rc;
}

int cmd_check_job(int argc, char **argv)
{
	struct airlock_config cfg;
	const char *data_flag = NULL, *dir;
	json_t *exts = json_array(), *manifest = NULL, *checks = NULL, *result = NULL;
	char *reason = NULL;
	int rc, passed = 0, status = 1, exts_given = 0;

	if (config_load(&cfg, NULL) < 0 || !exts) {
		fprintf(stderr, "airlock check-job: %s\n", exts ? al_error_message() : "out of memory");
		json_decref(exts);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		const char *v = NULL;
		uint64_t *num = NULL;
		int r;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			check_job_usage(stdout);
			status = 0;
			goto out;
		}
		if ((r = cli_take_opt(argc, argv, &i, "--data", &v)) > 0) {
			data_flag = v;
			continue;
		}
		if (!r && (r = cli_take_opt(argc, argv, &i, "--allowed-extensions", &v)) > 0) {
			exts_given = 1;
			if (add_extensions(exts, v) < 0) {
				fprintf(stderr, "airlock check-job: --allowed-extensions must be UTF-8 text\n");
				status = 2;
				goto out;
			}
			continue;
		}
		if (!r && (r = cli_take_opt(argc, argv, &i, "--allowed-extension", &v)) > 0) {
			exts_given = 1;
			if (!*v || json_array_append_new(exts, json_string(v)) < 0) {
				fprintf(stderr, "airlock check-job: --allowed-extension needs a non-empty UTF-8 extension\n");
				status = 2;
				goto out;
			}
			continue;
		}
		if (!r && (r = cli_take_opt(argc, argv, &i, "--max-file-bytes", &v)) > 0)
			num = &cfg.max_file_bytes;
		else if (!r && (r = cli_take_opt(argc, argv, &i, "--max-total-bytes", &v)) > 0)
			num = &cfg.max_total_bytes;
		else if (!r && (r = cli_take_opt(argc, argv, &i, "--max-files", &v)) > 0)
			num = &cfg.max_files;
		if (r < 0) {
			fprintf(stderr, "airlock check-job: %s needs a value\n", argv[i]);
			status = 2;
			goto out;
		}
		if (!r) {
			fprintf(stderr, "airlock check-job: unknown argument '%s'\n", argv[i]);
			check_job_usage(stderr);
			status = 2;
			goto out;
		}
		if (parse_u64(v, num) < 0) {
			fprintf(stderr, "airlock check-job: %s must be a whole number of at least 0, not '%s'\n", argv[i], v);
			status = 2;
			goto out;
		}
	}
	if (exts_given) {
		json_decref(cfg.allowed_extensions);
		cfg.allowed_extensions = json_incref(exts);
	}
	if (!(dir = cli_flag_or_env(data_flag, "AIRLOCK_DATA_DIR"))) {
		fprintf(stderr, "airlock check-job: no data directory: pass --data DIR or set AIRLOCK_DATA_DIR\n");
		status = 2;
		goto out;
	}

	rc = manifest_build(dir, &manifest);
	if (rc == AL_ERR_INVALID || rc == AL_ERR_TOO_LARGE) {
		/* Unsafe or oversized content: a check failure, not a crash. */
		char *why = util_strdup(al_error_message());
		rc = print_unsafe(why ? why : "the data cannot be checked safely");
		free(why);
		goto done;
	}
	if (rc < 0 || (rc = checks_run(&cfg, manifest, &checks, &passed, &reason)) < 0)
		goto done;
	result = json_pack("{s:O, s:O, s:b, s:s?}", "manifest", manifest, "checks", checks, "passed", passed, "reason",
			   reason);
	if (!result) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto done;
	}
	rc = job_result_print(stdout, result);
	if (rc == AL_ERR_TOO_LARGE) {
		/* The manifest cannot be recorded: the data cannot go further. */
		char why[256];
		snprintf(why, sizeof(why), "the manifest of %zu files is too large to record (over %zu MiB of JSON): "
			 "split the data into smaller datasources",
			 json_array_size(json_object_get(manifest, "files")), JOB_RESULT_MAX >> 20);
		rc = print_unsafe(why);
	}
done:
	if (rc < 0)
		fprintf(stderr, "airlock check-job: %s\n", al_error_message());
	status = rc < 0 ? 1 : 0;
out:
	json_decref(result);
	json_decref(manifest);
	json_decref(checks);
	json_decref(exts);
	free(reason);
	config_free(&cfg);
	return status;
}

/* ---- publish-job ------------------------------------------------------- */

static void publish_job_usage(FILE *out)
{
	fprintf(out,
		"usage: airlock publish-job --name NAME [--source DIR] [--target DIR] [--manifest FILE]\n\n"
		"Internal: run by the operator as a job. Copies the files listed in the approved\n"
		"manifest FILE (default $AIRLOCK_MANIFEST_FILE: the manifest as a JSON object) from\n"
		"DIR (default $AIRLOCK_SOURCE_DIR), which it only reads, into TARGET/NAME (TARGET\n"
		"default $AIRLOCK_TARGET_DIR), re-hashes the copy, makes it read-only and renames it\n"
		"into place only if its digest is the approved one. NAME is the datasource's name.\n"
		"Prints one final line on stdout:\n"
		"  AIRLOCK-RESULT {\"published\":\"TARGET/NAME\",\"digest\":\"<hex>\"}\n"
		"or, when the data no longer matches the manifest (nothing is published):\n"
		"  AIRLOCK-RESULT {\"dataChanged\":true,\"reason\":\"...\"}\n"
		"Exit status: 0 a result was printed, 1 failure, 2 usage error.\n");
}

static int load_manifest(const char *path, json_t **out)
{
	json_error_t jerr;
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if ((rc = util_read_file(path, JOB_RESULT_MAX, &text, &len)) < 0)
		return al_error_wrap(rc, "the approved manifest %s", path);
	*out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	if (!*out)
		return al_error_set(AL_ERR_INVALID, "the approved manifest %s is not valid JSON: %s", path, jerr.text);
	if (!json_is_object(*out) || !json_is_string(json_object_get(*out, "digest")) ||
	    !json_is_array(json_object_get(*out, "files"))) {
		json_decref(*out);
		*out = NULL;
		return al_error_set(AL_ERR_INVALID, "the approved manifest %s needs files and a digest", path);
	}
	return AL_OK;
}

int cmd_publish_job(int argc, char **argv)
{
	const char *name = NULL, *src_flag = NULL, *target_flag = NULL, *manifest_flag = NULL;
	const char *src, *target, *manifest_path;
	json_t *manifest = NULL, *result = NULL;
	char *dest = NULL;
	int rc;

	for (int i = 1; i < argc; i++) {
		static const char *const names[] = { "--name", "--source", "--target", "--manifest" };
		const char **slots[] = { &name, &src_flag, &target_flag, &manifest_flag };
		const char **slot = NULL;
		const char *v = NULL;
		int r = 0;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			publish_job_usage(stdout);
			return 0;
		}
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]) && !r; k++)
			if ((r = cli_take_opt(argc, argv, &i, names[k], &v)))
				slot = slots[k];
		if (r < 0) {
			fprintf(stderr, "airlock publish-job: %s needs a value\n", argv[i]);
			return 2;
		}
		if (!r) {
			fprintf(stderr, "airlock publish-job: unknown argument '%s'\n", argv[i]);
			publish_job_usage(stderr);
			return 2;
		}
		*slot = v;
	}
	src = cli_flag_or_env(src_flag, "AIRLOCK_SOURCE_DIR");
	target = cli_flag_or_env(target_flag, "AIRLOCK_TARGET_DIR");
	manifest_path = cli_flag_or_env(manifest_flag, "AIRLOCK_MANIFEST_FILE");
	if (!name || !src || !target || !manifest_path) {
		fprintf(stderr, "airlock publish-job: missing %s\n",
			!name ? "--name" : !src ? "the source: pass --source DIR or set AIRLOCK_SOURCE_DIR"
			: !target ? "the target: pass --target DIR or set AIRLOCK_TARGET_DIR"
				  : "the manifest: pass --manifest FILE or set AIRLOCK_MANIFEST_FILE");
		return 2;
	}
	if (runtime_check_name("datasource", name) < 0) {
		fprintf(stderr, "airlock publish-job: --name: %s\n", al_error_message());
		return 2;
	}
	if ((rc = load_manifest(manifest_path, &manifest)) < 0)
		goto out;
	if (!(dest = util_path_join(target, name))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = publish_copy_verified(src, manifest, dest);
	if (rc == AL_ERR_CONFLICT)
		result = json_pack("{s:b, s:s}", "dataChanged", 1, "reason", al_error_message());
	else if (rc == AL_OK)
		result = json_pack("{s:s, s:O}", "published", dest, "digest", json_object_get(manifest, "digest"));
	else
		goto out;
	rc = result ? job_result_print(stdout, result) : al_error_set(AL_ERR_NOMEM, "out of memory");
out:
	if (rc < 0)
		fprintf(stderr, "airlock publish-job: %s\n", al_error_message());
	json_decref(result);
	json_decref(manifest);
	free(dest);
	return rc < 0 ? 1 : 0;
}
