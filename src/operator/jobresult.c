/*
 * jobresult.c - the AIRLOCK-RESULT line: written by the check and publish
 * jobs, read back by the reconciler from the job's output.
 */
#include "operator/jobresult.h"
#include "common/error.h"
#include "common/util.h"
#include "rocrate/manifest.h"

#include <stdlib.h>
#include <string.h>

#define PREFIX_LEN (sizeof(JOB_RESULT_PREFIX) - 1)
/* How much of an unexpected last line an error message quotes. */
#define QUOTE_MAX 160

int job_result_print(FILE *out, const json_t *result)
{
	char *text;
	size_t len;
	int rc = AL_OK;

	if (!json_is_object(result))
		return al_error_set(AL_ERR_INTERNAL, "a job result must be a JSON object");
	/* Compact: JSON strings escape newlines, so this is one line. */
	if (!(text = json_dumps(result, JSON_COMPACT | JSON_PRESERVE_ORDER)))
		return al_error_set(AL_ERR_NOMEM, "out of memory writing the job result");
	len = strlen(text);
	if (len + PREFIX_LEN > JOB_RESULT_MAX) {
		rc = al_error_set(AL_ERR_TOO_LARGE, "the job result is %zu bytes, more than the %zu a result may hold",
				  len + PREFIX_LEN, JOB_RESULT_MAX);
		goto out;
	}
	if (fputs(JOB_RESULT_PREFIX, out) == EOF || fwrite(text, 1, len, out) != len || fputc('\n', out) == EOF ||
	    fflush(out) == EOF)
		rc = al_error_set(AL_ERR_IO, "cannot write the job result to standard output");
out:
	free(text);
	return rc;
}

static int is_space(char c)
{
	return c == '\n' || c == '\r' || c == ' ' || c == '\t';
}

/* The last line quoted for a message: printable ASCII only, cut short. */
static void quote_line(const char *s, size_t n, char out[QUOTE_MAX + 4])
{
	size_t k = 0;
	for (size_t i = 0; i < n && k < QUOTE_MAX; i++)
		out[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (n > QUOTE_MAX) {
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k] = '\0';
}

int job_result_parse(const char *output, json_t **out)
{
	char quoted[QUOTE_MAX + 4];
	const char *start, *end;
	json_error_t jerr;
	json_t *o;
	size_t len;

	*out = NULL;
	if (!output)
		output = "";
	end = output + strlen(output);
	while (end > output && is_space(end[-1]))
		end--;
	if (end == output)
		return al_error_set(AL_ERR_INVALID, "the job printed nothing: no result line");
	start = end;
	while (start > output && start[-1] != '\n')
		start--;
	len = (size_t)(end - start);
	if (len > JOB_RESULT_MAX)
		return al_error_set(AL_ERR_TOO_LARGE, "the job's result line is %zu bytes, more than the %zu allowed", len,
				    JOB_RESULT_MAX);
	if (len < PREFIX_LEN || memcmp(start, JOB_RESULT_PREFIX, PREFIX_LEN)) {
		quote_line(start, len, quoted);
		return al_error_set(AL_ERR_INVALID, "the job ended without a result line; its last line was: %s", quoted);
	}
	o = json_loadb(start + PREFIX_LEN, len - PREFIX_LEN, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return al_error_set(AL_ERR_INVALID, "the job's result line is not valid JSON: %s (column %d)", jerr.text,
				    jerr.column);
	if (!json_is_object(o)) {
		json_decref(o);
		return al_error_set(AL_ERR_INVALID, "the job's result is not a JSON object");
	}
	*out = o;
	return AL_OK;
}

/* A manifest as manifest_build makes it, with a digest that matches its files. */
static int check_manifest(const json_t *m)
{
	const char *digest = json_string_value(json_object_get(m, "digest"));
	const json_t *files = json_object_get(m, "files");
	char want[65];
	size_t i;
	json_t *f;
	int rc;

	if (!json_is_object(m) || !digest || !json_is_array(files))
		return al_error_set(AL_ERR_INVALID, "the check result's manifest needs files and a digest");
	json_array_foreach(files, i, f)
		if (!json_is_string(json_object_get(f, "path")) || !json_is_integer(json_object_get(f, "size")) ||
		    json_integer_value(json_object_get(f, "size")) < 0 || !json_is_string(json_object_get(f, "sha256")))
			return al_error_set(AL_ERR_INVALID, "the check result's manifest: files[%zu] needs path, size "
					    "and sha256", i);
	if ((rc = manifest_digest(files, want)) < 0)
		return rc;
	if (strcmp(want, digest))
		return al_error_set(AL_ERR_INVALID, "the check result's manifest digest %.12s does not match its "
				    "files (%.12s)", digest, want);
	return AL_OK;
}

void check_result_free(struct check_result *r)
{
	if (!r)
		return;
	json_decref(r->manifest);
	json_decref(r->checks);
	free(r->reason);
	memset(r, 0, sizeof(*r));
}

int job_result_parse_check(const char *output, struct check_result *out)
{
	json_t *o = NULL, *passed, *reason, *manifest, *checks;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = job_result_parse(output, &o)) < 0)
		return rc;
	passed = json_object_get(o, "passed");
	reason = json_object_get(o, "reason");
	manifest = json_object_get(o, "manifest");
	checks = json_object_get(o, "checks");
	if (!json_is_boolean(passed)) {
		rc = al_error_set(AL_ERR_INVALID, "the check result needs \"passed\": true or false");
		goto out;
	}
	out->passed = json_is_true(passed);
	if (reason && !json_is_null(reason) && !json_is_string(reason)) {
		rc = al_error_set(AL_ERR_INVALID, "the check result's reason must be a string");
		goto out;
	}
	if (checks && !json_is_array(checks)) {
		rc = al_error_set(AL_ERR_INVALID, "the check result's checks must be an array");
		goto out;
	}
	if (manifest && (rc = check_manifest(manifest)) < 0)
		goto out;
	if (out->passed && (!manifest || !checks)) {
		rc = al_error_set(AL_ERR_INVALID, "a passing check result needs the manifest and the checks");
		goto out;
	}
	if (!out->passed && !json_string_value(reason)) {
		rc = al_error_set(AL_ERR_INVALID, "a failing check result needs a reason");
		goto out;
	}
	if ((json_string_value(reason) && !(out->reason = util_strdup(json_string_value(reason))))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	out->manifest = json_incref(manifest);
	out->checks = json_incref(checks);
out:
	if (rc < 0)
		check_result_free(out);
	json_decref(o);
	return rc;
}

void publish_result_free(struct publish_result *r)
{
	if (!r)
		return;
	free(r->published);
	free(r->digest);
	free(r->reason);
	memset(r, 0, sizeof(*r));
}

int job_result_parse_publish(const char *output, struct publish_result *out)
{
	json_t *o = NULL, *changed;
	const char *published, *digest, *reason;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = job_result_parse(output, &o)) < 0)
		return rc;
	changed = json_object_get(o, "dataChanged");
	published = json_string_value(json_object_get(o, "published"));
	digest = json_string_value(json_object_get(o, "digest"));
	reason = json_string_value(json_object_get(o, "reason"));
	if (changed && !json_is_boolean(changed)) {
		rc = al_error_set(AL_ERR_INVALID, "the publish result's dataChanged must be true or false");
		goto out;
	}
	if (json_is_true(changed)) {
		out->data_changed = 1;
		if (!(out->reason = util_strdup(reason && *reason ? reason : "the data no longer matches the approved "
									    "manifest")))
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!published || !*published || !digest || !*digest) {
		rc = al_error_set(AL_ERR_INVALID, "the publish result needs \"published\" and \"digest\", or "
				  "\"dataChanged\": true");
		goto out;
	}
	if (!(out->published = util_strdup(published)) || !(out->digest = util_strdup(digest)))
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
out:
	if (rc < 0)
		publish_result_free(out);
	json_decref(o);
	return rc;
}
