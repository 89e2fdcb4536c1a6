#include "runner/runner.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "resource/resource.h"
#include "rocrate/rocrate.h"
#include "runner/csv.h"
#include "runner/source.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef AIRLOCK_VERSION
#define AIRLOCK_VERSION "dev"
#endif


/* One spec.objects[] entry, resolved. */
struct task {
	const char *table;
	const char *connection;
	size_t source; /* index into job.sources */
};

/* One opened connection (each gives one snapshot for all its tables). */
struct conn {
	const char *name;
	const char *type;
	const json_t *spec;           /* its spec.connections[] entry */
	const struct source_ops *ops;
	struct source *src;           /* open, or NULL */
	json_t *description;          /* from ops->describe, secret-free */
};

struct job {
	struct task *tasks;
	size_t ntasks;
	struct conn *sources;
	size_t nsources;
};

int runner_load_datasource(const char *path, json_t **out)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if ((rc = util_read_file(path, RESOURCE_MAX_DOCUMENT, &text, &len)))
		return al_error_wrap(rc, "datasource file");
	rc = resource_parse(text, len, out);
	free(text);
	if (rc)
		return al_error_wrap(rc, "datasource file %s", path);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return al_error_set(AL_ERR_INVALID, "datasource file %s: expected an AnalyticsWorkspaceDataSource "
						    "object", path);
	}
	return AL_OK;
}

int runner_load_credentials(const char *path, json_t **out)
{
	struct stat st;
	struct buf b;
	char chunk[4096];
	json_error_t jerr;
	const char *key;
	json_t *v, *obj = NULL;
	ssize_t n;
	int fd, rc = AL_OK;

	*out = NULL;
	/* Kubernetes mounts Secret keys as symlinks into ..data/: follow them,
	 * then judge the file actually opened. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "credentials file %s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return al_error_set(AL_ERR_INVALID, "credentials file %s is not a regular file", path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return al_error_set(AL_ERR_FORBIDDEN, "credentials file %s has mode %04o; it must not be readable "
						      "or writable by group or others (chmod 600 %s)",
				    path, (unsigned)(st.st_mode & 07777), path);
	}
	buf_init(&b, RUNNER_MAX_CREDENTIALS_FILE);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = al_error_set(AL_ERR_IO, "credentials file %s: cannot read: %s", path, strerror(errno));
			break;
		}
		if ((rc = buf_append(&b, chunk, (size_t)n))) {
			al_error_wrap(rc, "credentials file %s", path);
			break;
		}
	}
	close(fd);
	sodium_memzero(chunk, sizeof(chunk));
	if (!rc) {
		obj = json_loadb(b.ptr ? b.ptr : "", b.len, JSON_REJECT_DUPLICATES, &jerr);
		/* jerr.text may quote the file's content: never show it. */
		if (!obj || !json_is_object(obj))
			rc = al_error_set(AL_ERR_INVALID, "credentials file %s: must be a JSON object of key -> "
							  "string (line %d)", path, obj ? 1 : jerr.line);
	}
	if (b.ptr)
		sodium_memzero(b.ptr, b.cap);
	buf_free(&b);
	if (!rc) {
		json_object_foreach(obj, key, v) {
			if (!json_is_string(v)) {
				rc = al_error_set(AL_ERR_INVALID, "credentials file %s: value of '%s' must be a string",
						  path, key);
				break;
			}
		}
	}
	if (rc) {
		runner_credentials_free(obj);
		return rc;
	}
	*out = obj;
	return AL_OK;
}

void runner_credentials_free(json_t *creds)
{
	const char *key;
	json_t *v;

	if (!creds)
		return;
	json_object_foreach(creds, key, v) {
		if (json_is_string(v))
			sodium_memzero((char *)json_string_value(v), json_string_length(v));
	}
	json_decref(creds);
}

static void job_free(struct job *j)
{
	for (size_t i = 0; i < j->nsources; i++) {
		if (j->sources[i].src)
			j->sources[i].ops->close(j->sources[i].src);
		json_decref(j->sources[i].description);
	}
	free(j->sources);
	free(j->tasks);
}

/* The last path segment of a file source's object (its output file). */
static const char *file_part(const char *name)
{
	const char *slash = strrchr(name, '/');
	return slash ? slash + 1 : name;
}

/* A table name becomes a file name: keep it to one harmless path part. A
 * file source's object is a relative path whose last segment names the
 * file: no empty, "." or ".." segment, not absolute. */
static int check_table_name(size_t i, const char *name, int is_file)
{
	size_t len = strlen(name);
	if (!len)
		return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.name: must not be empty", i);
	if (len > RUNNER_MAX_TABLE_NAME)
		return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.name: longer than %d bytes", i,
				    RUNNER_MAX_TABLE_NAME);
	if (is_file) {
		for (const char *seg = name; seg;) {
			const char *end = strchr(seg, '/');
			size_t n = end ? (size_t)(end - seg) : strlen(seg);
			if (!n || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
				return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.name '%s': a file path "
								    "relative to the connection's url, without empty, "
								    "'.' or '..' segments", i, name);
			seg = end ? end + 1 : NULL;
		}
		if (file_part(name)[0] == '.')
			return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.name '%s': the file name must "
							    "not start with '.'", i, name);
	} else if (name[0] == '.' || strchr(name, '/'))
		return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.name '%s': must not start with '.' "
						    "or contain '/' (it names the output file)", i, name);
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.name: contains a control "
							    "character", i);
	if (csv_utf8_valid_prefix(name, len) != len)
		return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.name: not valid UTF-8", i);
	return AL_OK;
}

static int plan(const json_t *spec, struct job *j)
{
	json_t *conns = json_object_get(spec, "connections");
	json_t *objects = json_object_get(spec, "objects");
	size_t i, k;

	if (!json_is_array(objects) || !json_array_size(objects))
		return al_error_set(AL_ERR_INVALID, "spec.objects: the datasource lists no tables to collect");
	if (!json_is_array(conns) || !json_array_size(conns))
		return al_error_set(AL_ERR_INVALID, "spec.connections: the datasource lists no connections");
	j->tasks = calloc(json_array_size(objects), sizeof(*j->tasks));
	j->sources = calloc(json_array_size(conns), sizeof(*j->sources));
	if (!j->tasks || !j->sources)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	for (i = 0; i < json_array_size(objects); i++) {
		json_t *table = json_object_get(json_array_get(objects, i), "table");
		const char *name = json_string_value(json_object_get(table, "name"));
		const char *conn = json_string_value(json_object_get(table, "connection"));
		json_t *c = NULL;
		size_t ci;
		int rc;

		if (!json_is_object(table))
			return al_error_set(AL_ERR_INVALID, "spec.objects[%zu]: needs table{name, connection} "
							    "(only tables are supported)", i);
		if (!name)
			return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.name: Required value", i);
		if (!conn)
			return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.connection: Required value", i);
		for (ci = 0; ci < json_array_size(conns); ci++) {
			const char *cn = json_string_value(json_object_get(json_array_get(conns, ci), "name"));
			if (cn && !strcmp(cn, conn)) {
				c = json_array_get(conns, ci);
				break;
			}
		}
		if (!c)
			return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.connection: no connection named "
							    "'%s' in spec.connections", i, conn);
		{
			const char *type = json_string_value(json_object_get(c, "type"));
			const struct source_ops *ops = source_find(type);
			if (!type)
				return al_error_set(AL_ERR_INVALID, "spec.connections[%zu].type: Required value", ci);
			if (!ops)
				return al_error_set(AL_ERR_INVALID, "spec.connections[%zu] '%s': connection type '%s' is "
								    "not supported by " RUNNER_NAME " (supported: %s)",
						    ci, conn, type, source_types());
			for (k = 0; k < j->nsources; k++)
				if (!strcmp(j->sources[k].name, conn))
					break;
			if (k == j->nsources) {
				j->sources[k].name = conn;
				j->sources[k].type = type;
				j->sources[k].spec = c;
				j->sources[k].ops = ops;
				j->nsources++;
			}
		}
		{
			int is_file = j->sources[k].ops->fetch_file != NULL;
			if ((rc = check_table_name(i, name, is_file)))
				return rc;
			for (size_t t = 0; t < j->ntasks; t++) {
				int other_file = j->sources[j->tasks[t].source].ops->fetch_file != NULL;
				const char *a = is_file ? file_part(name) : name;
				const char *b = other_file ? file_part(j->tasks[t].table) : j->tasks[t].table;
				if (!strcasecmp(a, b))
					return al_error_set(AL_ERR_INVALID, "spec.objects[%zu].table.name '%s': collected "
									    "twice (objects[%zu]); names must be unique as "
									    "they name the output files", i, name, t);
			}
		}
		j->tasks[j->ntasks].table = name;
		j->tasks[j->ntasks].connection = conn;
		j->tasks[j->ntasks].source = k;
		j->ntasks++;
	}
	return AL_OK;
}

/* The value of credentials[key] for a connection's userKey / passwordKey,
 * or NULL when it names none or the credentials lack it: the source says
 * so if it needs it (source_conn carries the key names for its message). */
static const char *credential(const struct conn *c, const json_t *credentials, const char *field, const char **key)
{
	*key = json_string_value(json_object_get(json_object_get(c->spec, "credentials"), field));
	return *key ? json_string_value(json_object_get(credentials, *key)) : NULL;
}

static int open_sources(const json_t *credentials, struct job *j, int timeout_s)
{
	int rc;

	for (size_t k = 0; k < j->nsources; k++) {
		struct conn *c = &j->sources[k];
		struct source_conn sc = {
			.name = c->name,
			.type = c->type,
			.url = json_string_value(json_object_get(c->spec, "url")),
			.timeout_s = timeout_s,
		};
		sc.user = credential(c, credentials, "userKey", &sc.user_key);
		sc.password = credential(c, credentials, "passwordKey", &sc.password_key);
		if ((rc = c->ops->open(&c->src, &sc)))
			return al_error_wrap(rc, "connection '%s'", c->name);
		if ((rc = c->ops->describe(c->src, &c->description)))
			return al_error_wrap(rc, "connection '%s'", c->name);
	}
	for (size_t i = 0; i < j->ntasks; i++) {
		struct conn *c = &j->sources[j->tasks[i].source];
		if ((rc = c->ops->check(c->src, j->tasks[i].table)))
			return al_error_wrap(rc, "connection '%s'", j->tasks[i].connection);
	}
	return AL_OK;
}

/* The output file of an object: <table>.csv (or .csv.gz) for a table; the
 * last path segment of a file source's object. */
static int output_name(const struct conn *c, const char *object, enum runner_format format, struct buf *name)
{
	if (c->ops->fetch_file) {
		const char *slash = strrchr(object, '/');
		const char *base = slash ? slash + 1 : object;
		if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
			return al_error_set(AL_ERR_INVALID, "connection '%s': object '%s' names no file", c->name,
					    object);
		return buf_appends(name, base);
	}
	return buf_appendf(name, "%s%s", object, format == RUNNER_FORMAT_CSV_GZ ? ".csv.gz" : ".csv");
}

/* ctx: what is counted ("rows", or "bytes" for a file). */
static void progress_line(void *ctx, const char *table, uint64_t count)
{
	fprintf(stderr, "%s: %llu %s ...\n", table, (unsigned long long)count, (const char *)ctx);
}

/* Makes the crate's extras entry for a table: row count, names, types, and
 * the size and SHA-256 hashed while writing. */
static int table_extras(json_t *extras, const char *file, const struct source_table_result *r, uint64_t size,
			const char *sha256)
{
	json_t *names = json_array(), *types = json_array(), *col, *x;
	size_t k;

	if (!names || !types)
		goto nomem;
	json_array_foreach(r->columns, k, col) {
		if (json_array_append(names, json_object_get(col, "name")) ||
		    json_array_append(types, json_object_get(col, "type")))
			goto nomem;
	}
	x = json_pack("{s:I, s:o, s:o, s:I, s:s}", "rowCount", (json_int_t)r->rows, "columns", names, "columnTypes",
		      types, "size", (json_int_t)size, "sha256", sha256);
	names = types = NULL;
	if (!x || json_object_set_new(extras, file, x))
		goto nomem;
	return AL_OK;
nomem:
	json_decref(names);
	json_decref(types);
	return al_error_set(AL_ERR_NOMEM, "out of memory");
}

/* One object into its file: written as <file>.part, fsynced, renamed. A
 * table's .part goes on failure; a file download's stays, so the next
 * attempt can resume it (it never looks complete: the name says .part). */
static int export_one(struct job *j, size_t i, const struct runner_options *opts, json_t *extras)
{
	struct task *t = &j->tasks[i];
	struct conn *c = &j->sources[t->source];
	struct csv_writer w = { .fd = -1 };
	struct source_table_result tr = { 0 };
	struct source_file_result fr = { 0 };
	char *final = NULL, *part = NULL, sha256[65] = "";
	struct buf name;
	int64_t t0 = util_monotonic_ms();
	int fd = -1, rc, keep_part = 0;

	buf_init(&name, 4096);
	if ((rc = output_name(c, t->table, opts->format, &name)))
		goto out;
	final = util_path_join(opts->output_dir, name.ptr);
	if ((rc = buf_appends(&name, ".part")))
		goto out;
	part = util_path_join(opts->output_dir, name.ptr);
	name.ptr[name.len -= 5] = '\0'; /* back to the crate's path of the file */
	if (!final || !part) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (c->ops->fetch_file) {
		keep_part = 1;
		if ((rc = c->ops->fetch_file(c->src, t->table, part, opts->progress ? progress_line : NULL, "bytes", &fr)))
			goto out;
		fd = open(part, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			rc = al_error_set(AL_ERR_IO, "cannot open %s: %s", part, strerror(errno));
			goto out;
		}
	} else {
		fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0) {
			rc = al_error_set(AL_ERR_IO, "cannot create %s: %s", part, strerror(errno));
			goto out;
		}
		rc = opts->format == RUNNER_FORMAT_CSV_GZ ? csv_writer_init_gzip(&w, fd, opts->buffer_size)
							  : csv_writer_init(&w, fd, opts->buffer_size);
		if (rc)
			goto out;
		if ((rc = c->ops->export_table(c->src, t->table, &w, opts->progress ? progress_line : NULL, "rows", &tr)))
			goto out;
		if ((rc = csv_writer_finish(&w)) || (rc = csv_writer_digest(&w, sha256)))
			goto out;
	}
	if (fsync(fd) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot sync %s: %s", part, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = al_error_set(AL_ERR_IO, "cannot close %s: %s", part, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(part, final) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot rename %s to %s: %s", part, final, strerror(errno));
		goto out;
	}
	if (!c->ops->fetch_file && (rc = table_extras(extras, name.ptr, &tr, w.written, sha256)))
		goto out;
	if (c->ops->fetch_file) {
		json_t *x = json_pack("{s:I, s:s}", "size", (json_int_t)fr.size, "sha256", fr.sha256);
		if (!x || json_object_set_new(extras, name.ptr, x)) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (opts->progress) {
		int64_t ms = util_monotonic_ms() - t0;
		if (c->ops->fetch_file)
			fprintf(stderr, "%s: %llu bytes written to %s%s (%lld.%03lld s)\n", t->table,
				(unsigned long long)fr.size, name.ptr, fr.resumed ? ", resumed" : "",
				(long long)(ms / 1000), (long long)(ms % 1000));
		else
			fprintf(stderr, "%s: %llu rows, %zu columns written to %s (%lld.%03lld s)\n", t->table,
				(unsigned long long)tr.rows, json_array_size(tr.columns), name.ptr,
				(long long)(ms / 1000), (long long)(ms % 1000));
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc && part && !keep_part)
		unlink(part);
	csv_writer_free(&w);
	source_table_result_free(&tr);
	free(final);
	free(part);
	buf_free(&name);
	return rc;
}

/* Secret-free description of what was read: per connection (in parallel
 * arrays, as JSON-LD wants flat values) its name, type, host, database and
 * server version as the source reports them, and the objects. */
static int describe_sources(const struct job *j, struct buf *name, struct buf *desc, json_t **extra)
{
	static const char *const fields[] = { "host", "database", "serverVersion" };
	static const char *const terms[] = { "airlock:hosts", "airlock:databases", "airlock:serverVersions" };
	json_t *tables = json_array(), *names = json_array(), *types = json_array();
	json_t *cols[3] = { json_array(), json_array(), json_array() };
	int rc = AL_OK;

	*extra = NULL;
	if (!tables || !names || !types || !cols[0] || !cols[1] || !cols[2]) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; !rc && k < j->nsources; k++) {
		const struct conn *c = &j->sources[k];
		const char *host = json_string_value(json_object_get(c->description, "host"));
		const char *db = json_string_value(json_object_get(c->description, "database"));
		struct buf what;

		buf_init(&what, 4096);
		rc = buf_appendf(&what, "%s %s%s%s%s%s", c->type, c->ops->fetch_file ? "files" : "database",
				 db ? " " : "", db ? db : "", host ? " on " : "", host ? host : "");
		if (!rc && j->nsources == 1)
			rc = buf_appends(name, buf_cstr(&what));
		rc = rc ? rc : buf_appendf(desc, "%s%s", k ? "; " : "", buf_cstr(&what));
		buf_free(&what);
		if (!rc && (json_array_append_new(names, json_string(c->name)) ||
			    json_array_append_new(types, json_string(c->type))))
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		for (size_t f = 0; !rc && f < 3; f++) {
			json_t *v = json_object_get(c->description, fields[f]);
			if (json_array_append_new(cols[f], json_is_string(v) ? json_copy(v) : json_string("")))
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		}
	}
	if (!rc && j->nsources != 1)
		rc = buf_appendf(name, "%zu sources", j->nsources);
	{
		int any_table = 0;
		for (size_t k = 0; k < j->nsources; k++)
			any_table |= j->sources[k].ops->fetch_file == NULL;
		rc = rc ? rc : buf_appends(desc, any_table ? ", each database read in one transaction; objects: "
							: "; files: ");
	}
	for (size_t i = 0; !rc && i < j->ntasks; i++) {
		rc = buf_appendf(desc, "%s%s", i ? ", " : "", j->tasks[i].table);
		if (!rc && json_array_append_new(tables, json_string(j->tasks[i].table)))
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	if (!rc) {
		*extra = json_pack("{s:O, s:O, s:O}", "airlock:connectionTypes", types, "airlock:connections", names,
				   "airlock:tables", tables);
		for (size_t f = 0; *extra && f < 3; f++)
			if (json_object_set(*extra, terms[f], cols[f])) {
				json_decref(*extra);
				*extra = NULL;
			}
		if (!*extra)
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	}
out:
	json_decref(tables);
	json_decref(names);
	json_decref(types);
	for (size_t f = 0; f < 3; f++)
		json_decref(cols[f]);
	return rc;
}

int runner_run(const json_t *datasource, const json_t *credentials, const struct runner_options *opts)
{
	const json_t *spec;
	struct job j = { 0 };
	json_t *extras = NULL, *source_extra = NULL;
	struct buf sname, sdesc;
	char start[UTIL_TIME_LEN], end[UTIL_TIME_LEN];
	char errmsg[AL_ERROR_MSG_MAX];
	size_t i;
	int rc, crc;

	buf_init(&sname, 64 << 10);
	buf_init(&sdesc, 1 << 20);
	util_now_rfc3339(start);
	if (!opts || !opts->output_dir || !*opts->output_dir) {
		rc = al_error_set(AL_ERR_INVALID, "no output directory given (--output DIR)");
		goto out;
	}
	spec = json_object_get(datasource, "spec");
	if (!json_is_object(spec))
		spec = datasource;
	/* Everything that can be checked is checked before anything is written. */
	if ((rc = plan(spec, &j)) || (rc = open_sources(credentials, &j, opts->timeout_s)))
		goto out;
	if ((rc = util_mkdir_p(opts->output_dir, 0755)))
		goto out;
	if (!(extras = json_object())) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < j.ntasks; i++)
		if ((rc = export_one(&j, i, opts, extras)))
			break;
	if (!rc)
		rc = util_fsync_dir(opts->output_dir);
	snprintf(errmsg, sizeof(errmsg), "%s", rc ? al_error_message() : "");
	util_now_rfc3339(end);
	if ((crc = describe_sources(&j, &sname, &sdesc, &source_extra)) == AL_OK) {
		struct rocrate_action a = {
			.runner_name = RUNNER_NAME,
			.runner_version = AIRLOCK_VERSION,
			.start_time = start,
			.end_time = end,
			.succeeded = rc == AL_OK,
			.error = rc ? errmsg : NULL,
			.source_name = buf_cstr(&sname),
			.source_description = buf_cstr(&sdesc),
			.source_extra = source_extra,
		};
		crc = rocrate_write(opts->output_dir, datasource, &a, extras);
	}
	if (rc)
		al_error_set(rc, "%s", errmsg); /* the first error is the one to report */
	else
		rc = crc;
out:
	json_decref(extras);
	json_decref(source_extra);
	job_free(&j);
	buf_free(&sname);
	buf_free(&sdesc);
	return rc;
}
