/*
 * store.c - the implementation-independent face of the store: every call
 * dispatches through the handle's ops table, so callers never know whether
 * SQLite or the Kubernetes API server is behind it.
 */
#include "store/store.h"

#include "common/error.h"

#include <stddef.h>

static int bad_handle(void)
{
	return al_error_set(AL_ERR_INTERNAL, "store: called without an open store");
}

int store_create(struct store *s, const json_t *obj, const json_t *audit, json_t **out)
{
	if (!s || !s->ops || !s->ops->create)
		return bad_handle();
	return s->ops->create(s, obj, audit, out);
}

int store_create_many(struct store *s, size_t n, const json_t *const *objs, const json_t *const *audits,
		      json_t **outs)
{
	if (!s || !s->ops || !s->ops->create)
		return bad_handle();
	if (s->ops->create_many)
		return s->ops->create_many(s, n, objs, audits, outs);
	for (size_t i = 0; i < n; i++) {
		int rc = s->ops->create(s, objs[i], audits ? audits[i] : NULL, outs ? &outs[i] : NULL);
		if (rc < 0) {
			for (size_t j = 0; outs && j < i; j++) {
				json_decref(outs[j]);
				outs[j] = NULL;
			}
			return rc;
		}
	}
	return AL_OK;
}

int store_get(struct store *s, const char *kind, const char *ns, const char *name, json_t **out)
{
	if (!s || !s->ops || !s->ops->get)
		return bad_handle();
	return s->ops->get(s, kind, ns, name, out);
}

int store_list(struct store *s, const char *kind, const char *ns, const char *selector,
	       json_t **out_items, uint64_t *out_rv)
{
	if (!s || !s->ops || !s->ops->list)
		return bad_handle();
	return s->ops->list(s, kind, ns, selector, out_items, out_rv);
}

int store_update(struct store *s, const json_t *obj, const json_t *audit, json_t **out)
{
	if (!s || !s->ops || !s->ops->update)
		return bad_handle();
	return s->ops->update(s, obj, audit, out);
}

void store_seen(struct store *s, const json_t *obj)
{
	if (s && s->ops && s->ops->seen && obj)
		s->ops->seen(s, obj);
}

int store_update_status(struct store *s, const json_t *obj, const json_t *audit, json_t **out)
{
	if (!s || !s->ops || !s->ops->update_status)
		return bad_handle();
	return s->ops->update_status(s, obj, audit, out);
}

int store_delete(struct store *s, const char *kind, const char *ns, const char *name,
		 const char *rv, const json_t *audit)
{
	if (!s || !s->ops || !s->ops->remove)
		return bad_handle();
	return s->ops->remove(s, kind, ns, name, rv, audit);
}

int store_watch(struct store *s, const char *kind, uint64_t since_rv, int timeout_ms,
		json_t **out_events, uint64_t *out_rv)
{
	if (!s || !s->ops || !s->ops->watch)
		return bad_handle();
	return s->ops->watch(s, kind, since_rv, timeout_ms, out_events, out_rv);
}

int store_audit_append(struct store *s, const json_t *audit)
{
	if (!s || !s->ops || !s->ops->audit_append)
		return bad_handle();
	return s->ops->audit_append(s, audit);
}

int store_audit_list(struct store *s, uint64_t after_seq, size_t limit, json_t **out)
{
	if (!s || !s->ops || !s->ops->audit_list)
		return bad_handle();
	return s->ops->audit_list(s, after_seq, limit, out);
}

void store_close(struct store *s)
{
	if (s && s->ops && s->ops->close)
		s->ops->close(s);
}

uint64_t store_rv_parse(const char *rv)
{
	uint64_t v = 0;

	if (!rv || !*rv)
		return 0;
	for (const char *p = rv; *p; p++) {
		unsigned d;
		if (*p < '0' || *p > '9')
			return 0;
		d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	return v;
}
