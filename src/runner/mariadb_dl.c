#include "runner/mariadb_dl.h"
#include "common/dynlib.h"
#include "common/error.h"

#include <pthread.h>
#include <stdio.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct mariadb_dl api;
static int loaded;
static char load_error[256];

static const struct dynlib_symbol symbols[] = {
	DYNLIB_SYMBOL(struct mariadb_dl, init, "mysql_init"),
	DYNLIB_SYMBOL(struct mariadb_dl, options, "mysql_options"),
	DYNLIB_SYMBOL(struct mariadb_dl, real_connect, "mysql_real_connect"),
	DYNLIB_SYMBOL(struct mariadb_dl, close, "mysql_close"),
	DYNLIB_SYMBOL(struct mariadb_dl, errno_, "mysql_errno"),
	DYNLIB_SYMBOL(struct mariadb_dl, error, "mysql_error"),
	DYNLIB_SYMBOL(struct mariadb_dl, real_query, "mysql_real_query"),
	DYNLIB_SYMBOL(struct mariadb_dl, use_result, "mysql_use_result"),
	DYNLIB_SYMBOL(struct mariadb_dl, store_result, "mysql_store_result"),
	DYNLIB_SYMBOL(struct mariadb_dl, field_count, "mysql_field_count"),
	DYNLIB_SYMBOL(struct mariadb_dl, fetch_row, "mysql_fetch_row"),
	DYNLIB_SYMBOL(struct mariadb_dl, fetch_lengths, "mysql_fetch_lengths"),
	DYNLIB_SYMBOL(struct mariadb_dl, num_fields, "mysql_num_fields"),
	DYNLIB_SYMBOL(struct mariadb_dl, fetch_fields, "mysql_fetch_fields"),
	DYNLIB_SYMBOL(struct mariadb_dl, free_result, "mysql_free_result"),
	DYNLIB_SYMBOL(struct mariadb_dl, get_server_info, "mysql_get_server_info"),
	DYNLIB_SYMBOL(struct mariadb_dl, real_escape_string, "mysql_real_escape_string"),
	DYNLIB_SYMBOL(struct mariadb_dl, get_ssl_cipher, "mysql_get_ssl_cipher"),
};

static void load(void)
{
	int (*server_init)(int, char **, char **) = NULL;
	void *handle = dynlib_open("libmariadb.so.3", "libmariadb", symbols, sizeof(symbols) / sizeof(symbols[0]), &api, load_error,
				   sizeof(load_error));

	if (!handle)
		return;
	/* mysql_library_init is a macro for mysql_server_init; it is not
	 * thread-safe itself, hence here, under pthread_once. */
	if (dynlib_function(handle, "libmariadb", "mysql_server_init", &server_init, load_error, sizeof(load_error)))
		return;
	if (server_init(0, NULL, NULL) != 0) {
		snprintf(load_error, sizeof(load_error), "mysql_server_init failed");
		return;
	}
	loaded = 1;
}

const struct mariadb_dl *mariadb_dl(void)
{
	pthread_once(&load_once, load);
	if (!loaded) {
		al_error_set(AL_ERR_UNAVAILABLE, "cannot load the MariaDB client library (%s): install the "
						 "libmariadb3 package", load_error);
		return NULL;
	}
	return &api;
}
