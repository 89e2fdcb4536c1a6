#include "resource/schema.h"

#include "common/buf.h"
#include "common/error.h"

#include <pthread.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MAX_PATTERNS 64
#define PATH_MAX_LEN 4096
#define SHOW_MAX 64 /* bytes of a bad value quoted back in a message */

struct pattern {
	const char *text; /* borrowed from the schema */
	regex_t re;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;
static char init_msg[AL_ERROR_MSG_MAX];
static json_t *schemas[RESOURCE_KIND_COUNT];
static struct pattern patterns[MAX_PATTERNS];
static int npatterns;

static const char *const known_keywords[] = {
	"type", "properties", "required", "additionalProperties", "items", "enum",
	"minLength", "maxLength", "pattern", "format", "minItems", "maxItems",
	"minProperties", "maxProperties", "minimum", "maximum", "anyOf",
	"x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
	"description", "default", NULL,
};

/* ---- paths and messages ---- */

static void path_truncate(struct buf *p, size_t n)
{
	if (p->ptr && n <= p->len) {
		p->len = n;
		p->ptr[n] = '\0';
	}
}

/* Appends ".key" (or "key" at the top) keeping input keys short. */
static int path_push_key(struct buf *p, const char *key)
{
	size_t n = strlen(key);
	int rc = p->len ? buf_appendc(p, '.') : AL_OK;
	if (rc == AL_OK)
		rc = buf_append(p, key, n > SHOW_MAX ? SHOW_MAX : n);
	if (rc == AL_OK && n > SHOW_MAX)
		rc = buf_appends(p, "...");
	return rc < 0 ? al_error_set(AL_ERR_INVALID, "field path too long") : AL_OK;
}

static int path_push_index(struct buf *p, size_t i)
{
	if (buf_appendf(p, "[%zu]", i) < 0)
		return al_error_set(AL_ERR_INVALID, "field path too long");
	return AL_OK;
}

static const char *path_str(const struct buf *p)
{
	return p->len ? buf_cstr(p) : "(document)";
}

/* A printable, bounded copy of an input string for messages. */
static void show(char out[SHOW_MAX + 4], const char *s)
{
	size_t i;
	for (i = 0; s[i] && i < SHOW_MAX; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i]) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "a mapping";
	case JSON_ARRAY: return "a list";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "unknown";
}

static size_t utf8_length(const char *s, size_t n)
{
	size_t count = 0;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			count++;
	return count;
}

/* Case-insensitive edit distance, for "did you mean" (short names only). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[65];
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t prev = row[0], ca = (unsigned char)a[i - 1];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cb = (unsigned char)b[j - 1], cur = row[j];
			size_t cost = (ca | 0x20) == (cb | 0x20) ? 0 : 1;
			size_t best = prev + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

static const char *suggest(const json_t *props, const char *key)
{
	const char *name, *best = NULL;
	const json_t *unused;
	size_t best_d = 3;
	json_object_foreach((json_t *)props, name, unused) {
		size_t d = edit_distance(key, name);
		if (d < best_d && d < strlen(name)) {
			best_d = d;
			best = name;
		}
	}
	return best;
}

/* ---- formats ---- */

static int digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static int num(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

static int date_prefix_ok(const char *s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d;
	if (!digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2))
		return 0;
	y = num(s, 4);
	m = num(s + 5, 2);
	d = num(s + 8, 2);
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return 0;
	if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 0;
	return 1;
}

int schema_is_date(const char *s)
{
	return strlen(s) == 10 && date_prefix_ok(s);
}

/* RFC 3339: 2026-01-31T12:00:00(.123)?(Z|+01:00) */
int schema_is_date_time(const char *s)
{
	const char *p;
	if (strlen(s) < 20 || !date_prefix_ok(s) || (s[10] != 'T' && s[10] != 't'))
		return 0;
	p = s + 11;
	if (!digits(p, 2) || p[2] != ':' || !digits(p + 3, 2) || p[5] != ':' || !digits(p + 6, 2))
		return 0;
	if (num(p, 2) > 23 || num(p + 3, 2) > 59 || num(p + 6, 2) > 59)
		return 0;
	p += 8;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z')
		return p[1] == '\0';
	if (*p != '+' && *p != '-')
		return 0;
	p++;
	if (!digits(p, 2) || p[2] != ':' || !digits(p + 3, 2) || p[5] != '\0')
		return 0;
	return num(p, 2) <= 23 && num(p + 3, 2) <= 59;
}

/* ---- schema loading ---- */

static regex_t *pattern_find(const char *text)
{
	for (int i = 0; i < npatterns; i++)
		if (!strcmp(patterns[i].text, text))
			return &patterns[i].re;
	return NULL;
}

static int check_node(const json_t *s, struct buf *path, int depth)
{
	const char *key;
	const json_t *v;
	size_t mark = path->len;
	int rc;

	if (!json_is_object(s) || depth > 32)
		return al_error_set(AL_ERR_INTERNAL, "schema %s: not a schema node", path_str(path));
	json_object_foreach((json_t *)s, key, v) {
		int known = 0;
		for (int i = 0; known_keywords[i]; i++)
			known |= !strcmp(key, known_keywords[i]);
		if (!known)
			return al_error_set(AL_ERR_INTERNAL, "schema %s: keyword %s is not supported",
					    path_str(path), key);
	}
	if ((v = json_object_get(s, "pattern"))) {
		const char *text = json_string_value(v);
		if (!text)
			return al_error_set(AL_ERR_INTERNAL, "schema %s: pattern is not a string", path_str(path));
		if (!pattern_find(text)) {
			if (npatterns >= MAX_PATTERNS)
				return al_error_set(AL_ERR_INTERNAL, "schema: too many patterns");
			if (regcomp(&patterns[npatterns].re, text, REG_EXTENDED | REG_NOSUB))
				return al_error_set(AL_ERR_INTERNAL, "schema %s: bad pattern %s",
						    path_str(path), text);
			patterns[npatterns++].text = text;
		}
	}
	if (json_is_string(json_object_get(s, "type")) &&
	    !strcmp(json_string_value(json_object_get(s, "type")), "object") &&
	    !json_object_get(s, "properties") && !json_object_get(s, "additionalProperties") &&
	    !json_is_true(json_object_get(s, "x-kubernetes-preserve-unknown-fields")) &&
	    strcmp(buf_cstr(path), "metadata"))
		return al_error_set(AL_ERR_INTERNAL, "schema %s: object without properties", path_str(path));
	if ((v = json_object_get(s, "properties"))) {
		const json_t *child;
		json_object_foreach((json_t *)v, key, child) {
			if ((rc = path_push_key(path, key)) < 0)
				return rc;
			if ((rc = check_node(child, path, depth + 1)) < 0)
				return rc;
			path_truncate(path, mark);
		}
	}
	if (json_is_object((v = json_object_get(s, "additionalProperties"))) &&
	    (rc = check_node(v, path, depth + 1)) < 0)
		return rc;
	if ((v = json_object_get(s, "items")) && (rc = check_node(v, path, depth + 1)) < 0)
		return rc;
	if ((v = json_object_get(s, "anyOf"))) {
		size_t i;
		const json_t *branch;
		json_array_foreach(v, i, branch) {
			if ((rc = check_node(branch, path, depth + 1)) < 0)
				return rc;
		}
	}
	return AL_OK;
}

static void init_schemas(void)
{
	struct buf path;
	buf_init(&path, PATH_MAX_LEN);
	for (int k = 0; k < RESOURCE_KIND_COUNT; k++) {
		json_t *crd = NULL, *versions;
		if ((init_rc = resource_parse(schema_crd_yaml[k], strlen(schema_crd_yaml[k]), &crd)) < 0) {
			al_error_wrap(init_rc, "embedded CRD of %s", resource_kind_name((enum resource_kind)k));
			break;
		}
		versions = json_object_get(json_object_get(crd, "spec"), "versions");
		schemas[k] = json_object_get(json_object_get(json_array_get(versions, 0), "schema"), "openAPIV3Schema");
		json_incref(schemas[k]);
		if (json_array_size(versions) != 1 || !json_is_object(schemas[k])) {
			json_decref(crd);
			init_rc = al_error_set(AL_ERR_INTERNAL, "embedded CRD of %s: expected one version with an openAPIV3Schema",
					       resource_kind_name((enum resource_kind)k));
			break;
		}
		json_decref(crd);
		if ((init_rc = check_node(schemas[k], &path, 0)) < 0)
			break;
	}
	if (init_rc < 0)
		snprintf(init_msg, sizeof(init_msg), "%s", al_error_message());
	buf_free(&path);
}

int schema_get(enum resource_kind kind, const json_t **out)
{
	if ((int)kind < 0 || kind >= RESOURCE_KIND_COUNT)
		return al_error_set(AL_ERR_INVALID, "unknown resource kind %d", (int)kind);
	pthread_once(&init_once, init_schemas);
	if (init_rc < 0)
		return al_error_set(init_rc, "%s", init_msg);
	*out = schemas[kind];
	return AL_OK;
}

/* ---- validation ---- */

static int validate_node(const json_t *s, const json_t *v, struct buf *path);

static int check_type(const json_t *s, const char *type, const json_t *v, struct buf *path)
{
	int ok;
	const char *want;

	if (!strcmp(type, "object")) {
		ok = json_is_object(v);
		want = "a mapping";
	} else if (!strcmp(type, "array")) {
		ok = json_is_array(v);
		want = "a list";
	} else if (!strcmp(type, "string")) {
		ok = json_is_string(v);
		want = "a string";
	} else if (!strcmp(type, "integer")) {
		/* JSON Schema counts 2.0 as an integer; the range test comes
		 * first so the conversion below is defined */
		ok = json_is_integer(v) ||
		     (json_is_real(v) && json_real_value(v) >= -9.2e18 && json_real_value(v) <= 9.2e18 &&
		      json_real_value(v) == (double)(json_int_t)json_real_value(v));
		want = "an integer";
	} else if (!strcmp(type, "number")) {
		ok = json_is_number(v);
		want = "a number";
	} else if (!strcmp(type, "boolean")) {
		ok = json_is_boolean(v);
		want = "a boolean (true or false)";
	} else {
		return al_error_set(AL_ERR_INTERNAL, "schema %s: unknown type %s", path_str(path), type);
	}
	if (!ok) {
		int quote = !strcmp(type, "string") && (json_is_number(v) || json_is_boolean(v));
		return al_error_set(AL_ERR_INVALID, "%s: must be %s, not %s%s", path_str(path), want,
				    type_name(v), quote ? " (quote it to make it a string)" : "");
	}
	(void)s;
	return AL_OK;
}

static int check_enum(const json_t *e, const json_t *v, struct buf *path)
{
	size_t i;
	const json_t *opt;
	struct buf msg;
	char shown[SHOW_MAX + 4];
	int rc;

	json_array_foreach(e, i, opt) {
		if (json_equal((json_t *)opt, (json_t *)v))
			return AL_OK;
	}
	buf_init(&msg, AL_ERROR_MSG_MAX);
	json_array_foreach(e, i, opt) {
		if (json_is_string(opt))
			buf_appendf(&msg, "%s\"%s\"", i ? ", " : "", json_string_value(opt));
	}
	show(shown, json_is_string(v) ? json_string_value(v) : "");
	rc = al_error_set(AL_ERR_INVALID, "%s: Unsupported value \"%s\": supported values: %s",
			  path_str(path), shown, buf_cstr(&msg));
	buf_free(&msg);
	return rc;
}

static int check_string(const json_t *s, const json_t *v, struct buf *path)
{
	const char *str = json_string_value(v);
	size_t n = json_string_length(v), chars;
	const json_t *k;
	char shown[SHOW_MAX + 4];

	if (memchr(str, '\0', n))
		return al_error_set(AL_ERR_INVALID, "%s: must not contain NUL characters", path_str(path));
	chars = utf8_length(str, n);
	if ((k = json_object_get(s, "maxLength")) && (json_int_t)chars > json_integer_value(k))
		return al_error_set(AL_ERR_INVALID, "%s: Too long: may not be more than %lld characters (it has %zu)",
				    path_str(path), (long long)json_integer_value(k), chars);
	if ((k = json_object_get(s, "minLength")) && (json_int_t)chars < json_integer_value(k)) {
		if (json_integer_value(k) == 1)
			return al_error_set(AL_ERR_INVALID, "%s: must not be empty", path_str(path));
		return al_error_set(AL_ERR_INVALID, "%s: Too short: must be at least %lld characters",
				    path_str(path), (long long)json_integer_value(k));
	}
	show(shown, str);
	if ((k = json_object_get(s, "pattern"))) {
		regex_t *re = pattern_find(json_string_value(k));
		if (!re)
			return al_error_set(AL_ERR_INTERNAL, "schema %s: pattern not compiled", path_str(path));
		if (regexec(re, str, 0, NULL, 0) != 0)
			return al_error_set(AL_ERR_INVALID, "%s: Invalid value \"%s\": must match %s",
					    path_str(path), shown, json_string_value(k));
	}
	if ((k = json_object_get(s, "format"))) {
		const char *f = json_string_value(k);
		if (!strcmp(f, "date") && !schema_is_date(str))
			return al_error_set(AL_ERR_INVALID,
					    "%s: Invalid value \"%s\": must be a date such as 2026-01-31",
					    path_str(path), shown);
		if (!strcmp(f, "date-time") && !schema_is_date_time(str))
			return al_error_set(AL_ERR_INVALID,
					    "%s: Invalid value \"%s\": must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z",
					    path_str(path), shown);
	}
	return AL_OK;
}

static int check_integer(const json_t *s, const json_t *v, struct buf *path)
{
	json_int_t n = json_is_integer(v) ? json_integer_value(v) : (json_int_t)json_real_value(v);
	const json_t *k;
	const char *f;

	if ((k = json_object_get(s, "minimum")) && n < json_integer_value(k))
		return al_error_set(AL_ERR_INVALID, "%s: Invalid value: %lld: must be greater than or equal to %lld",
				    path_str(path), (long long)n, (long long)json_integer_value(k));
	if ((k = json_object_get(s, "maximum")) && n > json_integer_value(k))
		return al_error_set(AL_ERR_INVALID, "%s: Invalid value: %lld: must be less than or equal to %lld",
				    path_str(path), (long long)n, (long long)json_integer_value(k));
	f = json_string_value(json_object_get(s, "format"));
	if (f && !strcmp(f, "int32") && (n < INT32_MIN || n > INT32_MAX))
		return al_error_set(AL_ERR_INVALID, "%s: Invalid value: %lld: out of range for a 32-bit integer",
				    path_str(path), (long long)n);
	return AL_OK;
}

static int check_object(const json_t *s, const json_t *v, struct buf *path)
{
	const json_t *props = json_object_get(s, "properties");
	const json_t *addl = json_object_get(s, "additionalProperties");
	const json_t *req = json_object_get(s, "required"), *k, *child;
	int preserve = json_is_true(json_object_get(s, "x-kubernetes-preserve-unknown-fields"));
	size_t mark = path->len, i;
	const char *key;
	int rc;

	json_array_foreach(req, i, k) {
		if (!json_object_get(v, json_string_value(k))) {
			if ((rc = path_push_key(path, json_string_value(k))) < 0)
				return rc;
			return al_error_set(AL_ERR_INVALID, "%s: Required value", path_str(path));
		}
	}
	if ((k = json_object_get(s, "maxProperties")) &&
	    (json_int_t)json_object_size(v) > json_integer_value(k))
		return al_error_set(AL_ERR_INVALID, "%s: Too many: %zu entries, at most %lld allowed",
				    path_str(path), json_object_size(v), (long long)json_integer_value(k));
	if ((k = json_object_get(s, "minProperties")) &&
	    (json_int_t)json_object_size(v) < json_integer_value(k))
		return al_error_set(AL_ERR_INVALID, "%s: Too few: %zu entries, at least %lld needed",
				    path_str(path), json_object_size(v), (long long)json_integer_value(k));
	if (!props && !addl)
		return AL_OK; /* preserve-unknown (or metadata, checked elsewhere) */
	json_object_foreach((json_t *)v, key, child) {
		const json_t *cs = props ? json_object_get(props, key) : NULL;
		if (!cs && json_is_object(addl))
			cs = addl;
		if ((rc = path_push_key(path, key)) < 0)
			return rc;
		if (!cs) {
			const char *hint;
			if (preserve || json_is_true(addl)) {
				path_truncate(path, mark);
				continue;
			}
			hint = props ? suggest(props, key) : NULL;
			if (hint)
				return al_error_set(AL_ERR_INVALID, "%s: unknown field (did you mean %s?)",
						    path_str(path), hint);
			return al_error_set(AL_ERR_INVALID, "%s: unknown field", path_str(path));
		}
		if ((rc = validate_node(cs, child, path)) < 0)
			return rc;
		path_truncate(path, mark);
	}
	return AL_OK;
}

static int only_required(const json_t *branch)
{
	return json_object_size(branch) == 1 && json_is_array(json_object_get(branch, "required"));
}

static int check_any_of(const json_t *any, const json_t *v, struct buf *path)
{
	size_t i;
	const json_t *branch;
	int all_required = 1, rc;
	struct buf names;

	json_array_foreach(any, i, branch) {
		if (!only_required(branch))
			all_required = 0;
	}
	if (all_required) {
		if (!json_is_object(v))
			return AL_OK; /* the type check reports it */
		json_array_foreach(any, i, branch) {
			size_t j;
			const json_t *k;
			int ok = 1;
			json_array_foreach(json_object_get(branch, "required"), j, k) {
				if (!json_object_get(v, json_string_value(k)))
					ok = 0;
			}
			if (ok)
				return AL_OK;
		}
		buf_init(&names, AL_ERROR_MSG_MAX);
		json_array_foreach(any, i, branch) {
			size_t j;
			const json_t *k;
			json_array_foreach(json_object_get(branch, "required"), j, k) {
				buf_appendf(&names, "%s%s", names.len ? " or " : "", json_string_value(k));
			}
		}
		rc = al_error_set(AL_ERR_INVALID, "%s: must set %s", path_str(path), buf_cstr(&names));
		buf_free(&names);
		return rc;
	}
	buf_init(&names, AL_ERROR_MSG_MAX);
	json_array_foreach(any, i, branch) {
		const char *t = json_string_value(json_object_get(branch, "type"));
		if (validate_node(branch, v, path) == AL_OK) {
			buf_free(&names);
			return AL_OK;
		}
		buf_appendf(&names, "%s%s", names.len ? " or " : "", t ? t : "another form");
	}
	rc = al_error_set(AL_ERR_INVALID, "%s: must be %s, not %s", path_str(path), buf_cstr(&names),
			  type_name(v));
	buf_free(&names);
	return rc;
}

static int validate_node(const json_t *s, const json_t *v, struct buf *path)
{
	const char *type = json_string_value(json_object_get(s, "type"));
	const json_t *k;
	int rc;

	if (type && (rc = check_type(s, type, v, path)) < 0)
		return rc;
	if ((k = json_object_get(s, "anyOf")) && (rc = check_any_of(k, v, path)) < 0)
		return rc;
	if ((k = json_object_get(s, "enum")) && (rc = check_enum(k, v, path)) < 0)
		return rc;
	if (json_is_string(v))
		return check_string(s, v, path);
	if (json_is_number(v) && type && !strcmp(type, "integer"))
		return check_integer(s, v, path);
	if (json_is_object(v))
		return check_object(s, v, path);
	if (json_is_array(v)) {
		size_t mark = path->len, i;
		const json_t *item, *items = json_object_get(s, "items");
		if ((k = json_object_get(s, "maxItems")) &&
		    (json_int_t)json_array_size(v) > json_integer_value(k))
			return al_error_set(AL_ERR_INVALID, "%s: Too many: %zu items, at most %lld allowed",
					    path_str(path), json_array_size(v), (long long)json_integer_value(k));
		if ((k = json_object_get(s, "minItems")) &&
		    (json_int_t)json_array_size(v) < json_integer_value(k))
			return al_error_set(AL_ERR_INVALID, "%s: Too few: %zu items, at least %lld needed",
					    path_str(path), json_array_size(v), (long long)json_integer_value(k));
		if (!items)
			return AL_OK;
		json_array_foreach(v, i, item) {
			if ((rc = path_push_index(path, i)) < 0)
				return rc;
			if ((rc = validate_node(items, item, path)) < 0)
				return rc;
			path_truncate(path, mark);
		}
	}
	return AL_OK;
}

int schema_validate(const json_t *schema, const json_t *value, const char *path)
{
	struct buf p;
	int rc;

	pthread_once(&init_once, init_schemas);
	if (init_rc < 0)
		return al_error_set(init_rc, "%s", init_msg);
	if (!schema || !value)
		return al_error_set(AL_ERR_INVALID, "%s: Required value", path && *path ? path : "(document)");
	buf_init(&p, PATH_MAX_LEN);
	if (path && *path && buf_appends(&p, path) < 0) {
		buf_free(&p);
		return al_error_set(AL_ERR_INVALID, "field path too long");
	}
	rc = validate_node(schema, value, &p);
	buf_free(&p);
	return rc;
}
