/*
 * store_kube.c - the object store over the Kubernetes API server (see
 * store_kube.h and docs/kube-store.md).
 *
 * Objects are the airlock's custom resources; every operation is one (or, as
 * noted, two) REST calls through kube_request_retry, so the API server's own
 * optimistic concurrency (resourceVersion preconditions) gives store.h's
 * conflict semantics.
 *
 * Watches: one reflector thread per kind, started by the first store_watch
 * of that kind, lists every namespace and then watches from the list's
 * resourceVersion with bookmarks and a randomised timeout. A 410 (or repeated
 * failures) makes it relist; the difference between its cache (namespace/name
 * -> last object) and the new list becomes synthetic ADDED / MODIFIED /
 * DELETED events, so a watcher loses nothing across a relist. Events go into
 * a bounded ring per kind; store_watch serves from the ring. Objects are kept
 * as reference-counted compact JSON strings shared by the cache and the ring,
 * so an object's text is stored once however many structures point at it.
 *
 * Audit: records are AirlockAuditRecord objects named audit-%020llu (list
 * order is seq order). The head (seq, hash) is cached; it is found by
 * galloping and binary search over GETs (records have no gaps), and an
 * AlreadyExists on create means another writer took that seq: the writer
 * moves forward and seals again. Records are append-only by RBAC.
 */
#include "store/store_kube.h"

#include "audit/audit.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "resource/resource.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIST_PAGE 500           /* items per list request */
#define LIST_RESTARTS 3         /* a list whose continue token expired starts over */
#define UPDATE_RETRIES 5        /* updates without a resourceVersion retry conflicts */
#define AUDIT_RETRIES 8         /* seals of one record when other writers take its seq */
#define WATCH_BATCH 1000        /* most events one store_watch call returns */
#define WATCH_FAILURES_RELIST 3 /* consecutive watch failures before a relist */
#define AUDIT_KIND "AirlockAuditRecord"
#define AUDIT_PLURAL "airlockauditrecords"
#define AUDIT_NAME_LEN 32

/* ---- reference-counted immutable strings ---- */

struct blob {
	atomic_uint refs;
	size_t len;
	char data[];
};

static struct blob *blob_take(char *s)
{
	size_t len = strlen(s);
	struct blob *b = malloc(sizeof(*b) + len + 1);
	if (b) {
		atomic_init(&b->refs, 1);
		b->len = len;
		memcpy(b->data, s, len + 1);
	}
	free(s);
	return b;
}

static struct blob *blob_ref(struct blob *b)
{
	if (b)
		atomic_fetch_add(&b->refs, 1);
	return b;
}

static void blob_unref(struct blob *b)
{
	if (b && atomic_fetch_sub(&b->refs, 1) == 1)
		free(b);
}

/* ---- the reflector's cache: namespace/name -> (resourceVersion, object) ---- */

struct centry {
	struct centry *next;
	uint64_t rv;
	struct blob *obj;
	int seen; /* relist bookkeeping */
	char key[];
};

struct cache {
	struct centry **b;
	size_t nb, n;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static struct centry *cache_find(const struct cache *c, const char *key)
{
	if (!c->nb)
		return NULL;
	for (struct centry *e = c->b[hash_str(key) % c->nb]; e; e = e->next)
		if (!strcmp(e->key, key))
			return e;
	return NULL;
}

static int cache_grow(struct cache *c)
{
	size_t nb = c->nb ? c->nb * 2 : 64;
	struct centry **b = calloc(nb, sizeof(*b));
	if (!b)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory growing the watch cache");
	for (size_t i = 0; i < c->nb; i++) {
		struct centry *e = c->b[i], *next;
		for (; e; e = next) {
			size_t h = hash_str(e->key) % nb;
			next = e->next;
			e->next = b[h];
			b[h] = e;
		}
	}
	free(c->b);
	c->b = b;
	c->nb = nb;
	return AL_OK;
}

/* Inserts or replaces; takes a new reference to obj. */
static int cache_put(struct cache *c, const char *key, uint64_t rv, struct blob *obj)
{
	struct centry *e = cache_find(c, key);
	size_t h, klen;
	int rc;

	if (e) {
		blob_unref(e->obj);
		e->obj = blob_ref(obj);
		e->rv = rv;
		return AL_OK;
	}
	if (c->n >= c->nb && (rc = cache_grow(c)) < 0)
		return rc;
	klen = strlen(key);
	e = malloc(sizeof(*e) + klen + 1);
	if (!e)
		return al_error_set(AL_ERR_NOMEM, "store: out of memory in the watch cache");
	memcpy(e->key, key, klen + 1);
	e->rv = rv;
	e->obj = blob_ref(obj);
	e->seen = 0;
	h = hash_str(key) % c->nb;
	e->next = c->b[h];
	c->b[h] = e;
	c->n++;
	return AL_OK;
}

static void cache_del(struct cache *c, const char *key)
{
	struct centry **pp;
	if (!c->nb)
		return;
	for (pp = &c->b[hash_str(key) % c->nb]; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->key, key)) {
			struct centry *e = *pp;
			*pp = e->next;
			blob_unref(e->obj);
			free(e);
			c->n--;
			return;
		}
}

static void cache_free(struct cache *c)
{
	for (size_t i = 0; i < c->nb; i++) {
		struct centry *e = c->b[i], *next;
		for (; e; e = next) {
			next = e->next;
			blob_unref(e->obj);
			free(e);
		}
	}
	free(c->b);
	memset(c, 0, sizeof(*c));
}

/* ---- the store ---- */

enum ev_type { EV_ADDED, EV_MODIFIED, EV_DELETED };
static const char *const ev_name[] = { "ADDED", "MODIFIED", "DELETED" };

struct ring_ev {
	uint64_t rv;
	enum ev_type type;
	struct blob *obj;
};

struct kube_store;

struct reflector {
	struct kube_store *s;
	enum resource_kind kind;
	pthread_t thread;
	int started;
	/* Guarded by s->wmu. */
	struct ring_ev *ring;
	size_t start, count;
	uint64_t floor;    /* a watch from below this may have lost events */
	uint64_t progress; /* every event up to here is in the ring (or was evicted) */
	uint64_t last_rv;  /* rv of the newest event in the ring */
	int synced;        /* the first list is done */
	int evicted;       /* some event was dropped from the ring */
	/* The reflector thread's own. */
	struct cache cache;
	char resume_rv[32];
	int relist_asked; /* the event callback gave up on this watch */
};

struct kube_store {
	struct store base;
	struct kube_client *kc;
	char *ns;
	struct store_kube_options o;

	pthread_mutex_t amu; /* audit writers */
	uint64_t head_seq;
	char head_hash[UTIL_SHA256_HEX_LEN + 1];
	int head_known;

	pthread_mutex_t wmu;
	pthread_cond_t wcond; /* news in a ring, a pause change, close */
	int closing, paused;
	atomic_int interrupt; /* closing || paused: ends running watches */
	struct reflector refl[RESOURCE_KIND_COUNT];
	atomic_uint_fast64_t relists, reconnects, watches;

	/* The last status known per object, at its resourceVersion
	 * ("kind/ns/name" -> {"rv", "status"}): the base of a status patch
	 * that carries that version, so it needs no GET (see store_seen).
	 * Emptied when it holds SEEN_MAX objects. */
	pthread_mutex_t smu;
	json_t *seen;
};

#define SEEN_MAX 4096

static const struct store_ops kube_ops;

static struct kube_store *from_base(struct store *s)
{
	return (struct kube_store *)s;
}

/* ---- small helpers ---- */

static int nomem(void)
{
	return al_error_set(AL_ERR_NOMEM, "store: out of memory");
}

static const char *ns_or_default(const char *ns)
{
	return (ns && *ns) ? ns : "default";
}

static int parse_kind(const char *kind, enum resource_kind *out)
{
	if (!kind || !*kind)
		return al_error_set(AL_ERR_INVALID, "kind: required");
	if (resource_kind_parse(kind, out) < 0)
		return al_error_set(AL_ERR_INVALID,
				    "kind \"%s\": the Kubernetes store holds only AnalyticsWorkspace, "
				    "AnalyticsWorkspaceBinding, AnalyticsWorkspaceDataSource and "
				    "AnalyticsWorkspaceDataBinding",
				    kind);
	return AL_OK;
}

struct key {
	enum resource_kind kind;
	const char *ns, *name;
};

/* apiVersion, kind, metadata.name as the embedded store requires them. */
static int check_object(const json_t *obj, struct key *k)
{
	const json_t *md, *ns, *av;
	int rc;

	if (!json_is_object(obj))
		return al_error_set(AL_ERR_INVALID, "object must be a JSON object");
	av = json_object_get(obj, "apiVersion");
	if (!json_is_string(av) || !*json_string_value(av))
		return al_error_set(AL_ERR_INVALID, "apiVersion: required (\"%s\")", RESOURCE_API_VERSION);
	if (strcmp(json_string_value(av), RESOURCE_API_VERSION) != 0)
		return al_error_set(AL_ERR_INVALID, "apiVersion: must be \"%s\", not \"%s\"",
				    RESOURCE_API_VERSION, json_string_value(av));
	if (!json_is_string(json_object_get(obj, "kind")))
		return al_error_set(AL_ERR_INVALID, "kind: required (a string)");
	if ((rc = parse_kind(json_string_value(json_object_get(obj, "kind")), &k->kind)) < 0)
		return rc;
	md = json_object_get(obj, "metadata");
	if (!json_is_object(md))
		return al_error_set(AL_ERR_INVALID, "metadata: required (an object with a name)");
	if (!json_is_string(json_object_get(md, "name")) || !*json_string_value(json_object_get(md, "name")))
		return al_error_set(AL_ERR_INVALID, "metadata.name: required (a non-empty string)");
	ns = json_object_get(md, "namespace");
	if (ns && !json_is_null(ns) && !json_is_string(ns))
		return al_error_set(AL_ERR_INVALID, "metadata.namespace: must be a string");
	k->name = json_string_value(json_object_get(md, "name"));
	k->ns = ns_or_default(json_string_value(ns));
	return AL_OK;
}

static const char *kind_name(enum resource_kind k)
{
	return resource_kind_name(k);
}

/* metadata.resourceVersion of an input: NULL when absent or empty. */
static int input_rv(const json_t *obj, const char **out)
{
	const json_t *rv = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");
	*out = NULL;
	if (!rv || json_is_null(rv))
		return AL_OK;
	if (!json_is_string(rv))
		return al_error_set(AL_ERR_INVALID, "metadata.resourceVersion: must be a string");
	if (*json_string_value(rv))
		*out = json_string_value(rv);
	return AL_OK;
}

static const char *rv_of(const json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
}

/* Drops what the embedded store never returns (managedFields: big, and of
 * no use to the reconcilers). */
static void clean(json_t *obj)
{
	json_object_del(json_object_get(obj, "metadata"), "managedFields");
}

static char *obj_path(enum resource_kind k, const char *ns, const char *name, const char *sub)
{
	return kube_path(RESOURCE_API_VERSION, ns, resource_kind_plural(k), name, sub);
}

/* Appends "&name=value" (or "?name=value" first), the value percent-encoded. */
static int add_query(struct buf *b, int *first, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc;

	if ((rc = buf_appendf(b, "%c%s=", *first ? '?' : '&', name)) < 0)
		return rc;
	*first = 0;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		    c == '.' || c == '_' || c == '~')
			rc = buf_appendc(b, (char)c);
		else
			rc = buf_appendf(b, "%%%c%c", hex[c >> 4], hex[c & 15]);
		if (rc < 0)
			return rc;
	}
	return AL_OK;
}

static int request(struct kube_store *s, const char *method, const char *path, const json_t *body,
		   const char *ctype, json_t **out)
{
	json_t *answer = NULL;
	int rc = kube_request_retry(s->kc, method, path, body, ctype, s->o.request_deadline_ms, NULL, &answer);
	if (rc < 0 || !out)
		json_decref(answer);
	else
		*out = answer;
	return rc;
}

static int conflict(const struct key *k, const char *sent)
{
	return al_error_set(AL_ERR_CONFLICT,
			    "%s %s/%s has been modified (you sent resourceVersion %s); get the latest version "
			    "and retry",
			    kind_name(k->kind), k->ns, k->name, sent ? sent : "?");
}

static int not_found(const struct key *k)
{
	return al_error_set(AL_ERR_NOT_FOUND, "%s %s/%s not found", kind_name(k->kind), k->ns, k->name);
}

/* ---- lists ---- */

static int cmp_ns_name(const void *a, const void *b)
{
	const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
	int c = strcmp(resource_namespace(x), resource_namespace(y));
	return c ? c : strcmp(resource_name(x), resource_name(y));
}

/* Sorts an array of objects by namespace, then name. */
static int sort_items(json_t *items)
{
	size_t n = json_array_size(items);
	json_t **v;

	if (n < 2)
		return AL_OK;
	v = malloc(n * sizeof(*v));
	if (!v)
		return nomem();
	for (size_t i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(items, i));
	qsort(v, n, sizeof(*v), cmp_ns_name);
	json_array_clear(items);
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(items, v[i]) < 0) {
			for (size_t j = i + 1; j < n; j++)
				json_decref(v[j]);
			free(v);
			return nomem();
		}
	free(v);
	return AL_OK;
}

/* Lists a collection page by page (one consistent snapshot: the first page's
 * resourceVersion); items cleaned, in the server's order. */
static int list_collection(struct kube_store *s, const char *path, const char *selector, json_t **out_items,
			   uint64_t *out_rv)
{
	struct buf q;
	json_t *items = NULL;
	char *cont = NULL;
	uint64_t rv = 0;
	int rc = AL_OK;

	*out_items = NULL;
	buf_init(&q, 64 * 1024);
	for (int restart = 0; restart <= LIST_RESTARTS; restart++) {
		json_decref(items);
		items = json_array();
		free(cont);
		cont = NULL;
		rv = 0;
		if (!items) {
			rc = nomem();
			goto out;
		}
		for (int page = 0;; page++) {
			json_t *answer = NULL, *arr, *it;
			const json_t *md;
			const char *next;
			size_t i;
			int first = 1;
			char lim[16];

			buf_reset(&q);
			snprintf(lim, sizeof(lim), "%d", LIST_PAGE);
			if ((rc = buf_appends(&q, path)) < 0 || (rc = add_query(&q, &first, "limit", lim)) < 0 ||
			    (selector && *selector && (rc = add_query(&q, &first, "labelSelector", selector)) < 0) ||
			    (cont && (rc = add_query(&q, &first, "continue", cont)) < 0))
				goto out;
			rc = request(s, "GET", buf_cstr(&q), NULL, NULL, &answer);
			if (rc == AL_ERR_GONE && page > 0)
				break; /* the continue token expired: start over */
			if (rc < 0)
				goto out;
			md = json_object_get(answer, "metadata");
			if (page == 0)
				rv = store_rv_parse(json_string_value(json_object_get(md, "resourceVersion")));
			arr = json_object_get(answer, "items");
			json_array_foreach(arr, i, it) {
				clean(it);
				if (json_array_append(items, it) < 0) {
					json_decref(answer);
					rc = nomem();
					goto out;
				}
			}
			next = json_string_value(json_object_get(md, "continue"));
			free(cont);
			cont = NULL;
			if (next && *next && !(cont = util_strdup(next))) {
				json_decref(answer);
				rc = nomem();
				goto out;
			}
			json_decref(answer);
			if (!cont) {
				*out_items = items;
				items = NULL;
				if (out_rv)
					*out_rv = rv;
				rc = AL_OK;
				goto out;
			}
		}
	}
	rc = al_error_set(AL_ERR_UNAVAILABLE, "GET %s: the list kept changing under its continue token; retry", path);
out:
	json_decref(items);
	free(cont);
	buf_free(&q);
	return rc;
}

/* ---- audit ---- */

static void audit_name(uint64_t seq, char out[AUDIT_NAME_LEN])
{
	snprintf(out, AUDIT_NAME_LEN, "audit-%020" PRIu64, seq);
}

static int is_hex64(const char *h)
{
	if (!h || strlen(h) != UTIL_SHA256_HEX_LEN)
		return 0;
	for (; *h; h++)
		if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f')))
			return 0;
	return 1;
}

/* GETs record `seq`'s spec (new reference). AL_ERR_NOT_FOUND passes through. */
static int audit_get(struct kube_store *s, uint64_t seq, json_t **out)
{
	char name[AUDIT_NAME_LEN];
	char *path;
	json_t *obj = NULL;
	int rc;

	*out = NULL;
	audit_name(seq, name);
	path = kube_path(RESOURCE_API_VERSION, s->ns, AUDIT_PLURAL, name, NULL);
	if (!path)
		return AL_ERR_INVALID;
	rc = request(s, "GET", path, NULL, NULL, &obj);
	free(path);
	if (rc < 0)
		return rc;
	*out = json_incref(json_object_get(obj, "spec"));
	json_decref(obj);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return al_error_set(AL_ERR_IO, "audit record %" PRIu64 " in namespace %s has no spec: the log is "
					       "damaged; verify it with `airlock audit verify`",
				    seq, s->ns);
	}
	return AL_OK;
}

static int audit_exists(struct kube_store *s, uint64_t seq, int *exists)
{
	json_t *spec = NULL;
	int rc = audit_get(s, seq, &spec);
	json_decref(spec);
	*exists = rc == AL_OK;
	return rc == AL_ERR_NOT_FOUND ? AL_OK : rc;
}

/* Finds the last record at or after `from` (a seq known to exist, or 0):
 * records have no gaps, so existence is monotonic - gallop, then bisect.
 * About 2 log2(n) GETs. Called with amu held. */
static int audit_find_head(struct kube_store *s, uint64_t from)
{
	uint64_t lo = from, hi, step = 1;
	json_t *spec = NULL;
	int rc, ex;

	for (;;) {
		hi = lo + step;
		if ((rc = audit_exists(s, hi, &ex)) < 0)
			return rc;
		if (!ex)
			break;
		lo = hi;
		if (step < ((uint64_t)1 << 40))
			step *= 2;
	}
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if ((rc = audit_exists(s, mid, &ex)) < 0)
			return rc;
		if (ex)
			lo = mid;
		else
			hi = mid;
	}
	if (lo == 0) {
		s->head_seq = 0;
		memcpy(s->head_hash, AUDIT_GENESIS_HASH, sizeof(s->head_hash));
		s->head_known = 1;
		return AL_OK;
	}
	if ((rc = audit_get(s, lo, &spec)) < 0)
		return rc;
	if (!is_hex64(json_string_value(json_object_get(spec, "hash")))) {
		json_decref(spec);
		return al_error_set(AL_ERR_IO, "audit record %" PRIu64 " in namespace %s has a damaged hash: verify "
					       "the log",
				    lo, s->ns);
	}
	memcpy(s->head_hash, json_string_value(json_object_get(spec, "hash")), sizeof(s->head_hash));
	s->head_seq = lo;
	s->head_known = 1;
	json_decref(spec);
	return AL_OK;
}

/* Seals `entry` as the next record and creates it. `obj` (may be NULL) fills
 * the entry's object reference when the caller left it empty. */
static int audit_append_obj(struct kube_store *s, const json_t *entry, const json_t *obj)
{
	json_t *rec = NULL, *body = NULL, *answer = NULL;
	char *path = NULL;
	int rc = AL_OK;

	if (!json_is_object(entry))
		return al_error_set(AL_ERR_INVALID, "audit entry must be a JSON object");
	rec = json_deep_copy(entry);
	if (!rec)
		return nomem();
	if (obj && (!json_object_get(rec, "object") || json_is_null(json_object_get(rec, "object")))) {
		const json_t *md = json_object_get(obj, "metadata");
		json_t *ref = json_pack("{s:O?, s:O?, s:O?, s:O?}", "kind", json_object_get(obj, "kind"), "namespace",
					json_object_get(md, "namespace"), "name", json_object_get(md, "name"), "uid",
					json_object_get(md, "uid"));
		if (!ref || json_object_set_new(rec, "object", ref) < 0) {
			json_decref(rec);
			return nomem();
		}
	}
	path = kube_path(RESOURCE_API_VERSION, s->ns, AUDIT_PLURAL, NULL, NULL);
	if (!path) {
		json_decref(rec);
		return al_error_wrap(AL_ERR_INVALID, "audit namespace");
	}
	pthread_mutex_lock(&s->amu);
	for (int attempt = 0;; attempt++) {
		char name[AUDIT_NAME_LEN];
		json_t *sealed, *theirs = NULL;
		uint64_t seq;
		int64_t deadline = util_monotonic_ms() + s->o.request_deadline_ms;
		int ambiguous = 0; /* a POST of this very record may have been stored */

		if (!s->head_known && (rc = audit_find_head(s, 0)) < 0)
			break;
		seq = s->head_seq + 1;
		sealed = json_deep_copy(rec);
		if (!sealed) {
			rc = nomem();
			break;
		}
		if ((rc = audit_seal(sealed, seq, s->head_hash)) < 0) {
			json_decref(sealed);
			break;
		}
		audit_name(seq, name);
		json_decref(body);
		body = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", RESOURCE_API_VERSION, "kind", AUDIT_KIND,
				 "metadata", "name", name, "namespace", s->ns, "spec", sealed);
		if (!body) {
			rc = nomem();
			break;
		}
		/* Sent without the client's automatic retries: only a POST that
		 * may have reached the server makes an identical stored record
		 * ours. Two writers can seal identical records (same entry, same
		 * second, same head): a clean 409 means the other one's. */
		for (int tries = 0;; tries++) {
			json_decref(answer);
			answer = NULL;
			rc = kube_request(s->kc, "POST", path, body, NULL, NULL, &answer);
			if (rc != AL_ERR_UNAVAILABLE || util_monotonic_ms() >= deadline)
				break;
			ambiguous = 1;
			{
				struct timespec ts;
				int ms = kube_backoff_ms(tries < 10 ? tries : 10, 100, 5000);
				ts.tv_sec = ms / 1000;
				ts.tv_nsec = (long)(ms % 1000) * 1000000L;
				nanosleep(&ts, NULL);
			}
		}
		if (rc == AL_OK) {
			/* A schema that pruned or defaulted a field would break the
			 * chain silently: refuse to go on with such a CRD. */
			if (!json_equal(json_object_get(answer, "spec"), sealed)) {
				rc = al_error_set(AL_ERR_INTERNAL,
						  "audit record %s: the API server changed the record on create (the "
						  "AirlockAuditRecord CRD prunes or defaults a field); install "
						  "deploy/crds/airlockauditrecords.yaml",
						  name);
				s->head_known = 0;
				break;
			}
			s->head_seq = seq;
			memcpy(s->head_hash, json_string_value(json_object_get(sealed, "hash")), sizeof(s->head_hash));
			break;
		}
		if (rc != AL_ERR_EXISTS)
			break;
		/* Another writer took seq - or our own earlier attempt did and its
		 * answer was lost: then the stored record is ours. */
		if ((rc = audit_get(s, seq, &theirs)) < 0)
			break;
		if (ambiguous && json_equal(theirs, sealed)) {
			json_decref(theirs);
			s->head_seq = seq;
			memcpy(s->head_hash, json_string_value(json_object_get(sealed, "hash")), sizeof(s->head_hash));
			rc = AL_OK;
			break;
		}
		json_decref(theirs);
		if (attempt + 1 >= AUDIT_RETRIES) {
			rc = al_error_set(AL_ERR_UNAVAILABLE,
					  "audit: %d attempts to append to the log in namespace %s lost to other "
					  "writers; retry",
					  AUDIT_RETRIES, s->ns);
			break;
		}
		if ((rc = audit_find_head(s, seq)) < 0)
			break;
	}
	if (rc < 0 && rc != AL_ERR_UNAVAILABLE)
		s->head_known = 0; /* re-read the head next time */
	pthread_mutex_unlock(&s->amu);
	json_decref(answer);
	json_decref(body);
	json_decref(rec);
	free(path);
	return rc;
}

/* Records the audit entry of a change already made: an error here is the
 * caller's error, and says that the change itself stands. */
static int audit_after(struct kube_store *s, const json_t *audit, const json_t *obj, const char *what,
		       const struct key *k)
{
	int rc;
	if (!audit)
		return AL_OK;
	if ((rc = audit_append_obj(s, audit, obj)) < 0) {
		rc = al_error_wrap(rc, "%s of %s %s/%s was made but its audit record could not be written", what,
				   kind_name(k->kind), k->ns, k->name);
		log_error("%s", al_error_message());
	}
	return rc;
}

static int kube_audit_append(struct store *base, const json_t *audit)
{
	return audit_append_obj(from_base(base), audit, NULL);
}

static int kube_audit_list(struct store *base, uint64_t after_seq, size_t limit, json_t **out)
{
	struct kube_store *s = from_base(base);
	json_t *items = NULL, *arr, *it;
	char *path;
	size_t i;
	int rc;

	*out = NULL;
	path = kube_path(RESOURCE_API_VERSION, s->ns, AUDIT_PLURAL, NULL, NULL);
	if (!path)
		return al_error_wrap(AL_ERR_INVALID, "audit namespace");
	rc = list_collection(s, path, NULL, &items, NULL);
	free(path);
	if (rc < 0)
		return rc;
	arr = json_array();
	if (!arr) {
		json_decref(items);
		return nomem();
	}
	/* Names are audit-%020llu, so the server's order is seq order; a record
	 * someone slipped in out of order is the verifier's to find. */
	json_array_foreach(items, i, it) {
		json_t *spec = json_object_get(it, "spec");
		json_t *seq = json_object_get(spec, "seq");
		if (json_is_integer(seq) && json_integer_value(seq) >= 0 &&
		    (uint64_t)json_integer_value(seq) <= after_seq)
			continue;
		if (json_array_append(arr, json_is_object(spec) ? spec : json_object_get(it, "metadata")) < 0) {
			json_decref(items);
			json_decref(arr);
			return nomem();
		}
		if (limit && json_array_size(arr) >= limit)
			break;
	}
	json_decref(items);
	*out = arr;
	return AL_OK;
}

/* ---- objects ---- */

/* The body of a create: the caller's object without the server's fields. */
static json_t *create_body(const json_t *in, const struct key *k)
{
	static const char *const server_fields[] = { "resourceVersion", "uid", "creationTimestamp", "generation",
						     "deletionTimestamp", "deletionGracePeriodSeconds",
						     "managedFields", "selfLink" };
	json_t *body = json_deep_copy(in), *md;

	if (!body)
		return NULL;
	md = json_object_get(body, "metadata");
	for (size_t i = 0; i < sizeof(server_fields) / sizeof(server_fields[0]); i++)
		json_object_del(md, server_fields[i]);
	json_object_del(body, "status");
	if (json_object_set_new(md, "namespace", json_string(k->ns)) < 0) {
		json_decref(body);
		return NULL;
	}
	return body;
}

/* Deletes a just-created object whose status could not be written. */
static void undo_create(struct kube_store *s, const struct key *k, const json_t *created)
{
	char *path = obj_path(k->kind, k->ns, k->name, NULL);
	json_t *opts = json_pack("{s:s, s:s, s:{s:O?}}", "apiVersion", "v1", "kind", "DeleteOptions", "preconditions",
				 "uid", json_object_get(json_object_get(created, "metadata"), "uid"));
	char saved[AL_ERROR_MSG_MAX];

	snprintf(saved, sizeof(saved), "%s", al_error_message());
	if (path && opts && request(s, "DELETE", path, opts, NULL, NULL) < 0)
		log_warn("cannot remove %s %s/%s after its status could not be written: %s", kind_name(k->kind),
			 k->ns, k->name, al_error_message());
	al_error_set(AL_ERR_INTERNAL, "%s", saved);
	free(path);
	json_decref(opts);
}

static char *seen_key(const struct key *k)
{
	struct buf b;
	buf_init(&b, 1024);
	if (buf_appendf(&b, "%s/%s/%s", resource_kind_name(k->kind), k->ns ? k->ns : "", k->name)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

/* Remembers obj's status at its resourceVersion (a deep copy: callers
 * change the objects they are given). Best effort: nothing on failure. */
static void seen_put(struct kube_store *s, const struct key *k, const json_t *obj)
{
	const char *rv = rv_of(obj);
	char *key = seen_key(k);
	json_t *st = json_object_get(obj, "status");
	json_t *entry = rv ? json_pack("{s:s, s:o}", "rv", rv, "status", st ? json_deep_copy(st) : json_object()) : NULL;

	if (key && entry) {
		pthread_mutex_lock(&s->smu);
		if (json_object_size(s->seen) >= SEEN_MAX)
			json_object_clear(s->seen);
		json_object_set_new(s->seen, key, entry);
		entry = NULL;
		pthread_mutex_unlock(&s->smu);
	}
	json_decref(entry);
	free(key);
}

/* The status remembered at exactly `rv` (a new reference), or NULL. */
static json_t *seen_status(struct kube_store *s, const struct key *k, const char *rv)
{
	char *key = seen_key(k);
	json_t *entry, *st = NULL;
	if (!key || !rv) {
		free(key);
		return NULL;
	}
	pthread_mutex_lock(&s->smu);
	entry = json_object_get(s->seen, key);
	if (entry && json_string_value(json_object_get(entry, "rv")) &&
	    !strcmp(json_string_value(json_object_get(entry, "rv")), rv))
		st = json_deep_copy(json_object_get(entry, "status"));
	pthread_mutex_unlock(&s->smu);
	free(key);
	return st;
}

static void kube_seen(struct store *base, const json_t *obj)
{
	struct kube_store *s = from_base(base);
	struct key k;
	if (check_object(obj, &k) == AL_OK)
		seen_put(s, &k, obj);
	else
		al_error_clear();
}

static int kube_create(struct store *base, const json_t *in, const json_t *audit, json_t **out)
{
	struct kube_store *s = from_base(base);
	json_t *body = NULL, *created = NULL, *status_body = NULL, *with_status = NULL;
	const json_t *status;
	char *path = NULL, *spath = NULL;
	struct key k;
	int rc;

	if (out)
		*out = NULL;
	if ((rc = check_object(in, &k)) < 0)
		return rc;
	body = create_body(in, &k);
	path = obj_path(k.kind, k.ns, NULL, NULL);
	if (!body || !path) {
		rc = path ? nomem() : AL_ERR_INVALID;
		goto out;
	}
	rc = request(s, "POST", path, body, NULL, &created);
	if (rc == AL_ERR_EXISTS)
		rc = al_error_set(AL_ERR_EXISTS, "%s %s/%s already exists", kind_name(k.kind), k.ns, k.name);
	if (rc < 0)
		goto out;
	clean(created);
	status = json_object_get(in, "status");
	if (json_is_object(status)) {
		/* The status subresource ignores status on create: a second call. */
		status_body = json_deep_copy(created);
		spath = obj_path(k.kind, k.ns, k.name, "status");
		if (!status_body || !spath || json_object_set_new(status_body, "status", json_deep_copy(status)) < 0) {
			rc = spath ? nomem() : AL_ERR_INVALID;
			goto out;
		}
		rc = request(s, "PUT", spath, status_body, NULL, &with_status);
		/* A controller may change the new object's metadata between the
		 * two calls (the operator adds its finalizer at once): write the
		 * status over the fresh version, but only while nobody has written
		 * a status of their own. */
		for (int attempt = 0; rc == AL_ERR_CONFLICT && attempt < 5; attempt++) {
			char *opath = obj_path(k.kind, k.ns, k.name, NULL);
			json_t *fresh = NULL, *fs;
			json_decref(with_status);
			with_status = NULL;
			if (!opath)
				break;
			rc = request(s, "GET", opath, NULL, NULL, &fresh);
			free(opath);
			fs = json_object_get(fresh, "status");
			if (rc == AL_OK && (!fs || (json_is_object(fs) && json_object_size(fs) == 0)) &&
			    !json_object_set_new(fresh, "status", json_deep_copy(status))) {
				clean(fresh);
				json_decref(created);
				created = json_incref(fresh);
				rc = request(s, "PUT", spath, fresh, NULL, &with_status);
			} else if (rc == AL_OK) {
				rc = al_error_set(AL_ERR_CONFLICT, "someone else wrote its status first");
				json_decref(fresh);
				break;
			}
			json_decref(fresh);
		}
		if (rc < 0) {
			int code = rc;
			al_error_wrap(rc, "%s %s/%s: writing its status after creating it", kind_name(k.kind), k.ns,
				      k.name);
			undo_create(s, &k, created);
			rc = code;
			goto out;
		}
		clean(with_status);
		json_decref(created);
		created = with_status;
		with_status = NULL;
	}
	seen_put(s, &k, created);
	if ((rc = audit_after(s, audit, created, "create", &k)) < 0)
		goto out;
	if (out) {
		*out = created;
		created = NULL;
	}
out:
	json_decref(body);
	json_decref(created);
	json_decref(status_body);
	json_decref(with_status);
	free(path);
	free(spath);
	return rc;
}

static int get_obj(struct kube_store *s, const struct key *k, json_t **out);

/* obj's namesake exists with the same spec: 1 (and *out, if given, is it). */
static int identical_exists(struct kube_store *s, const json_t *obj, json_t **out)
{
	json_t *cur = NULL;
	struct key k;
	int same;

	if (check_object(obj, &k) < 0 || get_obj(s, &k, &cur) < 0) {
		al_error_clear();
		return 0;
	}
	same = json_equal(json_object_get(cur, "spec"), json_object_get(obj, "spec"));
	if (same && out) {
		json_decref(*out);
		*out = cur;
		cur = NULL;
	}
	json_decref(cur);
	if (same)
		al_error_clear();
	return same;
}

static int kube_create_many(struct store *base, size_t n, const json_t *const *objs, const json_t *const *audits,
			    json_t **outs)
{
	if (n == 0 || n > STORE_CREATE_MANY_MAX)
		return al_error_set(AL_ERR_INVALID, "store: create takes 1 to %d objects", STORE_CREATE_MANY_MAX);
	for (size_t i = 0; outs && i < n; i++)
		outs[i] = NULL;
	/* No transactions in Kubernetes: in order, stopping at the first failure. */
	for (size_t i = 0; i < n; i++) {
		int rc = kube_create(base, objs[i], audits ? audits[i] : NULL, outs ? &outs[i] : NULL);
		/* The objects after the first depend on it (a datasource's binding),
		 * and a controller watching may make the same one as soon as the
		 * first exists (the operator binds a new datasource). One that
		 * exists with exactly the spec we meant is ours: the create
		 * succeeded (without our audit record of it: the maker wrote its
		 * own). The first object is never taken this way: a duplicate
		 * create stays a 409. */
		if (rc == AL_ERR_EXISTS && i > 0 && identical_exists(from_base(base), objs[i], outs ? &outs[i] : NULL))
			rc = AL_OK;
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

static int get_obj(struct kube_store *s, const struct key *k, json_t **out)
{
	char *path = obj_path(k->kind, k->ns, k->name, NULL);
	int rc;

	*out = NULL;
	if (!path)
		return AL_ERR_INVALID;
	rc = request(s, "GET", path, NULL, NULL, out);
	free(path);
	if (rc == AL_ERR_NOT_FOUND)
		return not_found(k);
	if (rc == AL_OK) {
		clean(*out);
		seen_put(s, k, *out);
	}
	return rc;
}

static int kube_get(struct store *base, const char *kind, const char *ns, const char *name, json_t **out)
{
	struct key k;
	int rc;

	*out = NULL;
	if (!name || !*name)
		return al_error_set(AL_ERR_INVALID, "get: kind and name are required");
	if ((rc = parse_kind(kind, &k.kind)) < 0)
		return rc;
	k.ns = ns_or_default(ns);
	k.name = name;
	return get_obj(from_base(base), &k, out);
}

static int kube_list(struct store *base, const char *kind, const char *ns, const char *selector, json_t **out_items,
		     uint64_t *out_rv)
{
	struct kube_store *s = from_base(base);
	enum resource_kind k;
	json_t *items = NULL;
	char *path;
	int rc;

	*out_items = NULL;
	if (out_rv)
		*out_rv = 0;
	if ((rc = parse_kind(kind, &k)) < 0)
		return rc;
	path = obj_path(k, (ns && *ns) ? ns : NULL, NULL, NULL);
	if (!path)
		return AL_ERR_INVALID;
	rc = list_collection(s, path, selector, &items, out_rv);
	free(path);
	if (rc == AL_OK && (rc = sort_items(items)) == AL_OK) {
		*out_items = items;
		items = NULL;
	}
	json_decref(items);
	return rc;
}

static int replace_field(json_t *dst, const json_t *src, const char *field)
{
	json_t *v = json_object_get(src, field);
	if (!v || json_is_null(v)) {
		json_object_del(dst, field);
		return AL_OK;
	}
	return json_object_set_new(dst, field, json_deep_copy(v)) < 0 ? nomem() : AL_OK;
}

/*
 * Writes of an existing object (kube_update, kube_update_status) share one
 * shape: build a body for this attempt, send it, and - only when the caller
 * gave no resourceVersion ("whatever is current") - build again from a fresh
 * read on a 409. A caller's own version is never retried: its conflict is
 * theirs to see. Then the answer is remembered and audited.
 */
struct write_op {
	const char *method;       /* PUT or PATCH */
	const char *subresource;  /* NULL or "status" */
	const char *content_type; /* NULL for JSON */
	const char *audit_action; /* "update", "status update" */
	/* The body of one attempt, a new reference in *body. */
	int (*build)(struct kube_store *s, const struct key *k, const json_t *in, const char *want, int attempt,
		     json_t **body);
};

static int write_existing(struct kube_store *s, const struct write_op *op, const json_t *in, const json_t *audit,
			  json_t **out)
{
	json_t *body = NULL, *res = NULL;
	const char *want;
	char *path = NULL;
	struct key k;
	int rc;

	if (out)
		*out = NULL;
	if ((rc = check_object(in, &k)) < 0 || (rc = input_rv(in, &want)) < 0)
		return rc;
	path = obj_path(k.kind, k.ns, k.name, op->subresource);
	if (!path)
		return AL_ERR_INVALID;
	for (int attempt = 0; attempt < UPDATE_RETRIES; attempt++) {
		json_decref(body);
		body = NULL;
		if ((rc = op->build(s, &k, in, want, attempt, &body)) < 0)
			break;
		rc = request(s, op->method, path, body, op->content_type, &res);
		if (rc != AL_ERR_CONFLICT || want)
			break;
	}
	if (rc == AL_ERR_CONFLICT)
		rc = conflict(&k, want ? want : "the current one, repeatedly");
	else if (rc == AL_ERR_NOT_FOUND)
		rc = not_found(&k);
	if (rc < 0)
		goto out;
	clean(res);
	seen_put(s, &k, res);
	if ((rc = audit_after(s, audit, res, op->audit_action, &k)) < 0)
		goto out;
	if (out) {
		*out = res;
		res = NULL;
	}
out:
	json_decref(body);
	json_decref(res);
	free(path);
	return rc;
}

/* PUT body: with the caller's version, their object as it is (the server
 * checks the version); without one, the embedded store's fields onto the
 * current object, sent with its version (custom resources refuse
 * unconditional updates). Never the status: that is the subresource's. */
static int update_body(struct kube_store *s, const struct key *k, const json_t *in, const char *want, int attempt,
		       json_t **body)
{
	json_t *b = NULL, *cur = NULL;
	int rc = AL_OK;

	(void)attempt;
	if (want) {
		b = json_deep_copy(in);
		if (!b || json_object_set_new(json_object_get(b, "metadata"), "namespace", json_string(k->ns)) < 0)
			rc = nomem();
	} else {
		const json_t *in_md = json_object_get(in, "metadata");
		json_t *md;
		if ((rc = get_obj(s, k, &cur)) < 0)
			goto out;
		if (!(b = json_deep_copy(cur))) {
			rc = nomem();
			goto out;
		}
		md = json_object_get(b, "metadata");
		if ((rc = replace_field(md, in_md, "labels")) < 0 || (rc = replace_field(md, in_md, "annotations")) < 0 ||
		    (rc = replace_field(md, in_md, "finalizers")) < 0 ||
		    (rc = replace_field(md, in_md, "ownerReferences")) < 0 || (rc = replace_field(b, in, "spec")) < 0)
			goto out;
	}
	if (rc < 0)
		goto out;
	json_object_del(b, "status");
	json_object_del(json_object_get(b, "metadata"), "managedFields");
	*body = b;
	b = NULL;
out:
	json_decref(b);
	json_decref(cur);
	return rc;
}

static int kube_update(struct store *base, const json_t *in, const json_t *audit, json_t **out)
{
	static const struct write_op op = { "PUT", NULL, NULL, "update", update_body };
	return write_existing(from_base(base), &op, in, audit, out);
}

/*
 * A merge patch that turns `old` into `new`: `new` itself, with null for
 * every key of an object in `old` that `new` no longer has (at every depth
 * where both are objects; arrays and scalars are replaced whole).
 */
static json_t *replace_patch(const json_t *old, const json_t *new)
{
	json_t *p;
	const char *key;
	json_t *v;

	if (!new || json_is_null(new))
		return json_null();
	if (!json_is_object(old) || !json_is_object(new))
		return json_deep_copy(new);
	p = json_object();
	if (!p)
		return NULL;
	json_object_foreach((json_t *)new, key, v) {
		json_t *sub = replace_patch(json_object_get(old, key), v);
		if (!sub || json_object_set_new(p, key, sub) < 0) {
			json_decref(p);
			return NULL;
		}
	}
	json_object_foreach((json_t *)old, key, v) {
		if (!json_object_get(new, key) && json_object_set_new(p, key, json_null()) < 0) {
			json_decref(p);
			return NULL;
		}
	}
	return p;
}

/* Status merge patch: the new status, with null for every key the current
 * status has and the new one lacks, carrying the version it was computed
 * against (a stale one answers 409). The current status comes from the one
 * remembered at the caller's version when there is one (first attempt), or
 * from a fresh read. */
static int status_patch(struct kube_store *s, const struct key *k, const json_t *in, const char *want, int attempt,
			json_t **body)
{
	json_t *cur = NULL, *base_status = NULL, *sp;
	const char *have;
	int rc = AL_OK;

	if (attempt == 0 && want && (base_status = seen_status(s, k, want))) {
		have = want;
	} else {
		if ((rc = get_obj(s, k, &cur)) < 0)
			return rc;
		have = rv_of(cur);
		if (want && (!have || strcmp(have, want) != 0)) {
			json_decref(cur);
			return AL_ERR_CONFLICT;
		}
		base_status = json_incref(json_object_get(cur, "status"));
	}
	sp = replace_patch(base_status, json_object_get(in, "status"));
	json_decref(base_status);
	/* `have` may point into cur: pack before letting it go. */
	*body = sp ? json_pack("{s:{s:s?}, s:o}", "metadata", "resourceVersion", have, "status", sp) : NULL;
	if (!*body)
		rc = nomem();
	json_decref(cur);
	return rc;
}

static int kube_update_status(struct store *base, const json_t *in, const json_t *audit, json_t **out)
{
	static const struct write_op op = { "PATCH", "status", "application/merge-patch+json", "status update",
					    status_patch };
	return write_existing(from_base(base), &op, in, audit, out);
}

static int kube_remove(struct store *base, const char *kind, const char *ns, const char *name, const char *rv,
		       const json_t *audit)
{
	struct kube_store *s = from_base(base);
	json_t *opts = NULL, *answer = NULL, *ref = NULL;
	const json_t *obj;
	char *path = NULL;
	struct key k;
	int rc;

	if (!name || !*name)
		return al_error_set(AL_ERR_INVALID, "delete: kind and name are required");
	if ((rc = parse_kind(kind, &k.kind)) < 0)
		return rc;
	k.ns = ns_or_default(ns);
	k.name = name;
	path = obj_path(k.kind, k.ns, k.name, NULL);
	if (!path)
		return AL_ERR_INVALID;
	if (rv && *rv) {
		opts = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "DeleteOptions", "preconditions",
				 "resourceVersion", rv);
		if (!opts) {
			rc = nomem();
			goto out;
		}
	}
	rc = request(s, "DELETE", path, opts, NULL, &answer);
	if (rc == AL_ERR_CONFLICT)
		rc = conflict(&k, rv);
	else if (rc == AL_ERR_NOT_FOUND)
		rc = not_found(&k);
	if (rc < 0)
		goto out;
	/* The answer is the object (deleted, or marked while finalizers remain);
	 * a bare Status names it only by its key. */
	obj = answer;
	if (!json_is_string(json_object_get(json_object_get(answer, "metadata"), "uid"))) {
		ref = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", RESOURCE_API_VERSION, "kind",
				kind_name(k.kind), "metadata", "namespace", k.ns, "name", k.name);
		if (!ref) {
			rc = nomem();
			goto out;
		}
		obj = ref;
	}
	rc = audit_after(s, audit, obj, "delete", &k);
out:
	json_decref(opts);
	json_decref(answer);
	json_decref(ref);
	free(path);
	return rc;
}

/* ---- reflectors ---- */

/* Called with wmu held. Takes a reference to obj. */
static void ring_push(struct reflector *r, uint64_t rv, enum ev_type type, struct blob *obj)
{
	size_t cap = r->s->o.watch_history;
	struct ring_ev *e;

	if (rv < r->last_rv)
		rv = r->last_rv; /* never out of order, whatever the server said */
	if (r->count == cap) {
		struct ring_ev *old = &r->ring[r->start];
		if (old->rv > r->floor)
			r->floor = old->rv;
		r->evicted = 1;
		blob_unref(old->obj);
		r->start = (r->start + 1) % cap;
		r->count--;
	}
	e = &r->ring[(r->start + r->count) % cap];
	e->rv = rv;
	e->type = type;
	e->obj = blob_ref(obj);
	r->count++;
	r->last_rv = rv;
	if (rv > r->progress)
		r->progress = rv;
}

static int obj_key(const json_t *obj, struct buf *key)
{
	buf_reset(key);
	return buf_appendf(key, "%s/%s", resource_namespace(obj), resource_name(obj));
}

/* A cleaned compact copy of a watched or listed object. */
static struct blob *obj_blob(const json_t *obj)
{
	json_t *copy = json_deep_copy(obj);
	char *text;

	if (!copy)
		return NULL;
	clean(copy);
	text = json_dumps(copy, JSON_COMPACT);
	json_decref(copy);
	return text ? blob_take(text) : NULL;
}

static int on_watch_event(void *userdata, const char *type, const json_t *object)
{
	struct reflector *r = userdata;
	struct kube_store *s = r->s;
	const char *rvs = rv_of(object);
	uint64_t rv = store_rv_parse(rvs);
	struct blob *b = NULL;
	struct buf key;
	enum ev_type t;
	int rc = AL_OK;

	if (!rv) {
		log_warn("watch %s: an event without a resourceVersion was ignored",
			 resource_kind_plural(r->kind));
		return 0;
	}
	if (!strcmp(type, "BOOKMARK")) {
		snprintf(r->resume_rv, sizeof(r->resume_rv), "%s", rvs);
		pthread_mutex_lock(&s->wmu);
		if (rv > r->progress)
			r->progress = rv;
		pthread_cond_broadcast(&s->wcond);
		pthread_mutex_unlock(&s->wmu);
		return 0;
	}
	t = !strcmp(type, "ADDED") ? EV_ADDED : !strcmp(type, "MODIFIED") ? EV_MODIFIED : EV_DELETED;
	buf_init(&key, 1024);
	if ((rc = obj_key(object, &key)) < 0 || !(b = obj_blob(object))) {
		buf_free(&key);
		log_error("watch %s: out of memory; relisting", resource_kind_plural(r->kind));
		r->relist_asked = 1;
		return 1; /* stop this watch; the loop relists */
	}
	if (t == EV_DELETED)
		cache_del(&r->cache, buf_cstr(&key));
	else
		rc = cache_put(&r->cache, buf_cstr(&key), rv, b);
	buf_free(&key);
	if (rc < 0) {
		blob_unref(b);
		r->relist_asked = 1;
		return 1;
	}
	snprintf(r->resume_rv, sizeof(r->resume_rv), "%s", rvs);
	pthread_mutex_lock(&s->wmu);
	ring_push(r, rv, t, b);
	pthread_cond_broadcast(&s->wcond);
	pthread_mutex_unlock(&s->wmu);
	blob_unref(b);
	return 0;
}

struct synth {
	uint64_t rv;
	enum ev_type type;
	struct blob *obj;
};

static int cmp_synth(const void *a, const void *b)
{
	const struct synth *x = a, *y = b;
	if (x->rv != y->rv)
		return x->rv < y->rv ? -1 : 1;
	return (int)x->type - (int)y->type;
}

/* Lists every namespace; after the first list, turns the difference from
 * the cache into events, so nothing that changed meanwhile is lost. */
static int relist(struct reflector *r)
{
	struct kube_store *s = r->s;
	struct cache fresh = { 0 };
	struct synth *ev = NULL;
	size_t nev = 0, cap = 0, i;
	json_t *items = NULL, *it;
	uint64_t list_rv = 0;
	struct buf key;
	char *path;
	int rc, first;

	path = obj_path(r->kind, NULL, NULL, NULL);
	if (!path)
		return AL_ERR_INVALID;
	rc = list_collection(s, path, NULL, &items, &list_rv);
	free(path);
	if (rc < 0)
		return rc;
	if (!list_rv) {
		json_decref(items);
		return al_error_set(AL_ERR_IO, "list %s: the answer has no resourceVersion",
				    resource_kind_plural(r->kind));
	}
	pthread_mutex_lock(&s->wmu);
	first = !r->synced;
	pthread_mutex_unlock(&s->wmu);
	buf_init(&key, 1024);
	for (struct centry **b = r->cache.b; b && b < r->cache.b + r->cache.nb; b++)
		for (struct centry *e = *b; e; e = e->next)
			e->seen = 0;
	json_array_foreach(items, i, it) {
		uint64_t rv = store_rv_parse(rv_of(it));
		struct centry *old;
		struct blob *bl;

		if ((rc = obj_key(it, &key)) < 0)
			goto out;
		if (!(bl = obj_blob(it))) {
			rc = nomem();
			goto out;
		}
		rc = cache_put(&fresh, buf_cstr(&key), rv, bl);
		old = cache_find(&r->cache, buf_cstr(&key));
		if (old)
			old->seen = 1;
		if (rc == AL_OK && !first && (!old || old->rv != rv)) {
			if (nev == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct synth *n = realloc(ev, ncap * sizeof(*ev));
				if (!n)
					rc = nomem();
				else {
					ev = n;
					cap = ncap;
				}
			}
			if (rc == AL_OK)
				ev[nev++] = (struct synth){ rv, old ? EV_MODIFIED : EV_ADDED, blob_ref(bl) };
		}
		blob_unref(bl);
		if (rc < 0)
			goto out;
	}
	/* What vanished was deleted at some version up to the list's. */
	for (struct centry **b = r->cache.b; !first && b && b < r->cache.b + r->cache.nb; b++)
		for (struct centry *e = *b; e; e = e->next) {
			if (e->seen)
				continue;
			if (nev == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct synth *n = realloc(ev, ncap * sizeof(*ev));
				if (!n) {
					rc = nomem();
					goto out;
				}
				ev = n;
				cap = ncap;
			}
			ev[nev++] = (struct synth){ list_rv, EV_DELETED, blob_ref(e->obj) };
		}
	if (nev)
		qsort(ev, nev, sizeof(*ev), cmp_synth);
	pthread_mutex_lock(&s->wmu);
	for (i = 0; i < nev; i++)
		ring_push(r, ev[i].rv, ev[i].type, ev[i].obj);
	if (first) {
		r->floor = list_rv;
		r->last_rv = list_rv;
		r->synced = 1;
	}
	if (list_rv > r->progress)
		r->progress = list_rv;
	pthread_cond_broadcast(&s->wcond);
	pthread_mutex_unlock(&s->wmu);
	cache_free(&r->cache);
	r->cache = fresh;
	memset(&fresh, 0, sizeof(fresh));
	snprintf(r->resume_rv, sizeof(r->resume_rv), "%" PRIu64, list_rv);
	if (nev)
		log_info("watch %s: relisted at resourceVersion %" PRIu64 ", %zu change(s) caught up",
			 resource_kind_plural(r->kind), list_rv, nev);
out:
	for (i = 0; i < nev; i++)
		blob_unref(ev[i].obj);
	free(ev);
	cache_free(&fresh);
	json_decref(items);
	buf_free(&key);
	return rc;
}

/* Sleeps up to ms, waking early on close or a pause change. */
static void nap(struct kube_store *s, int ms)
{
	struct timespec ts;
	int64_t deadline = util_monotonic_ms() + ms;

	pthread_mutex_lock(&s->wmu);
	while (!s->closing && util_monotonic_ms() < deadline) {
		int64_t left = deadline - util_monotonic_ms();
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->wcond, &s->wmu, &ts);
		if (s->paused)
			break;
	}
	pthread_mutex_unlock(&s->wmu);
}

/* Waits while paused; 1 when the store is closing. */
static int wait_unpaused(struct kube_store *s)
{
	int closing;
	pthread_mutex_lock(&s->wmu);
	while (s->paused && !s->closing)
		pthread_cond_wait(&s->wcond, &s->wmu);
	closing = s->closing;
	pthread_mutex_unlock(&s->wmu);
	return closing;
}

static int watch_timeout_s(const struct kube_store *s)
{
	int span = s->o.watch_timeout_max_s - s->o.watch_timeout_min_s;
	/* kube_backoff_ms with a huge attempt is a uniform draw in [0, max]. */
	return s->o.watch_timeout_min_s + (span > 0 ? kube_backoff_ms(30, span, span) : 0);
}

static void *reflector_main(void *arg)
{
	struct reflector *r = arg;
	struct kube_store *s = r->s;
	const char *plural = resource_kind_plural(r->kind);
	char *path = obj_path(r->kind, NULL, NULL, NULL);
	int need_list = 1, failures = 0, listed_once = 0;

	if (!path) {
		log_error("watch %s: cannot build the collection path", plural);
		return NULL;
	}
	while (!wait_unpaused(s)) {
		int rc;
		if (need_list) {
			if (listed_once)
				atomic_fetch_add(&s->relists, 1);
			if ((rc = relist(r)) < 0) {
				int ms = kube_backoff_ms(failures < 30 ? failures : 30, 200, 30000);
				failures++;
				log_warn("watch %s: list failed (retry in %d ms): %s", plural, ms, al_error_message());
				nap(s, ms);
				continue;
			}
			listed_once = 1;
			need_list = 0;
			failures = 0;
		}
		atomic_fetch_add(&s->watches, 1);
		rc = kube_watch(s->kc, path, NULL, r->resume_rv, watch_timeout_s(s), on_watch_event, r,
				&s->interrupt);
		if (atomic_load(&s->interrupt))
			continue; /* closing or paused: the loop's condition decides */
		if (r->relist_asked) {
			r->relist_asked = 0;
			need_list = 1;
			continue;
		}
		if (rc == AL_OK) {
			failures = 0; /* the server ended it (timeoutSeconds): watch on */
			continue;
		}
		if (rc == AL_ERR_GONE) {
			log_info("watch %s: %s", plural, al_error_message());
			need_list = 1;
			continue;
		}
		atomic_fetch_add(&s->reconnects, 1);
		{
			int ms = kube_backoff_ms(failures < 30 ? failures : 30, 200, 30000);
			failures++;
			log_warn("watch %s failed (retry in %d ms): %s", plural, ms, al_error_message());
			if (failures >= WATCH_FAILURES_RELIST)
				need_list = 1;
			nap(s, ms);
		}
	}
	free(path);
	return NULL;
}

/* Called with wmu held. */
static int ensure_reflector(struct kube_store *s, enum resource_kind k)
{
	struct reflector *r = &s->refl[k];
	if (r->started)
		return AL_OK;
	if (s->closing)
		return al_error_set(AL_ERR_UNAVAILABLE, "store: closing");
	r->ring = calloc(s->o.watch_history, sizeof(*r->ring));
	if (!r->ring)
		return nomem();
	if (pthread_create(&r->thread, NULL, reflector_main, r) != 0) {
		free(r->ring);
		r->ring = NULL;
		return al_error_set(AL_ERR_INTERNAL, "store: cannot start the %s watch thread",
				    resource_kind_plural(k));
	}
	r->started = 1;
	return AL_OK;
}

struct picked {
	uint64_t rv;
	enum ev_type type;
	struct blob *obj;
};

static int cmp_picked(const void *a, const void *b)
{
	const struct picked *x = a, *y = b;
	return x->rv < y->rv ? -1 : x->rv > y->rv ? 1 : 0;
}

static void deadline_ts(struct timespec *ts, int64_t left_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += left_ms / 1000;
	ts->tv_nsec += (left_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int kube_watch_events(struct store *base, const char *kind, uint64_t since_rv, int timeout_ms,
			     json_t **out_events, uint64_t *out_rv)
{
	struct kube_store *s = from_base(base);
	int64_t deadline = util_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	enum resource_kind kinds[RESOURCE_KIND_COUNT];
	size_t nk = 0, np = 0, cap = 0;
	struct picked *p = NULL;
	json_t *events = NULL;
	uint64_t resume = since_rv;
	int rc = AL_OK;

	*out_events = NULL;
	if (out_rv)
		*out_rv = 0;
	if (kind && *kind) {
		if ((rc = parse_kind(kind, &kinds[0])) < 0)
			return rc;
		nk = 1;
	} else {
		for (int k = 0; k < RESOURCE_KIND_COUNT; k++)
			kinds[nk++] = (enum resource_kind)k;
	}
	pthread_mutex_lock(&s->wmu);
	for (size_t i = 0; i < nk && rc == AL_OK; i++)
		rc = ensure_reflector(s, kinds[i]);
	while (rc == AL_OK) {
		uint64_t upto = UINT64_MAX;
		int all_synced = 1;
		int64_t left;
		struct timespec ts;

		for (size_t i = 0; i < nk; i++) {
			struct reflector *r = &s->refl[kinds[i]];
			if (!r->synced) {
				all_synced = 0;
				continue;
			}
			if ((since_rv && since_rv < r->floor) || (!since_rv && r->evicted)) {
				rc = al_error_set(AL_ERR_CONFLICT, "resourceVersion %" PRIu64 " is too old: relist",
						  since_rv);
				break;
			}
			if (r->progress < upto)
				upto = r->progress;
		}
		if (rc < 0)
			break;
		if (all_synced) {
			/* Several kinds: only up to where every reflector has got,
			 * so a later call cannot be handed an older event. */
			if (nk == 1)
				upto = UINT64_MAX;
			for (size_t i = 0; i < nk; i++) {
				struct reflector *r = &s->refl[kinds[i]];
				for (size_t j = 0; j < r->count; j++) {
					struct ring_ev *e = &r->ring[(r->start + j) % s->o.watch_history];
					if (e->rv <= since_rv || e->rv > upto)
						continue;
					if (np == cap) {
						size_t ncap = cap ? cap * 2 : 64;
						struct picked *n = realloc(p, ncap * sizeof(*p));
						if (!n) {
							rc = nomem();
							break;
						}
						p = n;
						cap = ncap;
					}
					p[np++] = (struct picked){ e->rv, e->type, blob_ref(e->obj) };
				}
			}
			if (rc < 0 || np)
				break;
			if (upto != UINT64_MAX && upto > resume)
				resume = upto;
			else if (nk == 1 && s->refl[kinds[0]].progress > resume)
				resume = s->refl[kinds[0]].progress;
		}
		left = deadline - util_monotonic_ms();
		if (left <= 0 || s->closing)
			break;
		deadline_ts(&ts, left);
		pthread_cond_timedwait(&s->wcond, &s->wmu, &ts);
	}
	pthread_mutex_unlock(&s->wmu);

	if (rc == AL_OK && np) {
		size_t n = np;
		if (nk > 1)
			qsort(p, np, sizeof(*p), cmp_picked); /* stable enough: equal rvs are one kind's */
		if (n > WATCH_BATCH) {
			/* Never split events that share a resourceVersion. */
			n = WATCH_BATCH;
			while (n < np && p[n].rv == p[n - 1].rv)
				n++;
		}
		events = json_array();
		if (!events)
			rc = nomem();
		for (size_t i = 0; rc == AL_OK && i < n; i++) {
			json_error_t jerr;
			json_t *o = json_loadb(p[i].obj->data, p[i].obj->len, 0, &jerr), *ev;
			if (!o) {
				rc = al_error_set(AL_ERR_INTERNAL, "store: a watch event is not valid JSON (%s)", jerr.text);
				break;
			}
			ev = json_pack("{s:s, s:o}", "type", ev_name[p[i].type], "object", o);
			if (!ev || json_array_append_new(events, ev) < 0)
				rc = nomem();
		}
		resume = p[n - 1].rv;
	}
	for (size_t i = 0; i < np; i++)
		blob_unref(p[i].obj);
	free(p);
	if (rc < 0) {
		json_decref(events);
		return rc;
	}
	if (!events && !(events = json_array()))
		return nomem();
	*out_events = events;
	if (out_rv)
		*out_rv = resume;
	return AL_OK;
}

/* ---- open / close / stats ---- */

static void kube_close(struct store *base)
{
	struct kube_store *s = from_base(base);
	if (!s)
		return;
	pthread_mutex_lock(&s->wmu);
	s->closing = 1;
	atomic_store(&s->interrupt, 1);
	pthread_cond_broadcast(&s->wcond);
	pthread_mutex_unlock(&s->wmu);
	for (int k = 0; k < RESOURCE_KIND_COUNT; k++) {
		struct reflector *r = &s->refl[k];
		if (!r->started)
			continue;
		pthread_join(r->thread, NULL);
		for (size_t j = 0; j < r->count; j++)
			blob_unref(r->ring[(r->start + j) % s->o.watch_history].obj);
		free(r->ring);
		cache_free(&r->cache);
	}
	pthread_cond_destroy(&s->wcond);
	pthread_mutex_destroy(&s->wmu);
	pthread_mutex_destroy(&s->amu);
	pthread_mutex_destroy(&s->smu);
	json_decref(s->seen);
	free(s->ns);
	free(s);
}

static const struct store_ops kube_ops = {
	.create = kube_create,
	.create_many = kube_create_many,
	.get = kube_get,
	.list = kube_list,
	.update = kube_update,
	.update_status = kube_update_status,
	.seen = kube_seen,
	.remove = kube_remove,
	.watch = kube_watch_events,
	.audit_append = kube_audit_append,
	.audit_list = kube_audit_list,
	.close = kube_close,
};

int store_kube_open(struct store **out, struct kube_client *kc, const char *namespace,
		    const struct store_kube_options *opts)
{
	struct kube_store *s;
	const char *ns;
	pthread_condattr_t ca;

	*out = NULL;
	if (!kc)
		return al_error_set(AL_ERR_INVALID, "store: a Kubernetes client is required");
	ns = (namespace && *namespace) ? namespace : kube_client_namespace(kc);
	if (!ns || !resource_is_dns_label(ns))
		return al_error_set(AL_ERR_INVALID, "store: audit namespace \"%s\" is not a valid namespace name",
				    ns ? ns : "");
	s = calloc(1, sizeof(*s));
	if (!s)
		return nomem();
	s->base.ops = &kube_ops;
	s->kc = kc;
	s->ns = util_strdup(ns);
	s->seen = json_object();
	if (!s->ns || !s->seen) {
		json_decref(s->seen);
		free(s->ns);
		free(s);
		return nomem();
	}
	if (opts)
		s->o = *opts;
	if (!s->o.watch_history)
		s->o.watch_history = STORE_KUBE_WATCH_HISTORY;
	if (s->o.request_deadline_ms <= 0)
		s->o.request_deadline_ms = STORE_KUBE_REQUEST_DEADLINE_MS;
	if (s->o.watch_timeout_min_s <= 0)
		s->o.watch_timeout_min_s = STORE_KUBE_WATCH_TIMEOUT_MIN_S;
	if (s->o.watch_timeout_max_s < s->o.watch_timeout_min_s)
		s->o.watch_timeout_max_s = s->o.watch_timeout_min_s > STORE_KUBE_WATCH_TIMEOUT_MAX_S
						   ? s->o.watch_timeout_min_s
						   : STORE_KUBE_WATCH_TIMEOUT_MAX_S;
	pthread_mutex_init(&s->amu, NULL);
	pthread_mutex_init(&s->smu, NULL);
	pthread_mutex_init(&s->wmu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* waits immune to clock changes */
	pthread_cond_init(&s->wcond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&s->interrupt, 0);
	atomic_init(&s->relists, 0);
	atomic_init(&s->reconnects, 0);
	atomic_init(&s->watches, 0);
	for (int k = 0; k < RESOURCE_KIND_COUNT; k++) {
		s->refl[k].s = s;
		s->refl[k].kind = (enum resource_kind)k;
	}
	*out = &s->base;
	return AL_OK;
}

int store_kube_watch_stats(struct store *base, struct store_kube_watch_stats *out)
{
	struct kube_store *s;
	if (!base || base->ops != &kube_ops)
		return al_error_set(AL_ERR_INVALID, "store: not a Kubernetes store");
	s = from_base(base);
	out->relists = atomic_load(&s->relists);
	out->reconnects = atomic_load(&s->reconnects);
	out->watches = atomic_load(&s->watches);
	return AL_OK;
}

uint64_t store_kube_watch_restarts(struct store *base)
{
	struct store_kube_watch_stats st = { 0 };
	if (store_kube_watch_stats(base, &st) < 0)
		return 0;
	return st.relists + st.reconnects;
}

void store_kube_pause_watches(struct store *base, int paused)
{
	struct kube_store *s;
	if (!base || base->ops != &kube_ops)
		return;
	s = from_base(base);
	pthread_mutex_lock(&s->wmu);
	s->paused = paused ? 1 : 0;
	atomic_store(&s->interrupt, s->closing || s->paused);
	pthread_cond_broadcast(&s->wcond);
	pthread_mutex_unlock(&s->wmu);
}
