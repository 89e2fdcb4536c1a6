/*
 * commands.h - every `airlock` subcommand. Each takes the arguments after its
 * name (argv[0] is the subcommand name), prints its own --help, and returns
 * the process exit status (0 success, 1 failure, 2 usage error).
 */
#ifndef AL_CLI_COMMANDS_H
#define AL_CLI_COMMANDS_H

int cmd_serve(int argc, char **argv);
int cmd_frontend(int argc, char **argv);
int cmd_uploader(int argc, char **argv);
int cmd_operator(int argc, char **argv);
int cmd_run_job(int argc, char **argv);
int cmd_rocrate(int argc, char **argv);
int cmd_job_shim(int argc, char **argv);
int cmd_check_job(int argc, char **argv);
int cmd_publish_job(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_login(int argc, char **argv);
int cmd_logout(int argc, char **argv);
int cmd_user(int argc, char **argv);
int cmd_workspace(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_approve(int argc, char **argv);
int cmd_reject(int argc, char **argv);
int cmd_secret(int argc, char **argv);
int cmd_retry(int argc, char **argv);

struct accounts;
/* The first start of a server with local accounts (serve, frontend): when
 * there is no account yet, makes 'admin' with a random password written to
 * <data_dir>/initial-admin-password (0600); *created says whether it did. */
int cli_ensure_first_admin(struct accounts *acc, const char *data_dir, int *created);

#endif
