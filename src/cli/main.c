/*
 * airlock - one executable, many subcommands (like git). Each subcommand
 * lives in src/cli/cmd_<name>.c and prints its own --help.
 */
#include "cli/commands.h"
#include "common/log.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "serve", cmd_serve, "run the embedded airlock (API, operator, runtime) in one process" },
	{ "operator", cmd_operator, "run the reconcilers against a Kubernetes API server" },
	{ "frontend", cmd_frontend, "the web pages and API over Kubernetes, proxying to the uploaders" },
	{ "uploader", cmd_uploader, "serve resumable uploads (tus) for one datasource's staging volume" },
	{ "login", cmd_login, "log in to an airlock server and remember the token" },
	{ "logout", cmd_logout, "end the saved session" },
	{ "user", cmd_user, "manage local accounts (admin)" },
	{ "workspace", cmd_workspace, "manage workspaces and their members" },
	{ "apply", cmd_apply, "create or update resources from a YAML or JSON file" },
	{ "get", cmd_get, "show resources" },
	{ "wait", cmd_wait, "wait until a datasource reaches a stage or state" },
	{ "approve", cmd_approve, "approve a datasource at its current gate" },
	{ "reject", cmd_reject, "reject a datasource, with a reason" },
	{ "retry", cmd_retry, "start a failed datasource's collection again" },
	{ "audit", cmd_audit, "read and verify the audit log" },
	{ "secret", cmd_secret, "store source-system credentials for import jobs" },
	{ "validate", cmd_validate, "check resource files against the schema, offline" },
	{ "run-job", cmd_run_job, "collect a datasource's objects into a directory (job runner)" },
	{ "rocrate", cmd_rocrate, "write ro-crate-metadata.json for a directory" },
	{ "job-shim", cmd_job_shim, NULL /* internal: supervises one job */ },
	{ "check-job", cmd_check_job, NULL /* internal: the operator's check job */ },
	{ "publish-job", cmd_publish_job, NULL /* internal: the operator's publish job */ },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: airlock <command> [options]\n\n"
		     "Airlock: the secure ingress and egress gates of a research environment.\n\n"
		     "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].summary)
			fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nRun 'airlock <command> --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		fprintf(stderr, "airlock: cannot initialise libsodium\n");
		return 1;
	}
	/* Before any thread starts: jansson's hash seed. */
	json_object_seed(0);
	{
		/* AIRLOCK_LOG_LEVEL=debug shows, for one, every Kubernetes API request. */
		const char *lv = getenv("AIRLOCK_LOG_LEVEL");
		if (lv && *lv) {
			if (!strcmp(lv, "debug"))
				log_set_level(LOG_DEBUG);
			else if (!strcmp(lv, "info"))
				log_set_level(LOG_INFO);
			else if (!strcmp(lv, "warn"))
				log_set_level(LOG_WARN);
			else if (!strcmp(lv, "error"))
				log_set_level(LOG_ERROR);
			else {
				fprintf(stderr, "airlock: AIRLOCK_LOG_LEVEL=\"%s\": use debug, info, warn or error\n", lv);
				return 2;
			}
		}
	}
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("airlock %s\n", AIRLOCK_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "airlock: '%s' is not a command. See 'airlock --help'.\n", argv[1]);
	return 2;
}
