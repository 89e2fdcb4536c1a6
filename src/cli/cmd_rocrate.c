/*
 * airlock rocrate build DIR [--datasource FILE] [--action FILE] [--extras FILE]:
 * writes DIR/ro-crate-metadata.json with the same code every job runner uses
 * (src/rocrate/rocrate.h). --action and --extras let a runner that is not
 * part of this binary (the Python dlt runner) describe its run, so every
 * runner's crate has the same form: --action is the CreateAction (struct
 * rocrate_action as JSON), --extras is rocrate_build's file_extras.
 *
 * Both files are checked strictly (unknown keys, wrong types and values that
 * would overwrite the #source entity's own keys are refused) because a typo
 * would otherwise silently drop provenance.
 */
#include "cli/args.h"
#include "cli/commands.h"
#include "common/error.h"
#include "common/util.h"
#include "rocrate/rocrate.h"
#include "runner/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Generous: an action is a few hundred bytes; extras grow with the number of
 * files and columns (a 10,000-column table is about 400 KiB). */
#define ROCRATE_MAX_ACTION_FILE ((size_t)1 << 20)
#define ROCRATE_MAX_EXTRAS_FILE ((size_t)64 << 20)

static void rocrate_usage(FILE *out)
{
	fprintf(out, "usage: airlock rocrate build DIR [--datasource FILE] [--action FILE] [--extras FILE]\n\n"
		     "Writes DIR/ro-crate-metadata.json (RO-Crate 1.1) listing every file under DIR\n"
		     "(dotfiles skipped, symbolic links refused) with size, SHA-256 and media type; CSV\n"
		     "files also get their record count and columns. With --datasource, the dataset's\n"
		     "name, description, license, publisher and project come from that\n"
		     "AnalyticsWorkspaceDataSource (JSON or YAML).\n\n"
		     "For job runners outside this binary (see docs/runner.md):\n"
		     "  --action FILE   JSON object describing the collection run (a CreateAction):\n"
		     "                  {\"runnerName\": \"airlock-dlt-runner\", \"runnerVersion\": \"...\",\n"
		     "                   \"startTime\": \"<RFC 3339>\", \"endTime\": \"<RFC 3339>\",\n"
		     "                   \"succeeded\": true, \"error\": null, \"sourceName\": \"...\",\n"
		     "                   \"sourceDescription\": \"...\", \"sourceExtra\": {\"airlock:tables\": [...]}}\n"
		     "                  runnerName and succeeded are required; sourceExtra is a flat object\n"
		     "                  (strings, numbers, booleans, arrays of those) with no '@' keys.\n"
		     "                  Nothing in it may be a secret.\n"
		     "  --extras FILE   JSON object of what the runner knows per file, by relative path:\n"
		     "                  {\"patients.csv\": {\"rowCount\": 5, \"columns\": [\"id\", ...],\n"
		     "                                    \"columnTypes\": [\"INTEGER\", ...]}}\n"
		     "                  and \"size\" (bytes) with \"sha256\" (hex) when it hashed the file while\n"
		     "                  writing it (used only while the file still has that size).\n");
}

static int load_json_file(const char *what, const char *path, size_t max, json_t **out)
{
	json_error_t jerr;
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if ((rc = util_read_file(path, max, &text, &len)))
		return al_error_wrap(rc, "%s file %s", what, path);
	*out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	if (!*out)
		return al_error_set(AL_ERR_INVALID, "%s file %s: not valid JSON (line %d: %s)", what, path, jerr.line,
				    jerr.text);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return al_error_set(AL_ERR_INVALID, "%s file %s: expected a JSON object", what, path);
	}
	return AL_OK;
}

/* A string member, or NULL when absent or null; AL_ERR_INVALID otherwise. */
static int opt_string(const json_t *obj, const char *key, const char *path, const char **out)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return AL_OK;
	if (!json_is_string(v))
		return al_error_set(AL_ERR_INVALID, "action file %s: '%s' must be a string", path, key);
	*out = json_string_value(v);
	return AL_OK;
}

/* sourceExtra is merged into the #source entity: keep it flat JSON-LD
 * values, and never let it replace the entity's identity or type. */
static int check_source_extra(const json_t *extra, const char *path)
{
	const char *key;
	json_t *v, *item;
	size_t i;

	if (!json_is_object(extra))
		return al_error_set(AL_ERR_INVALID, "action file %s: 'sourceExtra' must be an object", path);
	json_object_foreach((json_t *)extra, key, v) {
		if (key[0] == '@')
			return al_error_set(AL_ERR_INVALID, "action file %s: sourceExtra key '%s' must not start "
							    "with '@'", path, key);
		if (json_is_object(v))
			return al_error_set(AL_ERR_INVALID, "action file %s: sourceExtra '%s' must be a string, "
							    "number, boolean or array of those", path, key);
		json_array_foreach(v, i, item) {
			if (json_is_object(item) || json_is_array(item))
				return al_error_set(AL_ERR_INVALID, "action file %s: sourceExtra '%s'[%zu] must be a "
								    "string, number or boolean", path, key, i);
		}
	}
	return AL_OK;
}

/* Fills *a from the action file's object; the strings stay borrowed from it. */
static int parse_action(const json_t *obj, const char *path, struct rocrate_action *a)
{
	static const char *const known[] = { "runnerName",  "runnerVersion", "startTime",	"endTime",
					     "succeeded",   "error",	     "sourceName",	"sourceDescription",
					     "sourceExtra" };
	const char *key;
	json_t *v;
	int rc;

	memset(a, 0, sizeof(*a));
	json_object_foreach((json_t *)obj, key, v) {
		size_t k;
		for (k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (!strcmp(key, known[k]))
				break;
		if (k == sizeof(known) / sizeof(known[0]))
			return al_error_set(AL_ERR_INVALID, "action file %s: unknown key '%s' (known: runnerName, "
							    "runnerVersion, startTime, endTime, succeeded, error, "
							    "sourceName, sourceDescription, sourceExtra)", path, key);
	}
	if ((rc = opt_string(obj, "runnerName", path, &a->runner_name)) ||
	    (rc = opt_string(obj, "runnerVersion", path, &a->runner_version)) ||
	    (rc = opt_string(obj, "startTime", path, &a->start_time)) ||
	    (rc = opt_string(obj, "endTime", path, &a->end_time)) ||
	    (rc = opt_string(obj, "error", path, &a->error)) ||
	    (rc = opt_string(obj, "sourceName", path, &a->source_name)) ||
	    (rc = opt_string(obj, "sourceDescription", path, &a->source_description)))
		return rc;
	if (!a->runner_name || !*a->runner_name)
		return al_error_set(AL_ERR_INVALID, "action file %s: 'runnerName' is required", path);
	v = json_object_get(obj, "succeeded");
	if (!json_is_boolean(v))
		return al_error_set(AL_ERR_INVALID, "action file %s: 'succeeded' is required and must be true or "
						    "false", path);
	a->succeeded = json_is_true(v);
	v = json_object_get(obj, "sourceExtra");
	if (v && !json_is_null(v)) {
		if ((rc = check_source_extra(v, path)))
			return rc;
		a->source_extra = v;
	}
	return AL_OK;
}

static int check_string_array(const json_t *v, const char *path, const char *file, const char *key)
{
	json_t *item;
	size_t i;

	if (!json_is_array(v))
		return al_error_set(AL_ERR_INVALID, "extras file %s: '%s'.%s must be an array of strings", path, file,
				    key);
	json_array_foreach(v, i, item) {
		if (!json_is_string(item))
			return al_error_set(AL_ERR_INVALID, "extras file %s: '%s'.%s[%zu] must be a string", path,
					    file, key, i);
	}
	return AL_OK;
}

/* Shape of rocrate_build's file_extras: relative path -> {rowCount,
 * columns, columnTypes, size, sha256}, all optional. */
static int check_extras(const json_t *extras, const char *path)
{
	const char *file, *key;
	json_t *x, *v;
	int rc;

	json_object_foreach((json_t *)extras, file, x) {
		if (!*file || file[0] == '/' || !strcmp(file, "..") || !strncmp(file, "../", 3) ||
		    strstr(file, "/../"))
			return al_error_set(AL_ERR_INVALID, "extras file %s: '%s' must be a path relative to the "
							    "directory", path, file);
		if (!json_is_object(x))
			return al_error_set(AL_ERR_INVALID, "extras file %s: '%s' must be an object", path, file);
		json_object_foreach(x, key, v) {
			if (!strcmp(key, "rowCount")) {
				if (!json_is_integer(v) || json_integer_value(v) < 0)
					return al_error_set(AL_ERR_INVALID, "extras file %s: '%s'.rowCount must be a "
									    "non-negative integer", path, file);
			} else if (!strcmp(key, "columns") || !strcmp(key, "columnTypes")) {
				if ((rc = check_string_array(v, path, file, key)))
					return rc;
			} else if (!strcmp(key, "size")) {
				if (!json_is_integer(v) || json_integer_value(v) < 0)
					return al_error_set(AL_ERR_INVALID, "extras file %s: '%s'.size must be a "
									    "non-negative integer", path, file);
			} else if (!strcmp(key, "sha256")) {
				const char *hex = json_string_value(v);
				if (!hex || strlen(hex) != UTIL_SHA256_HEX_LEN ||
				    strspn(hex, "0123456789abcdef") != UTIL_SHA256_HEX_LEN)
					return al_error_set(AL_ERR_INVALID, "extras file %s: '%s'.sha256 must be 64 "
									    "lowercase hex digits", path, file);
			} else {
				return al_error_set(AL_ERR_INVALID, "extras file %s: '%s': unknown key '%s' (known: "
								    "rowCount, columns, columnTypes, size, sha256)", path, file,
						    key);
			}
		}
	}
	return AL_OK;
}

int cmd_rocrate(int argc, char **argv)
{
	const char *dir = NULL, *ds_path = NULL, *action_path = NULL, *extras_path = NULL;
	json_t *ds = NULL, *action_json = NULL, *extras = NULL;
	struct rocrate_action action = { 0 };
	int rc;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		rocrate_usage(stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "build")) {
		fprintf(stderr, "airlock rocrate: expected the subcommand 'build'\n");
		rocrate_usage(stderr);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		static const char *const names[] = { "--datasource", "--action", "--extras" };
		const char **slots[] = { &ds_path, &action_path, &extras_path };
		const char **slot = NULL;
		const char *v = NULL;
		int r = 0;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			rocrate_usage(stdout);
			return 0;
		}
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]) && !r; k++)
			if ((r = cli_take_opt(argc, argv, &i, names[k], &v)))
				slot = slots[k];
		if (r < 0) {
			fprintf(stderr, "airlock rocrate build: %s needs a file\n", argv[i]);
			return 2;
		}
		if (r) {
			*slot = v;
		} else if (argv[i][0] == '-' || dir) {
			fprintf(stderr, "airlock rocrate build: unexpected argument '%s'\n", argv[i]);
			rocrate_usage(stderr);
			return 2;
		} else {
			dir = argv[i];
		}
	}
	if (!dir) {
		fprintf(stderr, "airlock rocrate build: which directory? (airlock rocrate build DIR)\n");
		return 2;
	}
	if (ds_path && (rc = runner_load_datasource(ds_path, &ds)))
		goto out;
	if (action_path && ((rc = load_json_file("action", action_path, ROCRATE_MAX_ACTION_FILE, &action_json)) ||
			    (rc = parse_action(action_json, action_path, &action))))
		goto out;
	if (extras_path && ((rc = load_json_file("extras", extras_path, ROCRATE_MAX_EXTRAS_FILE, &extras)) ||
			    (rc = check_extras(extras, extras_path))))
		goto out;
	rc = rocrate_write(dir, ds, action_json ? &action : NULL, extras);
	if (!rc)
		printf("wrote %s/%s\n", dir, ROCRATE_METADATA_FILE);
out:
	if (rc)
		fprintf(stderr, "airlock rocrate build: %s\n", al_error_message());
	json_decref(ds);
	json_decref(action_json);
	json_decref(extras);
	return rc ? 1 : 0;
}
