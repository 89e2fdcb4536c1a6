/*
 * test_publish.c - publishing approved data: a verified, read-only copy that
 * appears all at once, is safe to repeat after a crash, and never appears
 * when the staged data no longer matches the approved manifest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/util.h"
#include "operator/publish.h"
#include "rocrate/manifest.h"

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
	char base[64];
	char *src, *ws, *dest, *tmp;
	json_t *manifest;
};

static void put(const char *dir, const char *rel, const char *text)
{
	char *p = util_path_join(dir, rel), *d;
	assert_non_null(p);
	d = util_strdup(p);
	assert_non_null(d);
	*strrchr(d, '/') = '\0';
	assert_int_equal(util_mkdir_p(d, 0755), AL_OK);
	assert_int_equal(util_write_file_atomic(p, text, strlen(text), 0600), AL_OK);
	free(d);
	free(p);
}

static char *get(const char *dir, const char *rel)
{
	char *p = util_path_join(dir, rel), *text = NULL;
	size_t len;
	assert_non_null(p);
	assert_int_equal(util_read_file(p, 1 << 20, &text, &len), AL_OK);
	free(p);
	return text;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->base, sizeof(f->base), "/tmp/test-publish-XXXXXX");
	if (!mkdtemp(f->base))
		return -1;
	f->src = util_path_join(f->base, "staging/ds-uid");
	f->ws = util_path_join(f->base, "workspaces/ws1");
	f->dest = util_path_join(f->ws, "ds1");
	f->tmp = util_path_join(f->ws, ".ds1.publishing");
	put(f->src, "patients.csv", "id,name\r\n1,Ann\r\n");
	put(f->src, "sub/dir/notes.txt", "notes\n");
	put(f->src, "ro-crate-metadata.json", "{\"@graph\": []}\n");
	put(f->src, "empty.csv", "");
	if (manifest_build(f->src, &f->manifest) != AL_OK)
		return -1;
	/* Working files of the runner are not data and are not published. */
	put(f->src, ".patients.csv.part", "partial");
	*state = f;
	return 0;
}

static int writable(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_D)
		chmod(path, 0700);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	/* Read-only trees need write permission back before removal (non-root). */
	nftw(f->base, writable, 16, FTW_PHYS);
	util_remove_tree(f->base);
	json_decref(f->manifest);
	free(f->src);
	free(f->ws);
	free(f->dest);
	free(f->tmp);
	free(f);
	return 0;
}

static mode_t mode_of(const char *dir, const char *rel)
{
	struct stat st;
	char *p = rel ? util_path_join(dir, rel) : util_strdup(dir);
	assert_non_null(p);
	assert_int_equal(lstat(p, &st), 0);
	free(p);
	return st.st_mode & 07777;
}

/* How many entries `dir` holds (without . and ..). */
static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void expect_published(const struct fixture *f)
{
	json_t *m = NULL;
	char *text;
	assert_int_equal(manifest_build(f->dest, &m), AL_OK);
	assert_string_equal(json_string_value(json_object_get(m, "digest")),
			    json_string_value(json_object_get(f->manifest, "digest")));
	json_decref(m);
	text = get(f->dest, "patients.csv");
	assert_string_equal(text, "id,name\r\n1,Ann\r\n");
	free(text);
	/* Read-only: files 0444, directories 0555. */
	assert_int_equal(mode_of(f->dest, NULL), 0555);
	assert_int_equal(mode_of(f->dest, "sub"), 0555);
	assert_int_equal(mode_of(f->dest, "sub/dir"), 0555);
	assert_int_equal(mode_of(f->dest, "patients.csv"), 0444);
	assert_int_equal(mode_of(f->dest, "empty.csv"), 0444);
	assert_int_equal(mode_of(f->dest, "sub/dir/notes.txt"), 0444);
	assert_int_equal(mode_of(f->dest, "ro-crate-metadata.json"), 0444);
	/* Only the manifest's files, and no temporary directory beside it. */
	assert_false(util_path_exists(f->tmp));
	assert_int_equal(entries(f->dest), 4);
	assert_int_equal(entries(f->ws), 1);
	/* The staging copy, if still there, is untouched. */
	if (util_path_exists(f->src))
		assert_int_equal(mode_of(f->src, "patients.csv") & 0200, 0200);
}

static void test_copy_verify_read_only(void **state)
{
	struct fixture *f = *state;
	assert_false(util_path_exists(f->ws));
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_OK);
	expect_published(f);
	{
		char *p = util_path_join(f->dest, ".patients.csv.part");
		assert_false(util_path_exists(p));
		free(p);
	}
}

/* Publishing again (the operator died after the rename, before recording
 * it) finds the verified copy and accepts it. */
static void test_idempotent_after_crash(void **state)
{
	struct fixture *f = *state;
	struct stat before, after;
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_OK);
	assert_int_equal(stat(f->dest, &before), 0);
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_OK);
	assert_int_equal(stat(f->dest, &after), 0);
	assert_true(before.st_ino == after.st_ino); /* the same directory, not a new copy */
	expect_published(f);

	/* Even when the staging copy is gone by then. */
	assert_int_equal(util_remove_tree(f->src), AL_OK);
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_OK);
	expect_published(f);
}

/* A crash half-way through the copy leaves the temporary directory: the
 * next attempt starts it afresh. */
static void test_leftover_temp_dir(void **state)
{
	struct fixture *f = *state;
	put(f->tmp, "patients.csv", "half");
	put(f->tmp, "junk.bin", "junk");
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_OK);
	expect_published(f);
}

static void expect_nothing_published(const struct fixture *f)
{
	assert_false(util_path_exists(f->dest));
	assert_false(util_path_exists(f->tmp));
}

static void test_modified_source_conflicts(void **state)
{
	struct fixture *f = *state;
	put(f->src, "patients.csv", "id,name\r\n1,Bob\r\n");
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_ERR_CONFLICT);
	assert_non_null(strstr(al_error_message(), "no longer matches"));
	expect_nothing_published(f);
}

static void test_missing_source_file_conflicts(void **state)
{
	struct fixture *f = *state;
	char *p = util_path_join(f->src, "sub/dir/notes.txt");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_ERR_CONFLICT);
	assert_non_null(strstr(al_error_message(), "notes.txt"));
	expect_nothing_published(f);
	free(p);
}

/* A symlink swapped in for an approved file is never followed. */
static void test_symlink_source_conflicts(void **state)
{
	struct fixture *f = *state;
	char *p = util_path_join(f->src, "patients.csv"), *target = util_path_join(f->base, "secret.csv");
	put(f->base, "secret.csv", "id,name\r\n1,Ann\r\n");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink(target, p), 0);
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_ERR_CONFLICT);
	expect_nothing_published(f);
	free(p);
	free(target);
}

/* An extra file in staging is not published: only what was approved. */
static void test_extra_source_file_not_published(void **state)
{
	struct fixture *f = *state;
	put(f->src, "extra.csv", "sneaky\n");
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_OK);
	expect_published(f);
}

/* A destination holding something else is replaced by the verified copy. */
static void test_stale_destination_replaced(void **state)
{
	struct fixture *f = *state;
	put(f->dest, "old.csv", "old\n");
	assert_int_equal(chmod(f->dest, 0555), 0);
	assert_int_equal(publish_copy_verified(f->src, f->manifest, f->dest), AL_OK);
	expect_published(f);
	{
		char *p = util_path_join(f->dest, "old.csv");
		assert_false(util_path_exists(p));
		free(p);
	}
}

static void test_bad_manifest(void **state)
{
	struct fixture *f = *state;
	json_t *m;
	assert_int_equal(publish_copy_verified(f->src, NULL, f->dest), AL_ERR_INVALID);
	m = json_pack("{s:[]}", "files");
	assert_int_equal(publish_copy_verified(f->src, m, f->dest), AL_ERR_INVALID);
	json_decref(m);
	m = json_pack("{s:s}", "digest", "abc");
	assert_int_equal(publish_copy_verified(f->src, m, f->dest), AL_ERR_INVALID);
	json_decref(m);
	expect_nothing_published(f);

	/* Unsafe paths are refused, and the partial copy is removed. */
	const char *bad[] = { "../staging/ds-uid/patients.csv", "/etc/hostname", "sub/../../x" };
	for (size_t i = 0; i < 3; i++) {
		m = json_deep_copy(f->manifest);
		json_array_append_new(json_object_get(m, "files"),
				      json_pack("{s:s, s:i, s:s}", "path", bad[i], "size", 1, "sha256", "00"));
		assert_int_equal(publish_copy_verified(f->src, m, f->dest), AL_ERR_INVALID);
		assert_non_null(strstr(al_error_message(), "unsafe"));
		expect_nothing_published(f);
		json_decref(m);
	}
	/* A manifest whose digest does not match its files. */
	m = json_deep_copy(f->manifest);
	json_object_set_new(m, "digest", json_string("0000000000000000000000000000000000000000000000000000000000000000"));
	assert_int_equal(publish_copy_verified(f->src, m, f->dest), AL_ERR_CONFLICT);
	expect_nothing_published(f);
	json_decref(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_copy_verify_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idempotent_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leftover_temp_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modified_source_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_source_file_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_source_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extra_source_file_not_published, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_destination_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_manifest, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
