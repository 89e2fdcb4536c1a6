/*
 * airlock validate [-f] FILE... - checks resource files offline, with the
 * same rules as the API server's CRD schemas (src/resource/).
 */
#include "cli/commands.h"

#include "common/error.h"
#include "common/util.h"
#include "resource/resource.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
	fprintf(out,
		"usage: airlock validate [-f] FILE...\n\n"
		"Checks YAML or JSON resource files (several documents separated by --- are\n"
		"allowed; '-' reads standard input) against the airlock's resource schemas:\n"
		"apiVersion %s, kinds AnalyticsWorkspace, AnalyticsWorkspaceBinding,\n"
		"AnalyticsWorkspaceDataSource and AnalyticsWorkspaceDataBinding. Unknown fields\n"
		"are refused. Prints 'FILE: Kind/name valid' for each good object and\n"
		"'FILE: Kind/name: error' for each bad one.\n\n"
		"Exit status: 0 all valid, 1 something invalid or unreadable, 2 usage error.\n",
		RESOURCE_API_VERSION);
}

static int read_stdin(char **out, size_t *out_len)
{
	size_t cap = 8192, len = 0, max = (size_t)RESOURCE_MAX_DOCUMENT + 1;
	char *data = malloc(cap), *p;
	ssize_t n;

	if (!data)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	for (;;) {
		if (len + 1 >= cap) {
			if (cap >= max + 1) {
				free(data);
				return al_error_set(AL_ERR_TOO_LARGE, "standard input is larger than %u bytes",
						    RESOURCE_MAX_DOCUMENT);
			}
			cap *= 2;
			if (!(p = realloc(data, cap))) {
				free(data);
				return al_error_set(AL_ERR_NOMEM, "out of memory");
			}
			data = p;
		}
		n = read(STDIN_FILENO, data + len, cap - len - 1);
		if (n < 0) {
			free(data);
			return al_error_set(AL_ERR_IO, "cannot read standard input");
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	data[len] = '\0';
	*out = data;
	*out_len = len;
	return AL_OK;
}

/* Returns the number of invalid objects (or 1 when the file is unusable). */
static int validate_file(const char *path)
{
	char *data = NULL;
	size_t len = 0, i;
	json_t *docs = NULL, *obj;
	int rc, bad = 0;

	if (!strcmp(path, "-"))
		rc = read_stdin(&data, &len);
	else
		rc = util_read_file(path, (size_t)RESOURCE_MAX_DOCUMENT + 1, &data, &len);
	if (rc == AL_ERR_TOO_LARGE) {
		fprintf(stderr, "%s: larger than %u bytes; split it into smaller files\n", path,
			RESOURCE_MAX_DOCUMENT);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", path, al_error_message());
		return 1;
	}
	rc = resource_parse_all(data, len, &docs);
	free(data);
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", path, al_error_message());
		return 1;
	}
	if (json_array_size(docs) == 0) {
		fprintf(stderr, "%s: no objects found\n", path);
		json_decref(docs);
		return 1;
	}
	json_array_foreach(docs, i, obj) {
		const char *kind = json_string_value(json_object_get(obj, "kind"));
		const char *name = json_is_object(obj) ? resource_name(obj) : "";
		char label[160];

		snprintf(label, sizeof(label), "%.64s/%.80s", kind && *kind ? kind : "?",
			 *name ? name : "?");
		if (json_array_size(docs) > 1 && (!kind || !*name))
			snprintf(label, sizeof(label), "document %zu", i + 1);
		for (char *c = label; *c; c++) /* input text: keep the terminal safe */
			if (*c < 0x20 || *c == 0x7f)
				*c = '?';
		if (resource_validate(obj) < 0) {
			fprintf(stderr, "%s: %s: %s\n", path, label, al_error_message());
			bad++;
		} else {
			printf("%s: %s valid\n", path, label);
		}
	}
	json_decref(docs);
	return bad;
}

int cmd_validate(int argc, char **argv)
{
	int first = 1, bad = 0, files = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
	}
	if (first < argc && (!strcmp(argv[first], "-f") || !strcmp(argv[first], "--filename")))
		first++;
	for (int i = first; i < argc; i++) {
		if (argv[i][0] == '-' && argv[i][1] != '\0' && strcmp(argv[i], "-f")) {
			fprintf(stderr, "airlock validate: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	for (int i = first; i < argc; i++) {
		if (!strcmp(argv[i], "-f"))
			continue;
		files++;
		bad += validate_file(argv[i]);
	}
	if (files == 0) {
		usage(stderr);
		return 2;
	}
	fflush(stdout);
	return bad ? 1 : 0;
}
