/*
 * The registry of the runner's sources (source.h).
 */
#include "runner/source.h"
#include "common/error.h"
#include "common/util.h"

#include <string.h>

/* type -> source; a type may have aliases ("mysql" is MariaDB's client).
 * Each source adds its line here. */
static const struct {
	const char *type;
	const struct source_ops *ops;
} sources[] = {
	{ "sqlite", &source_sqlite_ops },
	{ "postgresql", &source_postgresql_ops },
	{ "postgres", &source_postgresql_ops },
	{ "mariadb", &source_mariadb_ops },
	{ "mysql", &source_mariadb_ops },
	{ "https", &source_https_ops },
	{ "databricks", &source_databricks_ops },
};

const struct source_ops *source_find(const char *type)
{
	if (!type)
		return NULL;
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
		if (!strcmp(sources[i].type, type))
			return sources[i].ops;
	return NULL;
}

const char *source_types(void)
{
	/* Kept in step with the table above. */
	return "sqlite"
	       ", postgresql, postgres"
	       ", mariadb, mysql"
	       ", https, databricks";
}

void source_table_result_free(struct source_table_result *r)
{
	if (!r)
		return;
	json_decref(r->columns);
	r->columns = NULL;
	r->rows = 0;
}

void source_progress_init(struct source_progress *p, source_progress_fn fn, void *ctx, const char *object)
{
	p->fn = fn;
	p->ctx = ctx;
	p->object = object;
	p->last = util_monotonic_ms();
}

void source_progress_tick(struct source_progress *p, uint64_t count)
{
	int64_t now;

	if (!p->fn)
		return;
	now = util_monotonic_ms();
	if (now - p->last >= SOURCE_PROGRESS_INTERVAL_MS) {
		p->last = now;
		p->fn(p->ctx, p->object, count);
	}
}

void source_progress_rows(struct source_progress *p, uint64_t rows)
{
	if (p->fn && rows % SOURCE_PROGRESS_EVERY_ROWS == 0)
		source_progress_tick(p, rows);
}

void source_list_init(struct source_list *l, struct buf *out)
{
	l->out = out;
	l->shown = l->seen = 0;
}

int source_list_add(struct source_list *l, const char *name)
{
	int rc = AL_OK;

	if (name && l->shown < SOURCE_LIST_MAX && l->out->len < SOURCE_LIST_BYTES) {
		rc = buf_appendf(l->out, "%s%s", l->shown ? ", " : "", name);
		l->shown++;
	}
	l->seen++;
	return rc;
}

int source_list_end(struct source_list *l, size_t total)
{
	if (!total)
		total = l->seen;
	if (!total)
		return buf_appends(l->out, "(none)");
	if (total > l->shown)
		return buf_appendf(l->out, " and %zu more", total - l->shown);
	return AL_OK;
}
