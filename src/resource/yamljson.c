#include "resource/yamljson.h"

#include "common/error.h"
#include "resource/resource.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define TAG_PREFIX "tag:yaml.org,2002:"

struct frame {
	json_t *container; /* borrowed: owned by its parent or by the document */
	json_t *key;       /* a mapping's key waiting for its value (owned) */
};

struct loader {
	struct frame stack[YAMLJSON_MAX_DEPTH];
	int depth;
	json_t *root; /* current document (owned) */
};

static int error_at(int code, const yaml_mark_t *m, const char *fmt, const char *arg)
{
	return al_error_set(code, "line %zu, column %zu: %s%s", m->line + 1, m->column + 1, fmt,
			    arg ? arg : "");
}

static int all_digits(const char *s, const char *digits)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!strchr(digits, *s))
			return 0;
	return 1;
}

/* YAML 1.2 core float: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static int is_core_float(const char *s)
{
	int mant = 0;
	if (*s == '-' || *s == '+')
		s++;
	if (*s == '.') {
		s++;
		if (!(*s >= '0' && *s <= '9'))
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
		mant = 1;
	} else {
		if (!(*s >= '0' && *s <= '9'))
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
		if (*s == '.') {
			s++;
			while (*s >= '0' && *s <= '9')
				s++;
		}
		mant = 1;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return mant && *s == '\0';
}

enum scalar_kind { SK_ANY, SK_STR, SK_NULL, SK_BOOL, SK_INT, SK_FLOAT };

/* Resolves a plain scalar by the core schema. Returns a new value, or NULL
 * with *why set when it cannot be represented (or on OOM, *why NULL). */
static json_t *resolve_plain(const char *s, size_t len, enum scalar_kind *kind, const char **why)
{
	*why = NULL;
	if (len == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	    !strcmp(s, "NULL")) {
		*kind = SK_NULL;
		return json_null();
	}
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
		*kind = SK_BOOL;
		return json_true();
	}
	if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
		*kind = SK_BOOL;
		return json_false();
	}
	{
		const char *d = s;
		int base = 10;
		if (*d == '-' || *d == '+')
			d++;
		if (all_digits(d, "0123456789")) {
			base = 10;
			d = s;
		} else if (!strncmp(s, "0o", 2) && all_digits(s + 2, "01234567")) {
			base = 8;
			d = s + 2;
		} else if (!strncmp(s, "0x", 2) && all_digits(s + 2, "0123456789abcdefABCDEF")) {
			base = 16;
			d = s + 2;
		} else {
			base = 0;
		}
		if (base) {
			char *end;
			long long v;
			errno = 0;
			v = strtoll(d, &end, base);
			*kind = SK_INT;
			if (errno == ERANGE || *end) {
				*why = "integer out of range (at most 64 bits); quote it to make it a string";
				return NULL;
			}
			return json_integer((json_int_t)v);
		}
	}
	if (is_core_float(s)) {
		char *end;
		double v;
		errno = 0;
		v = strtod(s, &end);
		*kind = SK_FLOAT;
		if (*end || !isfinite(v)) {
			*why = "number out of range; quote it to make it a string";
			return NULL;
		}
		return json_real(v);
	}
	{
		const char *t = s;
		if (*t == '-' || *t == '+')
			t++;
		if (!strcmp(t, ".inf") || !strcmp(t, ".Inf") || !strcmp(t, ".INF") ||
		    !strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) {
			*kind = SK_FLOAT;
			*why = "infinity and NaN cannot be represented in JSON; quote it to make it a string";
			return NULL;
		}
	}
	*kind = SK_STR;
	return json_stringn(s, len);
}

static int scalar_value(const yaml_event_t *ev, json_t **out)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;
	enum scalar_kind want = SK_ANY, got = SK_STR;
	const char *why = NULL;
	json_t *v;

	if (memchr(s, '\0', len))
		return error_at(AL_ERR_INVALID, &ev->start_mark, "NUL characters are not allowed", NULL);
	if (tag && strcmp(tag, "!")) {
		if (!strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX))) {
			const char *t = tag + strlen(TAG_PREFIX);
			if (!strcmp(t, "str"))
				want = SK_STR;
			else if (!strcmp(t, "null"))
				want = SK_NULL;
			else if (!strcmp(t, "bool"))
				want = SK_BOOL;
			else if (!strcmp(t, "int"))
				want = SK_INT;
			else if (!strcmp(t, "float"))
				want = SK_FLOAT;
		}
		if (want == SK_ANY)
			return error_at(AL_ERR_INVALID, &ev->start_mark, "unsupported tag ", tag);
	}
	if (want == SK_STR || (want == SK_ANY && ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)) {
		v = json_stringn(s, len);
		if (!v)
			return error_at(AL_ERR_INVALID, &ev->start_mark, "text is not valid UTF-8", NULL);
		*out = v;
		return AL_OK;
	}
	v = resolve_plain(s, len, &got, &why);
	if (!v) {
		if (why)
			return error_at(AL_ERR_INVALID, &ev->start_mark, why, NULL);
		return error_at(AL_ERR_INVALID, &ev->start_mark, "text is not valid UTF-8", NULL);
	}
	if (want != SK_ANY && want != got) {
		json_decref(v);
		return error_at(AL_ERR_INVALID, &ev->start_mark, "value does not match its tag ", tag);
	}
	*out = v;
	return AL_OK;
}

/* Attaches a new value (stolen) to the current container or as the root. */
static int attach(struct loader *ld, json_t *v, const yaml_event_t *ev)
{
	struct frame *f;
	int rc;

	if (ld->depth == 0) {
		ld->root = v;
		return AL_OK;
	}
	f = &ld->stack[ld->depth - 1];
	if (json_is_array(f->container)) {
		if (json_array_append_new(f->container, v) < 0)
			return al_error_set(AL_ERR_NOMEM, "out of memory parsing YAML");
		return AL_OK;
	}
	if (!f->key) {
		if (!json_is_string(v)) {
			json_decref(v);
			return error_at(AL_ERR_INVALID, &ev->start_mark,
					"mapping keys must be strings (quote the key)", NULL);
		}
		if (json_object_get(f->container, json_string_value(v))) {
			rc = error_at(AL_ERR_INVALID, &ev->start_mark, "duplicate key ",
				      json_string_value(v));
			json_decref(v);
			return rc;
		}
		f->key = v;
		return AL_OK;
	}
	rc = json_object_set_new(f->container, json_string_value(f->key), v);
	json_decref(f->key);
	f->key = NULL;
	if (rc < 0)
		return al_error_set(AL_ERR_NOMEM, "out of memory parsing YAML");
	return AL_OK;
}

static int collection_start(struct loader *ld, const yaml_event_t *ev, int is_map)
{
	const char *tag = (const char *)(is_map ? ev->data.mapping_start.tag
						 : ev->data.sequence_start.tag);
	const char *want = is_map ? TAG_PREFIX "map" : TAG_PREFIX "seq";
	json_t *c;
	int rc;

	if ((is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor))
		return error_at(AL_ERR_INVALID, &ev->start_mark, "anchors (&name) are not allowed", NULL);
	if (tag && strcmp(tag, "!") && strcmp(tag, want))
		return error_at(AL_ERR_INVALID, &ev->start_mark, "unsupported tag ", tag);
	if (ld->depth > 0 && json_is_object(ld->stack[ld->depth - 1].container) &&
	    !ld->stack[ld->depth - 1].key)
		return error_at(AL_ERR_INVALID, &ev->start_mark,
				"mapping keys must be strings, not mappings or sequences", NULL);
	if (ld->depth >= YAMLJSON_MAX_DEPTH)
		return error_at(AL_ERR_INVALID, &ev->start_mark,
				"nested too deeply (more than 64 levels)", NULL);
	c = is_map ? json_object() : json_array();
	if (!c)
		return al_error_set(AL_ERR_NOMEM, "out of memory parsing YAML");
	if ((rc = attach(ld, c, ev)) < 0)
		return rc;
	ld->stack[ld->depth].container = c;
	ld->stack[ld->depth].key = NULL;
	ld->depth++;
	return AL_OK;
}

static void loader_reset(struct loader *ld)
{
	for (int i = 0; i < ld->depth; i++) {
		json_decref(ld->stack[i].key);
		ld->stack[i].key = NULL;
	}
	ld->depth = 0;
	json_decref(ld->root);
	ld->root = NULL;
}

int yamljson_load(const char *data, size_t len, json_t **out)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	struct loader ld;
	json_t *docs;
	int rc = AL_OK, done = 0;

	if (len > RESOURCE_MAX_DOCUMENT)
		return al_error_set(AL_ERR_TOO_LARGE, "document is %zu bytes, larger than the %u allowed",
				    len, RESOURCE_MAX_DOCUMENT);
	if (!yaml_parser_initialize(&parser))
		return al_error_set(AL_ERR_NOMEM, "out of memory starting the YAML parser");
	if (!(docs = json_array())) {
		yaml_parser_delete(&parser);
		return al_error_set(AL_ERR_NOMEM, "out of memory parsing YAML");
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)(data ? data : ""), len);
	memset(&ld, 0, sizeof(ld));

	while (!done) {
		json_t *v = NULL;

		if (!yaml_parser_parse(&parser, &ev)) {
			if (parser.error == YAML_MEMORY_ERROR)
				rc = al_error_set(AL_ERR_NOMEM, "out of memory parsing YAML");
			else if (parser.context)
				rc = al_error_set(AL_ERR_INVALID, "line %zu, column %zu: %s %s",
						  parser.problem_mark.line + 1,
						  parser.problem_mark.column + 1,
						  parser.problem ? parser.problem : "syntax error",
						  parser.context);
			else
				rc = al_error_set(AL_ERR_INVALID, "line %zu, column %zu: %s",
						  parser.problem_mark.line + 1,
						  parser.problem_mark.column + 1,
						  parser.problem ? parser.problem : "syntax error");
			goto out;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		case YAML_DOCUMENT_START_EVENT:
			loader_reset(&ld);
			break;
		case YAML_DOCUMENT_END_EVENT:
			v = ld.root ? ld.root : json_null();
			ld.root = NULL;
			if (json_array_append_new(docs, v) < 0)
				rc = al_error_set(AL_ERR_NOMEM, "out of memory parsing YAML");
			break;
		case YAML_ALIAS_EVENT:
			rc = error_at(AL_ERR_INVALID, &ev.start_mark,
				      "aliases (*name) are not allowed", NULL);
			break;
		case YAML_SCALAR_EVENT:
			if (ev.data.scalar.anchor) {
				rc = error_at(AL_ERR_INVALID, &ev.start_mark,
					      "anchors (&name) are not allowed", NULL);
				break;
			}
			if ((rc = scalar_value(&ev, &v)) < 0)
				break;
			rc = attach(&ld, v, &ev);
			break;
		case YAML_SEQUENCE_START_EVENT:
			rc = collection_start(&ld, &ev, 0);
			break;
		case YAML_MAPPING_START_EVENT:
			rc = collection_start(&ld, &ev, 1);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			if (ld.depth > 0)
				ld.depth--;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (rc < 0)
			goto out;
	}
	*out = docs;
	docs = NULL;
out:
	loader_reset(&ld);
	json_decref(docs);
	yaml_parser_delete(&parser);
	return rc;
}
