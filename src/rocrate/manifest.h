/*
 * manifest.h - the manifest of a data directory: every file with its size and
 * SHA-256, and one digest over all of them. The approval gates bind an
 * approval to this digest: if any byte, name or file changes, it changes.
 *
 * What is included: every regular file under the directory, recursively,
 * except names starting with '.' (files and directories: the runner's and
 * uploader's working files, never data). ro-crate-metadata.json IS included,
 * so an approval covers the metadata the approver saw too.
 *
 * What is refused (AL_ERR_INVALID, naming the path): symbolic links (one
 * could point outside the volume), devices, FIFOs and sockets, names with
 * control characters or invalid UTF-8, and more than MANIFEST_MAX_FILES files
 * or MANIFEST_MAX_DEPTH directory levels.
 *
 * Digest: lower-case hex SHA-256 over, for each file in path order (byte-wise
 * strcmp of the '/'-separated relative path), the line
 *     "<sha256 hex>  <size in decimal>  <relative path>\n"
 * (two spaces between fields, like sha256sum). An empty directory digests
 * the empty string.
 */
#ifndef AL_ROCRATE_MANIFEST_H
#define AL_ROCRATE_MANIFEST_H

#include <jansson.h>

#define MANIFEST_MAX_FILES 100000
#define MANIFEST_MAX_DEPTH 32

/* *out gets a new object:
 *   {"files":[{"path":"a.csv","size":123,"sha256":"..."},...],
 *    "fileCount":N, "totalBytes":N, "digest":"<hex>"} */
int manifest_build(const char *dir, json_t **out);
/* The same, taking the size and SHA-256 of files the caller has just written
 * and hashed while writing them from `known` (relative path -> {"size": N,
 * "sha256": "<hex>"}; may be NULL) instead of reading them again, when the
 * file still has that size. Only for files this process wrote: the check
 * job and the publish job always hash for themselves (manifest_build). */
int manifest_build_known(const char *dir, const json_t *known, json_t **out);

/* The digest of an already-built manifest's "files" array, recomputed (what
 * manifest_build stores in "digest"). out must hold 65 bytes. */
int manifest_digest(const json_t *files, char out[65]);

#endif
