#include "rocrate/rocrate.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "rocrate/manifest.h"
#include "runner/csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *ext;
	const char *type;
} media_types[] = {
	{ "csv", "text/csv" },
	{ "tsv", "text/tab-separated-values" },
	{ "txt", "text/plain" },
	{ "md", "text/markdown" },
	{ "json", "application/json" },
	{ "jsonld", "application/ld+json" },
	{ "ndjson", "application/x-ndjson" },
	{ "jsonl", "application/jsonl" },
	{ "xml", "application/xml" },
	{ "yaml", "application/yaml" },
	{ "yml", "application/yaml" },
	{ "html", "text/html" },
	{ "pdf", "application/pdf" },
	{ "parquet", "application/vnd.apache.parquet" },
	{ "zip", "application/zip" },
	{ "gz", "application/gzip" },
	{ "tar", "application/x-tar" },
	{ "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
	{ "png", "image/png" },
	{ "jpg", "image/jpeg" },
	{ "jpeg", "image/jpeg" },
	{ "sqlite", "application/vnd.sqlite3" },
	{ "db", "application/vnd.sqlite3" },
};

const char *rocrate_media_type(const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *dot = strrchr(slash ? slash + 1 : path, '.');
	if (dot && dot[1])
		for (size_t i = 0; i < sizeof(media_types) / sizeof(media_types[0]); i++)
			if (!strcasecmp(dot + 1, media_types[i].ext))
				return media_types[i].type;
	return "application/octet-stream";
}

static int is_csv(const char *path)
{
	return !strcmp(rocrate_media_type(path), "text/csv");
}

/* RO-Crate wants @id of a data entity as a relative URI: percent-encode all
 * but unreserved characters and '/'. */
static int uri_path(struct buf *b, const char *path)
{
	static const char hexd[] = "0123456789ABCDEF";
	int rc = AL_OK;
	for (const unsigned char *p = (const unsigned char *)path; !rc && *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '.' || *p == '_' || *p == '~' || *p == '/') {
			rc = buf_appendc(b, (char)*p);
		} else {
			char e[3] = { '%', hexd[*p >> 4], hexd[*p & 15] };
			rc = buf_append(b, e, 3);
		}
	}
	return rc;
}

static json_t *ref(const char *id)
{
	return json_pack("{s:s}", "@id", id);
}

/* Appends a new entity to the graph; steals `e`. NULL-safe for OOM. */
static int graph_add(json_t *graph, json_t *e)
{
	if (!e || json_array_append_new(graph, e))
		return al_error_set(AL_ERR_NOMEM, "out of memory building ro-crate metadata");
	return AL_OK;
}

static int set_new(json_t *obj, const char *key, json_t *v)
{
	if (!v || json_object_set_new(obj, key, v))
		return al_error_set(AL_ERR_NOMEM, "out of memory building ro-crate metadata");
	return AL_OK;
}

static const char *str_at(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s && *s ? s : NULL;
}

/* Free text from YAML block scalars ends in "\n": trim trailing whitespace. */
static json_t *trimmed(const char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r' || s[n - 1] == '\t'))
		n--;
	return json_stringn(s, n);
}

static int file_entity(const char *dir, json_t *graph, json_t *parts, const json_t *file,
		       const json_t *extras)
{
	const char *path = json_string_value(json_object_get(file, "path"));
	const char *slash = strrchr(path, '/');
	char size[24];
	json_t *e = NULL, *x, *columns = NULL;
	struct buf id;
	int rc;

	buf_init(&id, 0);
	if ((rc = uri_path(&id, path)))
		goto out;
	snprintf(size, sizeof(size), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(file, "size")));
	e = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O}", "@id", id.ptr, "@type", "File", "name",
		      slash ? slash + 1 : path, "encodingFormat", rocrate_media_type(path), "contentSize", size,
		      "sha256", json_object_get(file, "sha256"));
	if (!e) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory building ro-crate metadata");
		goto out;
	}
	x = extras ? json_object_get(extras, path) : NULL;
	if (x && json_object_get(x, "rowCount")) {
		json_t *rows = json_object_get(x, "rowCount"), *cols = json_object_get(x, "columns");
		json_t *types = json_object_get(x, "columnTypes");
		if (json_is_integer(rows) && (rc = set_new(e, "airlock:rowCount", json_copy(rows))))
			goto out;
		if (json_is_array(cols) && (rc = set_new(e, "airlock:columns", json_deep_copy(cols))))
			goto out;
		if (json_is_array(types) && (rc = set_new(e, "airlock:columnTypes", json_deep_copy(types))))
			goto out;
	} else if (is_csv(path)) {
		uint64_t records = 0;
		char *full = util_path_join(dir, path);
		if (!full) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		rc = csv_count_file(full, &records, &columns);
		free(full);
		if (rc)
			goto out;
		if ((rc = set_new(e, "airlock:rowCount", json_integer(records ? (json_int_t)records - 1 : 0))))
			goto out;
		if (columns && (rc = set_new(e, "airlock:columns", columns))) {
			columns = NULL;
			goto out;
		}
		columns = NULL;
	}
	if ((rc = graph_add(parts, ref(id.ptr))))
		goto out;
	rc = graph_add(graph, e);
	e = NULL;
out:
	json_decref(e);
	json_decref(columns);
	buf_free(&id);
	return rc;
}

static const char *dir_basename(const char *dir, struct buf *b)
{
	size_t n = strlen(dir);
	const char *start;
	while (n > 1 && dir[n - 1] == '/')
		n--;
	start = dir + n;
	while (start > dir && start[-1] != '/')
		start--;
	if (buf_append(b, start, (size_t)(dir + n - start)) || !b->len)
		return "dataset";
	return b->ptr;
}

static int add_action(json_t *graph, json_t *root, const json_t *parts, const struct rocrate_action *a)
{
	struct buf id;
	json_t *e = NULL, *src = NULL;
	int rc;

	buf_init(&id, 0);
	if ((rc = buf_appendf(&id, "#collection-%s", a->start_time ? a->start_time : "unknown")))
		goto out;
	if ((rc = set_new(root, "mentions", json_pack("[o]", ref(id.ptr)))))
		goto out;
	e = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:s}", "@id", id.ptr, "@type", "CreateAction", "name",
		      "Collection of the source data by the airlock", "instrument", ref("#runner"), "agent",
		      ref("#airlock"), "object", ref("#source"), "result", json_deep_copy(parts), "actionStatus",
		      a->succeeded ? "CompletedActionStatus" : "FailedActionStatus");
	if (!e) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory building ro-crate metadata");
		goto out;
	}
	if (a->start_time && (rc = set_new(e, "startTime", json_string(a->start_time))))
		goto out;
	if (a->end_time && (rc = set_new(e, "endTime", json_string(a->end_time))))
		goto out;
	if (!a->succeeded && a->error && (rc = set_new(e, "error", json_string(a->error))))
		goto out;
	if ((rc = graph_add(graph, e)))
		goto out_noe;
	rc = graph_add(graph, json_pack("{s:s, s:s, s:s, s:s}", "@id", "#runner", "@type", "SoftwareApplication",
					"name", a->runner_name ? a->runner_name : "airlock-runner", "version",
					a->runner_version ? a->runner_version : "unknown"));
	if (rc)
		goto out_noe;
	rc = graph_add(graph, json_pack("{s:s, s:s, s:s, s:s}", "@id", "#airlock", "@type", "SoftwareApplication",
					"name", "Airlock", "description",
					"The secure data environment's airlock, acting as the system"));
	if (rc)
		goto out_noe;
	src = json_pack("{s:s, s:s, s:s}", "@id", "#source", "@type", "CreativeWork", "name",
			a->source_name ? a->source_name : "source");
	if (!src) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory building ro-crate metadata");
		goto out_noe;
	}
	if (a->source_description && (rc = set_new(src, "description", json_string(a->source_description))))
		goto out_src;
	if (a->source_extra && json_is_object(a->source_extra) &&
	    json_object_update(src, (json_t *)a->source_extra) < 0) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory building ro-crate metadata");
		goto out_src;
	}
	rc = graph_add(graph, src);
	src = NULL;
out_src:
	json_decref(src);
out_noe:
	e = NULL;
out:
	json_decref(e);
	buf_free(&id);
	return rc;
}

int rocrate_build(const char *dir, const json_t *datasource, const struct rocrate_action *action,
		  const json_t *file_extras, const char *date_published, json_t **out)
{
	const json_t *spec = NULL;
	json_t *manifest = NULL, *crate = NULL, *graph, *root, *parts, *files, *f, *publisher, *project;
	const char *name, *desc, *license;
	char now[UTIL_TIME_LEN];
	struct buf base, pid;
	size_t i;
	int rc;

	*out = NULL;
	buf_init(&base, 4096);
	buf_init(&pid, 4096);
	if (datasource) {
		spec = json_object_get(datasource, "spec");
		if (!json_is_object(spec))
			spec = datasource;
	}
	if ((rc = manifest_build_known(dir, file_extras, &manifest)))
		goto out;
	if (!date_published) {
		util_now_rfc3339_seconds(now);
		date_published = now;
	}
	name = spec ? str_at(spec, "displayName") : NULL;
	desc = spec ? str_at(spec, "description") : NULL;
	license = spec ? str_at(spec, "license") : NULL;
	crate = json_pack("{s:[s,{s:s}], s:[]}", "@context", ROCRATE_CONTEXT, "airlock", ROCRATE_AIRLOCK_TERMS,
			  "@graph");
	if (!crate) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory building ro-crate metadata");
		goto out;
	}
	graph = json_object_get(crate, "@graph");
	if ((rc = graph_add(graph, json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "@id", ROCRATE_METADATA_FILE, "@type",
					     "CreativeWork", "conformsTo", "@id", ROCRATE_CONFORMS_TO, "about",
					     "@id", "./"))))
		goto out;
	root = json_pack("{s:s, s:s, s:o, s:o, s:s, s:[]}", "@id", "./", "@type", "Dataset", "name",
			 name ? trimmed(name) : json_string(dir_basename(dir, &base)), "description",
			 desc ? trimmed(desc) : json_string("Files held by the airlock"), "datePublished",
			 date_published, "hasPart");
	if ((rc = graph_add(graph, root)))
		goto out;
	parts = json_object_get(root, "hasPart");
	files = json_object_get(manifest, "files");
	json_array_foreach(files, i, f) {
		const char *path = json_string_value(json_object_get(f, "path"));
		if (!strcmp(path, ROCRATE_METADATA_FILE))
			continue;
		if ((rc = file_entity(dir, graph, parts, f, file_extras)))
			goto out;
	}
	if (license) {
		if ((rc = set_new(root, "license", ref("#license"))) ||
		    (rc = graph_add(graph, json_pack("{s:s, s:s, s:s, s:o}", "@id", "#license", "@type",
						     "CreativeWork", "name", "License", "description",
						     trimmed(license)))))
			goto out;
	}
	publisher = spec ? json_object_get(spec, "publisher") : NULL;
	if (json_is_object(publisher) && str_at(publisher, "organisation")) {
		json_t *contact = json_object_get(publisher, "contact");
		json_t *org = json_pack("{s:s, s:s, s:s}", "@id", "#publisher", "@type", "Organization", "name",
					str_at(publisher, "organisation"));
		if ((rc = set_new(root, "publisher", ref("#publisher"))))
			goto out;
		if (org && json_is_object(contact) && str_at(contact, "name") &&
		    (rc = set_new(org, "contactPoint", ref("#contact")))) {
			json_decref(org);
			goto out;
		}
		if ((rc = graph_add(graph, org)))
			goto out;
		if (json_is_object(contact) && str_at(contact, "name")) {
			json_t *cp = json_pack("{s:s, s:s, s:s}", "@id", "#contact", "@type", "ContactPoint", "name",
					       str_at(contact, "name"));
			if (cp && str_at(contact, "role") &&
			    (rc = set_new(cp, "contactType", json_string(str_at(contact, "role"))))) {
				json_decref(cp);
				goto out;
			}
			if ((rc = graph_add(graph, cp)))
				goto out;
		}
	}
	project = spec ? json_object_get(spec, "project") : NULL;
	if (json_is_object(project) && str_at(project, "id")) {
		const char *id = str_at(project, "id");
		if ((rc = buf_appendf(&pid, "#project-%s", id)) ||
		    (rc = set_new(root, "sourceOrganization", ref(pid.ptr))) ||
		    (rc = graph_add(graph, json_pack("{s:s, s:s, s:s, s:s}", "@id", pid.ptr, "@type", "Project",
						     "name", id, "identifier", id))))
			goto out;
		/* A nicer name when the seed gives one. */
		if (str_at(project, "name"))
			json_object_set_new(json_array_get(graph, json_array_size(graph) - 1), "name",
					    json_string(str_at(project, "name")));
	}
	if (action && (rc = add_action(graph, root, parts, action)))
		goto out;
	*out = crate;
	crate = NULL;
out:
	json_decref(crate);
	json_decref(manifest);
	buf_free(&base);
	buf_free(&pid);
	return rc;
}

int rocrate_write(const char *dir, const json_t *datasource, const struct rocrate_action *action,
		  const json_t *file_extras)
{
	json_t *crate = NULL;
	char *text = NULL, *path = NULL;
	int rc;

	if ((rc = rocrate_build(dir, datasource, action, file_extras, NULL, &crate)))
		return rc;
	text = json_dumps(crate, JSON_INDENT(2) | JSON_SORT_KEYS);
	path = util_path_join(dir, ROCRATE_METADATA_FILE);
	if (!text || !path) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory writing ro-crate metadata");
		goto out;
	}
	{
		size_t n = strlen(text);
		char *t2 = realloc(text, n + 2);
		if (!t2) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory writing ro-crate metadata");
			goto out;
		}
		text = t2;
		text[n] = '\n';
		text[n + 1] = '\0';
		rc = util_write_file_atomic(path, text, n + 1, 0644);
	}
out:
	free(text);
	free(path);
	json_decref(crate);
	return rc;
}
