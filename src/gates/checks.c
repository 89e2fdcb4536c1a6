#include "gates/checks.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int add_check(json_t *checks, const char *name, const char *result, const char *message)
{
	json_t *c = json_pack("{s:s, s:s, s:s}", "name", name, "result", result, "message", message);
	if (!c || json_array_append_new(checks, c) < 0)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

static int extension_allowed(const json_t *allowed, const char *path)
{
	const char *base = strrchr(path, '/');
	const char *dot;
	size_t i;
	json_t *e;

	base = base ? base + 1 : path;
	if (!strcmp(base, "ro-crate-metadata.json"))
		return 1;
	dot = strrchr(base, '.');
	if (!dot || dot == base)
		return 0;
	json_array_foreach((json_t *)allowed, i, e)
		if (!strcasecmp(dot + 1, json_string_value(e)))
			return 1;
	return 0;
}

static int name_is_safe(const char *path)
{
	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			return 0;
	return !util_path_escapes(path);
}

int checks_run(const struct airlock_config *cfg, const json_t *manifest, json_t **out_checks,
	       int *out_passed, char **out_reason)
{
	const json_t *files = json_object_get(manifest, "files");
	json_t *checks = json_array();
	struct buf why;
	uint64_t total = 0, largest = 0;
	const char *largest_path = NULL, *bad_type = NULL, *bad_name = NULL;
	size_t n = json_array_size(files), i;
	json_t *f;
	int rc = AL_OK, passed = 1;

	*out_checks = NULL;
	*out_reason = NULL;
	buf_init(&why, 4096);
	if (!checks) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	json_array_foreach(files, i, f) {
		const char *path = json_string_value(json_object_get(f, "path"));
		uint64_t size = (uint64_t)json_integer_value(json_object_get(f, "size"));
		if (!path)
			continue;
		total += size;
		if (size > largest) {
			largest = size;
			largest_path = path;
		}
		if (!bad_type && !extension_allowed(cfg->allowed_extensions, path))
			bad_type = path;
		if (!bad_name && !name_is_safe(path))
			bad_name = path;
	}

#define CHECK(name, ok, fmt, ...)                                                              \
	do {                                                                                   \
		char msg_[512];                                                                \
		snprintf(msg_, sizeof(msg_), fmt, __VA_ARGS__);                                \
		if ((rc = add_check(checks, name, (ok) ? "passed" : "failed", msg_)))          \
			goto out;                                                              \
		if (!(ok) && passed) {                                                         \
			passed = 0;                                                            \
			buf_appends(&why, msg_);                                               \
		}                                                                              \
	} while (0)

	CHECK("not-empty", n > 0, "%s", n > 0 ? "the data has files" : "no files were collected or uploaded");
	CHECK("file-count", n <= cfg->max_files, "%zu files (limit %llu)", n, (unsigned long long)cfg->max_files);
	CHECK("file-size", largest <= cfg->max_file_bytes, "largest file %s is %llu bytes (limit %llu)",
	      largest_path ? largest_path : "-", (unsigned long long)largest, (unsigned long long)cfg->max_file_bytes);
	CHECK("total-size", total <= cfg->max_total_bytes, "%llu bytes in all (limit %llu)",
	      (unsigned long long)total, (unsigned long long)cfg->max_total_bytes);
	CHECK("file-types", bad_type == NULL, "%s%s",
	      bad_type ? "file type not allowed: " : "every file has an allowed type",
	      bad_type ? bad_type : "");
	CHECK("file-names", bad_name == NULL, "%s%s",
	      bad_name ? "unsafe file name: " : "every file name is safe", bad_name ? bad_name : "");
#undef CHECK
	if ((rc = add_check(checks, "malware", "not-scanned",
			    "no malware scanner is configured: the files were not scanned")))
		goto out;
	*out_passed = passed;
	if (!passed) {
		*out_reason = buf_detach(&why);
		if (!*out_reason) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	*out_checks = checks;
	checks = NULL;
out:
	json_decref(checks);
	buf_free(&why);
	return rc;
}
