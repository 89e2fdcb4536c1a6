/*
 * pq_dl.h - libpq (PostgreSQL's client library), loaded when first needed.
 *
 * Only `airlock run-job` with a postgresql connection talks to PostgreSQL;
 * loading libpq (and the Kerberos/LDAP/OpenSSL it pulls in) only in that
 * process keeps every other airlock process free of it, and a machine
 * without libpq still runs everything else (see curl_dl.h for the pattern).
 *
 * pq_dl() loads libpq.so.5 once (thread-safe) and returns its functions;
 * NULL with an AL_ERR_UNAVAILABLE message ("install libpq5") when it cannot
 * be loaded or lacks a function. The pointers have libpq's own signatures
 * and semantics (types from <libpq-fe.h>); the library stays loaded for the
 * life of the process.
 */
#ifndef AL_RUNNER_PQ_DL_H
#define AL_RUNNER_PQ_DL_H

#include <libpq-fe.h>

struct pq_dl {
	PGconn *(*connectdb_params)(const char *const *keywords, const char *const *values, int expand_dbname);
	ConnStatusType (*status)(const PGconn *conn);
	char *(*error_message)(const PGconn *conn);
	int (*connection_needs_password)(const PGconn *conn);
	const char *(*parameter_status)(const PGconn *conn, const char *param_name);
	int (*server_version)(const PGconn *conn);
	PQnoticeProcessor (*set_notice_processor)(PGconn *conn, PQnoticeProcessor proc, void *arg);
	void (*finish)(PGconn *conn);
	PGresult *(*exec)(PGconn *conn, const char *query);
	PGresult *(*exec_params)(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
				 const char *const *paramValues, const int *paramLengths, const int *paramFormats,
				 int resultFormat);
	PGresult *(*get_result)(PGconn *conn);
	ExecStatusType (*result_status)(const PGresult *res);
	char *(*result_error_message)(const PGresult *res);
	char *(*result_error_field)(const PGresult *res, int fieldcode);
	char *(*cmd_tuples)(PGresult *res);
	int (*ntuples)(const PGresult *res);
	int (*nfields)(const PGresult *res);
	char *(*getvalue)(const PGresult *res, int tup_num, int field_num);
	int (*getisnull)(const PGresult *res, int tup_num, int field_num);
	void (*clear)(PGresult *res);
	int (*get_copy_data)(PGconn *conn, char **buffer, int async);
	void (*freemem)(void *ptr);
	char *(*escape_identifier)(PGconn *conn, const char *str, size_t len);
	int (*lib_version)(void);
};

const struct pq_dl *pq_dl(void);

#endif
