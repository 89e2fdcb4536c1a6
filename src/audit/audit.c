/*
 * audit.c - sealing and verifying hash-chained audit records.
 *
 * A record's hash covers its canonical form (every field but "hash", compact,
 * keys sorted, ASCII only), and that form includes "prev", so editing,
 * removing, inserting or reordering any record breaks the chain at a place
 * the verifier can name.
 */
#include "audit/audit.h"

#include "common/buf.h"
#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANONICAL_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *audit_entry_new(const char *actor_type, const char *actor_name, const char *action,
			const json_t *object, const char *stage_before, const char *stage_after,
			const char *state_before, const char *state_after, const char *digest,
			const char *reason)
{
	json_t *e = json_object();
	json_t *actor = json_object();
	int bad = 0;

	if (!e || !actor) {
		json_decref(e);
		json_decref(actor);
		return NULL;
	}
	bad |= json_object_set_new(actor, "type", str_or_null(actor_type));
	bad |= json_object_set_new(actor, "name", str_or_null(actor_name));
	bad |= json_object_set_new(e, "actor", actor);
	bad |= json_object_set_new(e, "action", str_or_null(action));
	bad |= json_object_set_new(e, "object", object ? json_deep_copy(object) : json_null());
	bad |= json_object_set_new(e, "stageBefore", str_or_null(stage_before));
	bad |= json_object_set_new(e, "stageAfter", str_or_null(stage_after));
	bad |= json_object_set_new(e, "dataStateBefore", str_or_null(state_before));
	bad |= json_object_set_new(e, "dataStateAfter", str_or_null(state_after));
	bad |= json_object_set_new(e, "digest", str_or_null(digest));
	bad |= json_object_set_new(e, "reason", str_or_null(reason));
	if (bad) {
		json_decref(e);
		return NULL;
	}
	return e;
}

int audit_hash(const json_t *record, char out[UTIL_SHA256_HEX_LEN + 1])
{
	json_t *copy;
	char *canon;

	if (!json_is_object(record))
		return al_error_set(AL_ERR_INVALID, "audit record must be a JSON object");
	/* A deep copy keeps `record` untouched (not even its children's
	 * reference counts), so records shared between threads stay safe. */
	copy = json_deep_copy(record);
	if (!copy)
		return al_error_set(AL_ERR_NOMEM, "out of memory hashing an audit record");
	json_object_del(copy, "hash");
	canon = json_dumps(copy, CANONICAL_FLAGS);
	json_decref(copy);
	if (!canon)
		return al_error_set(AL_ERR_NOMEM, "out of memory hashing an audit record");
	util_sha256_hex(canon, strlen(canon), out);
	free(canon);
	return AL_OK;
}

static int is_hex64(const char *s)
{
	size_t i;
	for (i = 0; s[i]; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
	}
	return i == UTIL_SHA256_HEX_LEN;
}

int audit_seal(json_t *entry, uint64_t seq, const char *prev_hash)
{
	char hash[UTIL_SHA256_HEX_LEN + 1];
	char now[UTIL_TIME_LEN];
	int rc;

	if (!json_is_object(entry))
		return al_error_set(AL_ERR_INVALID, "audit entry must be a JSON object");
	if (seq == 0 || seq > (uint64_t)INT64_MAX)
		return al_error_set(AL_ERR_INVALID, "audit seq %llu is out of range",
				    (unsigned long long)seq);
	if (!prev_hash || !is_hex64(prev_hash))
		return al_error_set(AL_ERR_INVALID,
				    "audit prev hash must be 64 lower-case hex digits");
	if (json_object_set_new(entry, "seq", json_integer((json_int_t)seq)) < 0 ||
	    json_object_set_new(entry, "prev", json_string(prev_hash)) < 0)
		return al_error_set(AL_ERR_NOMEM, "out of memory sealing an audit record");
	if (!json_is_string(json_object_get(entry, "time"))) {
		util_now_rfc3339(now);
		if (json_object_set_new(entry, "time", json_string(now)) < 0)
			return al_error_set(AL_ERR_NOMEM, "out of memory sealing an audit record");
	}
	json_object_del(entry, "hash");
	if ((rc = audit_hash(entry, hash)) < 0)
		return rc;
	if (json_object_set_new(entry, "hash", json_string(hash)) < 0)
		return al_error_set(AL_ERR_NOMEM, "out of memory sealing an audit record");
	return AL_OK;
}

void audit_verifier_init(struct audit_verifier *v)
{
	v->expected_seq = 1;
	memcpy(v->prev_hash, AUDIT_GENESIS_HASH, sizeof(v->prev_hash));
	v->count = 0;
}

/* Shape check shared by the verifier and the line parser; `who` names the
 * record in messages ("record 5", "audit line"). */
static int check_shape(const json_t *record, const char *who, json_int_t *seq_out)
{
	const json_t *seq, *prev, *hash;

	if (!json_is_object(record))
		return al_error_set(AL_ERR_INVALID, "%s: not a JSON object", who);
	seq = json_object_get(record, "seq");
	prev = json_object_get(record, "prev");
	hash = json_object_get(record, "hash");
	if (!json_is_integer(seq))
		return al_error_set(AL_ERR_INVALID, "%s: \"seq\" is missing or not an integer", who);
	if (!json_is_string(prev))
		return al_error_set(AL_ERR_INVALID, "%s: \"prev\" is missing or not a string", who);
	if (!json_is_string(hash))
		return al_error_set(AL_ERR_INVALID, "%s: \"hash\" is missing or not a string", who);
	*seq_out = json_integer_value(seq);
	return AL_OK;
}

int audit_verifier_feed(struct audit_verifier *v, const json_t *record)
{
	char hash[UTIL_SHA256_HEX_LEN + 1];
	unsigned long long exp = (unsigned long long)v->expected_seq;
	char who[48];
	json_int_t seq;
	int rc;

	snprintf(who, sizeof(who), "record %llu", exp);
	if ((rc = check_shape(record, who, &seq)) < 0)
		return rc;
	if (seq < 1 || (uint64_t)seq < v->expected_seq)
		return al_error_set(AL_ERR_INVALID,
				    "record %lld: expected seq %llu (reordered or duplicated)",
				    (long long)seq, exp);
	if ((uint64_t)seq > v->expected_seq)
		return al_error_set(AL_ERR_INVALID,
				    "record %lld: expected seq %llu: record(s) %llu..%llu missing "
				    "(removed)",
				    (long long)seq, exp, exp, (unsigned long long)seq - 1);
	if ((rc = audit_hash(record, hash)) < 0)
		return rc;
	if (strcmp(hash, json_string_value(json_object_get(record, "hash"))) != 0)
		return al_error_set(AL_ERR_INVALID, "record %lld: content does not match its hash (edited)",
				    (long long)seq);
	if (strcmp(v->prev_hash, json_string_value(json_object_get(record, "prev"))) != 0)
		return al_error_set(AL_ERR_INVALID,
				    "chain broken before record %lld (a record was removed, inserted or "
				    "reordered)",
				    (long long)seq);
	memcpy(v->prev_hash, hash, sizeof(v->prev_hash));
	v->expected_seq++;
	v->count++;
	return AL_OK;
}

int audit_parse_line(const char *line, size_t len, json_t **out)
{
	json_error_t err;
	json_int_t seq;
	json_t *rec;
	int rc;

	*out = NULL;
	if (!line)
		return al_error_set(AL_ERR_INVALID, "audit line is missing");
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > AUDIT_LINE_MAX)
		return al_error_set(AL_ERR_TOO_LARGE, "audit line is %zu bytes, over the limit of %zu",
				    len, AUDIT_LINE_MAX);
	if (len == 0)
		return al_error_set(AL_ERR_INVALID, "audit line is empty");
	/* Duplicate keys are refused: a record must mean one thing to every
	 * reader, whichever duplicate it would keep. */
	rec = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
	if (!rec)
		return al_error_set(AL_ERR_INVALID, "audit line is not valid JSON: %s (column %d)",
				    err.text, err.column);
	if (!json_is_object(rec)) {
		json_decref(rec);
		return al_error_set(AL_ERR_INVALID, "audit line is not a JSON object");
	}
	if ((rc = check_shape(rec, "audit line", &seq)) < 0) {
		json_decref(rec);
		return rc;
	}
	if (seq < 1) {
		json_decref(rec);
		return al_error_set(AL_ERR_INVALID, "audit line: \"seq\" must be 1 or more");
	}
	*out = rec;
	return AL_OK;
}

int audit_verify_records(const json_t *records, uint64_t *out_count)
{
	struct audit_verifier v;
	size_t i;
	int rc;

	audit_verifier_init(&v);
	if (out_count)
		*out_count = 0;
	if (!json_is_array(records))
		return al_error_set(AL_ERR_INVALID, "audit records must be a JSON array");
	for (i = 0; i < json_array_size(records); i++) {
		rc = audit_verifier_feed(&v, json_array_get(records, i));
		if (out_count)
			*out_count = v.count;
		if (rc < 0)
			return rc;
	}
	return AL_OK;
}

/* Feeds one line (without its newline) to the verifier; blank lines skip. */
static int verify_line(struct audit_verifier *v, const char *path, unsigned long lineno,
		       const char *line, size_t len)
{
	json_t *rec = NULL;
	size_t i;
	int rc;

	for (i = 0; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			break;
	if (i == len)
		return AL_OK;
	if ((rc = audit_parse_line(line, len, &rec)) < 0)
		return al_error_wrap(rc, "%s:%lu", path, lineno);
	rc = audit_verifier_feed(v, rec);
	json_decref(rec);
	if (rc < 0)
		return al_error_wrap(rc, "%s:%lu", path, lineno);
	return AL_OK;
}

int audit_verify_file(const char *path, uint64_t *out_count)
{
	struct audit_verifier v;
	struct buf line;
	unsigned long lineno = 0;
	char chunk[8192];
	int rc = AL_OK;
	size_t n;
	FILE *f;

	if (out_count)
		*out_count = 0;
	f = fopen(path, "rb");
	if (!f)
		return al_error_set(AL_ERR_IO, "cannot open audit file %s: %s", path, strerror(errno));
	audit_verifier_init(&v);
	/* +2 leaves room for "\r\n" after a maximal line. */
	buf_init(&line, AUDIT_LINE_MAX + 2);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		size_t start = 0;
		for (size_t i = 0; i < n; i++) {
			if (chunk[i] != '\n')
				continue;
			lineno++;
			if ((rc = buf_append(&line, chunk + start, i - start)) < 0) {
				rc = al_error_set(AL_ERR_TOO_LARGE, "%s:%lu: line is over %zu bytes",
						  path, lineno, AUDIT_LINE_MAX);
				goto out;
			}
			if ((rc = verify_line(&v, path, lineno, buf_cstr(&line), line.len)) < 0)
				goto out;
			buf_reset(&line);
			start = i + 1;
		}
		if ((rc = buf_append(&line, chunk + start, n - start)) < 0) {
			rc = al_error_set(AL_ERR_TOO_LARGE, "%s:%lu: line is over %zu bytes", path,
					  lineno + 1, AUDIT_LINE_MAX);
			goto out;
		}
	}
	if (ferror(f)) {
		rc = al_error_set(AL_ERR_IO, "cannot read audit file %s", path);
		goto out;
	}
	if (line.len > 0) {
		lineno++;
		if ((rc = verify_line(&v, path, lineno, buf_cstr(&line), line.len)) < 0)
			goto out;
	}
out:
	if (out_count)
		*out_count = v.count;
	buf_free(&line);
	fclose(f);
	return rc;
}
