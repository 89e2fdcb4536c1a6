/*
 * audit.h - the tamper-evident audit log's record format.
 *
 * A record is a JSON object:
 *   seq          1, 2, 3 ... with no gaps
 *   time         RFC 3339 UTC
 *   actor        {"type": "user"|"system", "name": "..."}; system actors are
 *                named as the system, e.g. {"type":"system","name":"airlock-operator"}
 *   action       what happened, e.g. "create", "transition", "approve", "reject"
 *   object       {"kind","namespace","name","uid"}
 *   stageBefore, stageAfter, dataStateBefore, dataStateAfter   (may be null)
 *   digest       manifest digest the event concerns (may be null)
 *   reason       free text (may be null); never a secret
 *   prev         hash of the previous record ("" + 64 zeros for the first)
 *   hash         SHA-256 (hex) of the record's canonical form without "hash"
 *
 * The canonical form is jansson's compact dump with sorted keys, so the hash
 * is independent of key order. A verifier walks the records in order and
 * names the first record that was edited, removed or reordered.
 */
#ifndef AL_AUDIT_AUDIT_H
#define AL_AUDIT_AUDIT_H

#include <jansson.h>
#include <stdint.h>

#include "common/util.h"

#define AUDIT_GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* Builds an unsealed entry. actor_type is "user" or "system". Strings may be
 * NULL (stored as null). Returns a new reference or NULL on OOM. */
json_t *audit_entry_new(const char *actor_type, const char *actor_name, const char *action,
			const json_t *object, const char *stage_before, const char *stage_after,
			const char *state_before, const char *state_after, const char *digest,
			const char *reason);

/* Seals `entry` in place as record `seq` following `prev_hash`: sets seq, time
 * (if absent), prev and hash. */
int audit_seal(json_t *entry, uint64_t seq, const char *prev_hash);

/* Recomputes a record's hash into out (does not read the "hash" field). */
int audit_hash(const json_t *record, char out[UTIL_SHA256_HEX_LEN + 1]);

struct audit_verifier {
	uint64_t expected_seq;                  /* next seq we expect */
	char prev_hash[UTIL_SHA256_HEX_LEN + 1]; /* hash of the last good record */
	uint64_t count;                          /* records verified */
};

void audit_verifier_init(struct audit_verifier *v);
/* Checks the next record. AL_ERR_INVALID with a message such as
 * "record 5: content does not match its hash (edited)" or
 * "record 7: expected seq 6 (a record was removed or reordered)". */
int audit_verifier_feed(struct audit_verifier *v, const json_t *record);

/* Longest export line audit_parse_line accepts (bytes, without the newline). */
#define AUDIT_LINE_MAX ((size_t)64 * 1024)

/* Parses one JSON-lines audit record (an export line) and checks its shape:
 * an object with an integer seq >= 1 and string prev and hash. A trailing
 * "\n" or "\r\n" is ignored. *out is a new reference. Lines longer than
 * AUDIT_LINE_MAX answer AL_ERR_TOO_LARGE; anything else malformed
 * AL_ERR_INVALID. */
int audit_parse_line(const char *line, size_t len, json_t **out);

/* Runs a fresh verifier over an array of records (e.g. store_audit_list's
 * output). *out_count (may be NULL) is the number of records verified good,
 * i.e. all of them on success, the ones before the first bad one otherwise. */
int audit_verify_records(const json_t *records, uint64_t *out_count);

/* Verifies a JSON-lines export file (one record per line, blank lines
 * ignored) without a server. Messages name the file and line. */
int audit_verify_file(const char *path, uint64_t *out_count);

#endif
