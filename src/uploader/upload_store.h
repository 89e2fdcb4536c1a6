/*
 * upload_store.h - the uploads of one datasource, kept on disk in its staging
 * directory, so that they survive a crash or a restart of the uploader.
 *
 * Layout (`dir` is the datasource's staging directory; the files people
 * upload land in it under their relative paths):
 *
 *   <dir>/.uploads/              0700; never served, never in a manifest
 *     lock                       flock: shared by every writer, exclusive
 *                                while "all files uploaded" runs
 *     create.lock                flock: serialises creations (quota, names)
 *     completed.json             written by upload_store_complete
 *     <id>/                      one upload; id = 32 lower-case hex digits
 *       info.json                its state (below), replaced atomically
 *       data.part                the bytes received, until the file is placed
 *     .tmp-<id>/                 a concatenation being assembled
 *
 * info.json: {"version":1, "id", "kind": "file"|"partial"|"final", "owner",
 * "path" (target, relative; not for partials), "metadata" (Upload-Metadata as
 * received), "concat" (a final's Upload-Concat as received), "length" (null
 * while deferred), "offset", "created", "expires" (Unix seconds; 0 once
 * complete), "complete", "sha256" (hex, once all bytes are in), and while
 * unfinished "sha256State" (sha256_run.h: the running whole-file hash).
 *
 * Durability: `offset` in info.json is the acknowledged offset. The caller
 * makes the bytes of data.part up to it durable (fdatasync) before it saves a
 * new offset (upload_save writes a temporary file, fsyncs it, renames it over
 * info.json and fsyncs the directory). data.part may hold bytes past the
 * offset after a crash: they were never acknowledged and upload_data_open
 * cuts them off. The hash state saved with an offset covers exactly those
 * bytes; if it is missing or does not fit, upload_load hashes data.part again
 * (and says so in hash_recomputed).
 *
 * Placing a finished file: info.json first records the final digest with
 * offset == length; then data.part is renamed (never over an existing file)
 * to <dir>/<path>, the directories are fsynced, and info.json is marked
 * complete. A crash between the two steps is finished by upload_recover.
 *
 * Thread and process safety: the lock file and flock on an upload's
 * directory (upload_lock) make concurrent writers of one upload, and
 * completion against writers, exclusive, also between processes. Reads
 * (upload_load) need no lock: info.json is always whole.
 *
 * Ownership: struct upload owns its strings (upload_free). json_t **
 * outputs are new references.
 */
#ifndef AL_UPLOADER_UPLOAD_STORE_H
#define AL_UPLOADER_UPLOAD_STORE_H

#include <jansson.h>
#include <stdint.h>

#include "uploader/sha256_run.h"
#include "uploader/tus_parse.h"

#define UPLOAD_STORE_SUBDIR ".uploads"

enum upload_kind { UPLOAD_FILE = 0, UPLOAD_PARTIAL, UPLOAD_FINAL };

struct upload {
	char id[TUS_ID_LEN + 1];
	enum upload_kind kind;
	char *owner;             /* who created it: only they may see or change it */
	char *path;              /* target path, relative to dir (NULL for a partial) */
	char *metadata;          /* Upload-Metadata as received, "" when none */
	char *concat;            /* a final's Upload-Concat as received, else NULL */
	int64_t length;          /* -1 while deferred (Upload-Defer-Length) */
	uint64_t offset;         /* acknowledged (durable) bytes */
	int64_t created;         /* Unix seconds */
	int64_t expires;         /* Unix seconds; 0 when complete */
	int complete;            /* all bytes in (and a file or final placed) */
	char sha256[65];         /* hex digest of the whole upload once all bytes are in, else "" */
	struct sha256_run hash;  /* while unfinished: covers `offset` bytes */
	int hash_recomputed;     /* set by upload_load: the saved state was unusable */
};

void upload_free(struct upload *u);

struct upload_store;

/* Opens the uploads of the datasource directory `dir` (which must exist),
 * creating .uploads when `create` (else AL_ERR_NOT_FOUND when absent). */
int upload_store_open(struct upload_store **out, const char *dir, int create);
void upload_store_close(struct upload_store *st);
const char *upload_store_dir(const struct upload_store *st);

/* The datasource-wide lock: shared for writers, exclusive for completion.
 * wait 0: AL_ERR_UNAVAILABLE at once when it is held the other way.
 * *out_fd is released with upload_store_unlock. */
int upload_store_lock(struct upload_store *st, int exclusive, int wait, int *out_fd);
/* Serialises creations (quota and name checks, then create): blocking. */
int upload_store_lock_create(struct upload_store *st, int *out_fd);
void upload_store_unlock(int fd);

/* A new upload from `u` (kind, owner, path, metadata, concat, length,
 * expires set by the caller): assigns u->id and u->created, offset 0, and
 * makes its directory, an empty data.part and info.json, durably. */
int upload_create(struct upload_store *st, struct upload *u);
/* AL_ERR_NOT_FOUND when there is no such upload (or id is not an id). */
int upload_load(struct upload_store *st, const char *id, struct upload *out);
/* Writes info.json (atomically, durably). The caller made data.part durable
 * up to u->offset first. */
int upload_save(struct upload_store *st, const struct upload *u);
/* Takes the upload's own lock, without waiting: AL_ERR_UNAVAILABLE when
 * another request holds it, AL_ERR_NOT_FOUND when it is gone. */
int upload_lock(struct upload_store *st, const char *id, int *out_fd);
void upload_unlock(int fd);
/* data.part for writing, cut to u->offset and positioned there. With
 * want_direct it is opened O_DIRECT when the filesystem allows (*out_direct
 * says whether it was): writes then go to the device without the page cache,
 * and must be UPLOAD_DIRECT_ALIGN-aligned in offset, length and memory. */
#define UPLOAD_DIRECT_ALIGN 4096
int upload_data_open(struct upload_store *st, const struct upload *u, int want_direct, int *out_fd, int *out_direct);
/* Reads len bytes of data.part at off (through the page cache). */
int upload_data_read(struct upload_store *st, const struct upload *u, uint64_t off, void *buf, size_t len);
/* Once offset == length (caller holds the upload's lock, data durable):
 * records the digest, then for a file or final moves data.part to its path
 * (AL_ERR_EXISTS if something is there by now) and marks it complete. */
int upload_place(struct upload_store *st, struct upload *u);
/* Finishes what a crash interrupted: an upload with every byte in but not
 * marked complete is placed now (caller holds its lock). AL_OK when nothing
 * was to do. */
int upload_recover(struct upload_store *st, struct upload *u);
/* Removes the upload, and the file it placed when complete (termination). */
int upload_remove(struct upload_store *st, const struct upload *u);

/* Calls fn for every upload that can be read, in no particular order; fn
 * returning non-zero stops and is returned. Unreadable entries are logged
 * and skipped. */
typedef int (*upload_visit_fn)(void *ud, const struct upload *u);
int upload_store_foreach(struct upload_store *st, upload_visit_fn fn, void *ud);

/* Creation's checks (usage, names) use an index of each datasource's uploads
 * kept in memory by this process (see upload_store.c); this frees every
 * index (at exit, or in tests that change the disk behind the store's back). */
void upload_store_forget_all(void);

/* Space counted against the quota (every upload's length, or its offset while
 * the length is deferred) and the number of files (files and finals). */
int upload_store_usage(struct upload_store *st, uint64_t *bytes, uint64_t *files);
/* AL_OK when `path` can become a new file: nothing is there, no parent is a
 * file, and no other upload is to become it, its parent or its child;
 * otherwise AL_ERR_EXISTS naming the clash. */
int upload_store_name_free(struct upload_store *st, const char *path);

/* Removes unfinished uploads that expired at or before `now` (skipping any
 * being written), and leftover concatenations. *removed may be NULL. */
int upload_store_sweep(struct upload_store *st, int64_t now, size_t *removed);

/* Concatenation: makes `final` (kind UPLOAD_FINAL, owner, path, metadata,
 * concat and length = the parts' total set by the caller) from the complete
 * partial uploads `parts` in order, hashing as it copies; places it and
 * removes the parts. The caller holds each part's lock. */
int upload_store_concat(struct upload_store *st, struct upload *final, const struct upload *parts, size_t n);

/* "All files uploaded" (caller holds the exclusive store lock): refuses with
 * AL_ERR_CONFLICT, naming them, while any upload is unfinished; else builds
 * the manifest of dir (rocrate/manifest.h, taking the digests computed while
 * the files streamed in), makes every file in it read-only (0444) and writes
 * completed.json = {"version":1, "round", "completedBy", "completedAt",
 * "manifest"}, which *out_record receives. `round` (may be NULL) tells
 * rounds apart when a datasource takes uploads again after a retry. */
int upload_store_complete(struct upload_store *st, const char *round, const char *by, json_t **out_record);
/* completed.json, or AL_ERR_NOT_FOUND. */
int upload_store_completion(struct upload_store *st, json_t **out_record);

/* {"id", "kind", "path", "length" (null when deferred), "offset", "complete",
 * "sha256" (when complete), "expires" (RFC 3339, while unfinished)}. */
json_t *upload_to_json(const struct upload *u);

/* The (de)serialised info.json, for tests. */
json_t *upload_info_json(const struct upload *u);
int upload_info_parse(const json_t *info, struct upload *out);

#endif
