/*
 * mariadb_dl.h - libmariadb (MariaDB Connector/C), loaded when first needed.
 *
 * Only a job runner reading a mariadb/mysql connection needs the client
 * library, so it is not linked: mariadb_dl() loads libmariadb.so.3 once
 * (thread-safe), runs mysql_server_init (mysql_library_init, which must run
 * once before any thread uses the library), and returns its functions; NULL
 * with a message (AL_ERR_UNAVAILABLE) if the library cannot be loaded.
 *
 * The pointers have libmariadb's own signatures and semantics; the types and
 * constants come from <mysql.h>. The library stays loaded for the life of the
 * process.
 */
#ifndef AL_RUNNER_MARIADB_DL_H
#define AL_RUNNER_MARIADB_DL_H

#include <mysql.h>

struct mariadb_dl {
	MYSQL *(*init)(MYSQL *mysql);
	int (*options)(MYSQL *mysql, enum mysql_option option, const void *arg);
	MYSQL *(*real_connect)(MYSQL *mysql, const char *host, const char *user, const char *passwd, const char *db,
			       unsigned int port, const char *unix_socket, unsigned long clientflag);
	void (*close)(MYSQL *mysql);
	unsigned int (*errno_)(MYSQL *mysql); /* mysql_errno ("errno" is a macro) */
	const char *(*error)(MYSQL *mysql);
	int (*real_query)(MYSQL *mysql, const char *q, unsigned long length);
	MYSQL_RES *(*use_result)(MYSQL *mysql);
	MYSQL_RES *(*store_result)(MYSQL *mysql);
	unsigned int (*field_count)(MYSQL *mysql);
	MYSQL_ROW (*fetch_row)(MYSQL_RES *result);
	unsigned long *(*fetch_lengths)(MYSQL_RES *result);
	unsigned int (*num_fields)(MYSQL_RES *res);
	MYSQL_FIELD *(*fetch_fields)(MYSQL_RES *res);
	void (*free_result)(MYSQL_RES *result);
	char *(*get_server_info)(MYSQL *mysql);
	unsigned long (*real_escape_string)(MYSQL *mysql, char *to, const char *from, unsigned long length);
	const char *(*get_ssl_cipher)(MYSQL *mysql);
};

const struct mariadb_dl *mariadb_dl(void);

#endif
