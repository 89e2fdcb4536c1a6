/*
 * rocrate.h - RO-Crate 1.1 metadata (ro-crate-metadata.json) for a data
 * directory. Every job runner and `airlock rocrate build` use this one
 * implementation, so all collected data is described the same way.
 *
 * The crate (see docs/runner.md for a full example):
 *   @context  ["https://w3id.org/ro/crate/1.1/context",
 *              {"airlock": "https://xlscsde.nhs.uk/airlock/terms#"}]
 *   @graph    descriptor ro-crate-metadata.json (about ./, conformsTo 1.1);
 *             root Dataset "./" (name, description, datePublished, license ->
 *             #license CreativeWork holding the free-text licence, publisher ->
 *             #publisher Organization with contactPoint -> #contact ContactPoint,
 *             sourceOrganization -> #project-<id> Project, hasPart -> files);
 *             one File per file in path order (name, encodingFormat,
 *             contentSize as a decimal string, sha256; for CSV also
 *             airlock:rowCount = data records after the header and
 *             airlock:columns = the header's names; airlock:columnTypes
 *             when the runner knows them);
 *             when an action is given: #collection-<start time> CreateAction
 *             (instrument -> #runner SoftwareApplication, agent -> #airlock,
 *             object -> #source, result -> files, actionStatus, start/endTime,
 *             error on failure).
 * Files are listed by manifest_build() (dotfiles skipped; symlinks refused);
 * ro-crate-metadata.json itself is not a File of the crate.
 *
 * Secrets: nothing from spec.connections (urls, credential keys) is ever
 * copied; the source entity carries only what the caller passes in
 * rocrate_action, which must be secret-free.
 *
 * Output is deterministic for the same inputs and the same clock: entities in
 * a fixed order, object keys sorted.
 */
#ifndef AL_ROCRATE_ROCRATE_H
#define AL_ROCRATE_ROCRATE_H

#include <jansson.h>

#define ROCRATE_METADATA_FILE "ro-crate-metadata.json"
#define ROCRATE_CONTEXT "https://w3id.org/ro/crate/1.1/context"
#define ROCRATE_CONFORMS_TO "https://w3id.org/ro/crate/1.1"
#define ROCRATE_AIRLOCK_TERMS "https://xlscsde.nhs.uk/airlock/terms#"

struct rocrate_action {
	const char *runner_name;        /* "airlock-native-runner" */
	const char *runner_version;     /* AIRLOCK_VERSION */
	const char *start_time;         /* RFC 3339 */
	const char *end_time;           /* RFC 3339 */
	int succeeded;                  /* CompletedActionStatus / FailedActionStatus */
	const char *error;              /* failure message (no secrets), or NULL */
	const char *source_name;        /* e.g. "sqlite database gm.db" */
	const char *source_description; /* e.g. "sqlite database gm.db, tables: a, b" */
	const json_t *source_extra;     /* optional object merged into #source, e.g.
					   {"airlock:connectionType":"sqlite", "airlock:tables":[...]} */
};

/*
 * Builds the metadata for `dir` into *out (new reference).
 *   datasource    optional AnalyticsWorkspaceDataSource (whole resource or its
 *                 spec): name, description, license, publisher, project.
 *   action        optional CreateAction information.
 *   file_extras   optional object: relative path -> {"rowCount": N,
 *                 "columns": [names], "columnTypes": [the source's type
 *                 names], "size": N, "sha256": hex} the caller already
 *                 knows (a runner does; size and sha256 spare reading the
 *                 file again: manifest_build_known);
 *                 CSV files not in it are streamed to count them.
 *   date_published RFC 3339, or NULL for now.
 */
int rocrate_build(const char *dir, const json_t *datasource, const struct rocrate_action *action,
		  const json_t *file_extras, const char *date_published, json_t **out);

/* rocrate_build and write dir/ro-crate-metadata.json atomically (0644). */
int rocrate_write(const char *dir, const json_t *datasource, const struct rocrate_action *action,
		  const json_t *file_extras);

/* MIME type by file extension ("text/csv", ...; application/octet-stream). */
const char *rocrate_media_type(const char *path);

#endif
