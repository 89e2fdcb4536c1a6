/*
 * runner.h - the job runner contract, shared by every runner (this native
 * one and the Python dlt one):
 *
 *   airlock run-job --datasource FILE --output DIR [--credentials FILE] [--format csv|csv.gz]
 *
 * For each spec.objects[].table{name, connection} the runner writes
 * DIR/<table>.csv (RFC 4180 as csv.h describes: header row, CRLF, NULL empty,
 * empty string "", BLOB base64; or .csv.gz, gzip), or for a file source
 * (https) DIR/<last path segment of name>, each through <file>.part + fsync +
 * rename so no partial file ever looks complete, then DIR/ro-crate-metadata.json
 * (rocrate.h) with a CreateAction describing the run. Everything is checked
 * (connections, types, tables present) before the first byte is written, so
 * bad input changes nothing. After a failure mid-way the .part file is
 * removed, tables already finished stay, and the metadata records
 * FailedActionStatus with the error.
 *
 * Errors are one line for a data engineer, never with a secret: connection
 * urls are not echoed (a sqlite url is only a path; its base name is used).
 */
#ifndef AL_RUNNER_RUNNER_H
#define AL_RUNNER_RUNNER_H

#include <jansson.h>
#include <stddef.h>

#define RUNNER_NAME "airlock-native-runner"
#define RUNNER_MAX_CREDENTIALS_FILE (64u << 10)
#define RUNNER_MAX_TABLE_NAME 200

enum runner_format { RUNNER_FORMAT_CSV = 0, RUNNER_FORMAT_CSV_GZ };

struct runner_options {
	const char *output_dir;
	size_t buffer_size;        /* CSV output buffer; 0 = CSV_WRITER_DEFAULT_BUFFER */
	int progress;              /* progress lines on stderr about once a second */
	enum runner_format format; /* tables as <table>.csv or <table>.csv.gz */
	int timeout_s;             /* connect/request timeout per source; 0 = its default */
};

/* Reads the AnalyticsWorkspaceDataSource (whole resource, or just its spec)
 * from a JSON file. *out is a new reference. */
int runner_load_datasource(const char *path, json_t **out);
/* Reads a credentials file: a JSON object of key -> string. Refuses a file
 * that group or others can read or write (mode must be 0600 or stricter).
 * Free with runner_credentials_free (it wipes the values). */
int runner_load_credentials(const char *path, json_t **out);
void runner_credentials_free(json_t *creds);

/* Runs the job: see above. credentials may be NULL. */
int runner_run(const json_t *datasource, const json_t *credentials, const struct runner_options *opts);

#endif
