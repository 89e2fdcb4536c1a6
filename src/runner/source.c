/*
 * The registry of the runner's sources (source.h).
 */
#include "runner/source.h"

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
