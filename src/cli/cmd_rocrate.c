/*
 * airlock rocrate build DIR [--datasource FILE]: writes DIR/ro-crate-metadata.json
 * with the same code every job runner uses (src/rocrate/rocrate.h).
 */
#include "cli/commands.h"
#include "common/error.h"
#include "rocrate/rocrate.h"
#include "runner/runner.h"

#include <stdio.h>
#include <string.h>

static void rocrate_usage(FILE *out)
{
	fprintf(out, "usage: airlock rocrate build DIR [--datasource FILE]\n\n"
		     "Writes DIR/ro-crate-metadata.json (RO-Crate 1.1) listing every file under DIR\n"
		     "(dotfiles skipped, symbolic links refused) with size, SHA-256 and media type; CSV\n"
		     "files also get their record count and columns. With --datasource, the dataset's\n"
		     "name, description, license, publisher and project come from that\n"
		     "AnalyticsWorkspaceDataSource (JSON or YAML).\n");
}

int cmd_rocrate(int argc, char **argv)
{
	const char *dir = NULL, *ds_path = NULL;
	json_t *ds = NULL;
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
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			rocrate_usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--datasource")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "airlock rocrate build: --datasource needs a file\n");
				return 2;
			}
			ds_path = argv[++i];
		} else if (!strncmp(argv[i], "--datasource=", 13)) {
			ds_path = argv[i] + 13;
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
	rc = rocrate_write(dir, ds, NULL, NULL);
	if (!rc)
		printf("wrote %s/%s\n", dir, ROCRATE_METADATA_FILE);
out:
	if (rc)
		fprintf(stderr, "airlock rocrate build: %s\n", al_error_message());
	json_decref(ds);
	return rc ? 1 : 0;
}
