#include "runner/pq_dl.h"
#include "common/dynlib.h"
#include "common/error.h"

#include <pthread.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct pq_dl api;
static int loaded;
static char load_error[256];

static const struct dynlib_symbol symbols[] = {
	DYNLIB_SYMBOL(struct pq_dl, connectdb_params, "PQconnectdbParams"),
	DYNLIB_SYMBOL(struct pq_dl, status, "PQstatus"),
	DYNLIB_SYMBOL(struct pq_dl, error_message, "PQerrorMessage"),
	DYNLIB_SYMBOL(struct pq_dl, connection_needs_password, "PQconnectionNeedsPassword"),
	DYNLIB_SYMBOL(struct pq_dl, parameter_status, "PQparameterStatus"),
	DYNLIB_SYMBOL(struct pq_dl, server_version, "PQserverVersion"),
	DYNLIB_SYMBOL(struct pq_dl, set_notice_processor, "PQsetNoticeProcessor"),
	DYNLIB_SYMBOL(struct pq_dl, finish, "PQfinish"),
	DYNLIB_SYMBOL(struct pq_dl, exec, "PQexec"),
	DYNLIB_SYMBOL(struct pq_dl, exec_params, "PQexecParams"),
	DYNLIB_SYMBOL(struct pq_dl, get_result, "PQgetResult"),
	DYNLIB_SYMBOL(struct pq_dl, result_status, "PQresultStatus"),
	DYNLIB_SYMBOL(struct pq_dl, result_error_message, "PQresultErrorMessage"),
	DYNLIB_SYMBOL(struct pq_dl, result_error_field, "PQresultErrorField"),
	DYNLIB_SYMBOL(struct pq_dl, cmd_tuples, "PQcmdTuples"),
	DYNLIB_SYMBOL(struct pq_dl, ntuples, "PQntuples"),
	DYNLIB_SYMBOL(struct pq_dl, nfields, "PQnfields"),
	DYNLIB_SYMBOL(struct pq_dl, getvalue, "PQgetvalue"),
	DYNLIB_SYMBOL(struct pq_dl, getisnull, "PQgetisnull"),
	DYNLIB_SYMBOL(struct pq_dl, clear, "PQclear"),
	DYNLIB_SYMBOL(struct pq_dl, get_copy_data, "PQgetCopyData"),
	DYNLIB_SYMBOL(struct pq_dl, freemem, "PQfreemem"),
	DYNLIB_SYMBOL(struct pq_dl, escape_identifier, "PQescapeIdentifier"),
	DYNLIB_SYMBOL(struct pq_dl, lib_version, "PQlibVersion"),
};

static void load(void)
{
	void *handle = dynlib_open("libpq.so.5", "libpq", symbols, sizeof(symbols) / sizeof(symbols[0]), &api, load_error,
				   sizeof(load_error));

	if (!handle)
		return;
	loaded = 1;
}

const struct pq_dl *pq_dl(void)
{
	pthread_once(&load_once, load);
	if (!loaded) {
		al_error_set(AL_ERR_UNAVAILABLE, "cannot load libpq, PostgreSQL's client library (%s): install the "
						 "libpq5 package", load_error);
		return NULL;
	}
	return &api;
}
