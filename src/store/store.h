/*
 * store.h - the object store every reconciler and the API are written
 * against. Two implementations share this interface: the embedded store
 * (SQLite, store_sqlite.c) and, later, the Kubernetes store (custom resources
 * over the API server's REST interface).
 *
 * Semantics follow the Kubernetes API server:
 *  - create assigns metadata.uid, resourceVersion, generation (1) and
 *    creationTimestamp; an existing name answers AL_ERR_EXISTS.
 *  - resourceVersion is one store-wide, strictly increasing counter, as a
 *    decimal string.
 *  - update replaces metadata.labels, metadata.annotations, metadata.finalizers
 *    and spec (never status); a given metadata.resourceVersion that is not the
 *    current one answers AL_ERR_CONFLICT and changes nothing; generation is
 *    incremented only when spec changed.
 *  - update_status replaces status only (the status subresource), same
 *    resourceVersion rule, generation unchanged.
 *  - watch returns events after a resourceVersion; a version older than the
 *    retained history answers AL_ERR_CONFLICT ("too old: relist"), like 410.
 *    So does a version newer than the store's (e.g. after a restore).
 *    since_rv 0 means "from the first retained event", so it only works
 *    until history is pruned: list first, then watch from the list's rv.
 *  - an update or update_status that changes nothing writes nothing (no new
 *    resourceVersion, no event), as the API server does; its audit entry, if
 *    given, is still appended.
 *  - delete of an object with metadata.finalizers only sets
 *    metadata.deletionTimestamp (a MODIFIED event); the object goes (DELETED)
 *    when an update leaves its finalizers empty. update also replaces
 *    metadata.ownerReferences.
 *
 * Audit: every write takes an optional audit entry (see audit/audit.h) which
 * is appended to the hash-chained audit log in the same transaction as the
 * change, so a change and its audit record are durable together or not at all.
 *
 * Ownership: inputs are borrowed; json_t ** outputs are new references.
 * Thread safety: a store may be used from many threads at once.
 */
#ifndef AL_STORE_STORE_H
#define AL_STORE_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct store;

struct store_ops {
	int (*create)(struct store *s, const json_t *obj, const json_t *audit, json_t **out);
	int (*create_many)(struct store *s, size_t n, const json_t *const *objs, const json_t *const *audits,
			   json_t **outs);
	int (*get)(struct store *s, const char *kind, const char *ns, const char *name, json_t **out);
	int (*list)(struct store *s, const char *kind, const char *ns, const char *selector,
		    json_t **out_items, uint64_t *out_rv);
	int (*update)(struct store *s, const json_t *obj, const json_t *audit, json_t **out);
	int (*update_status)(struct store *s, const json_t *obj, const json_t *audit, json_t **out);
	int (*remove)(struct store *s, const char *kind, const char *ns, const char *name,
		      const char *rv, const json_t *audit);
	int (*watch)(struct store *s, const char *kind, uint64_t since_rv, int timeout_ms,
		     json_t **out_events, uint64_t *out_rv);
	int (*audit_append)(struct store *s, const json_t *audit);
	int (*audit_list)(struct store *s, uint64_t after_seq, size_t limit, json_t **out);
	void (*close)(struct store *s);
	void (*seen)(struct store *s, const json_t *obj); /* optional; see store_seen() */
};

struct store {
	const struct store_ops *ops;
};

/* Opens (creating if needed) the embedded SQLite store at `path`. */
int store_sqlite_open(struct store **out, const char *path);

/* `obj` must carry apiVersion, kind, metadata.name; metadata.namespace defaults
 * to "default". */
int store_create(struct store *s, const json_t *obj, const json_t *audit, json_t **out);
/* Creates up to STORE_CREATE_MANY_MAX objects together (e.g. a datasource and
 * its binding). The embedded store does it in one transaction: all or none.
 * A store without transactions creates them in order and stops at the first
 * failure, so callers that need the later ones must also converge on them
 * (the operator ensures bindings). audits may be NULL; outs may be NULL. */
#define STORE_CREATE_MANY_MAX 8
int store_create_many(struct store *s, size_t n, const json_t *const *objs, const json_t *const *audits,
		      json_t **outs);
int store_get(struct store *s, const char *kind, const char *ns, const char *name, json_t **out);
/* `kind` required; `ns` NULL lists all namespaces; `selector` is a Kubernetes
 * equality label selector ("a=b,c!=d,e" - existence, "!e" - absence) or NULL.
 * out_items is a JSON array ordered by namespace, name; out_rv may be NULL. */
int store_list(struct store *s, const char *kind, const char *ns, const char *selector,
	       json_t **out_items, uint64_t *out_rv);
int store_update(struct store *s, const json_t *obj, const json_t *audit, json_t **out);
int store_update_status(struct store *s, const json_t *obj, const json_t *audit, json_t **out);
/* `rv` NULL deletes whatever version is current. */
int store_delete(struct store *s, const char *kind, const char *ns, const char *name,
		 const char *rv, const json_t *audit);
/* Blocks up to timeout_ms for events after since_rv (kind NULL = every kind).
 * out_events: array of {"type": "ADDED"|"MODIFIED"|"DELETED", "object": {...}}
 * in resourceVersion order; *out_rv is the version to watch from next. */
int store_watch(struct store *s, const char *kind, uint64_t since_rv, int timeout_ms,
		json_t **out_events, uint64_t *out_rv);
/* Appends an audit entry on its own (for events that change no object). */
int store_audit_append(struct store *s, const json_t *audit);
/* Sealed audit records with seq > after_seq, oldest first, at most `limit`
 * (0 = all), as a JSON array. */
int store_audit_list(struct store *s, uint64_t after_seq, size_t limit, json_t **out);
void store_close(struct store *s);
/* Tells the store how `obj` stood at its metadata.resourceVersion (say, from
 * a watch event). A store may use it as the base of a later write that
 * carries that very resourceVersion instead of reading the object again:
 * the version precondition makes that safe, as a write based on anything
 * else is refused (AL_ERR_CONFLICT). Optional: a no-op where unsupported. */
void store_seen(struct store *s, const json_t *obj);

/* Parses a resourceVersion string; 0 when absent or malformed. */
uint64_t store_rv_parse(const char *rv);

#endif
