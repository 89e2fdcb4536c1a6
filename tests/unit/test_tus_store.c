/* Unit tests of the uploader's on-disk state (uploader/upload_store) and its
 * overlapped writer (uploader/writer): save/load, the hash state across a
 * "restart", crash recovery, names, quota, expiry, concatenation and "all
 * files uploaded". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "uploader/upload_store.h"
#include "uploader/writer.h"

struct fx {
	char dir[256];
	struct upload_store *st;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	/* Under the build tree, not /tmp: that may be a tmpfs, which refuses O_DIRECT. */
	snprintf(f->dir, sizeof(f->dir), "build/test-tus-store-XXXXXX");
	util_mkdir_p("build", 0755);
	if (!mkdtemp(f->dir))
		return -1;
	if (upload_store_open(&f->st, f->dir, 1))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char *cmd = NULL;
	upload_store_close(f->st);
	upload_store_forget_all();
	/* Files are 0444 after completion: make them removable for the tree removal. */
	if (asprintf(&cmd, "chmod -R u+w %s && rm -rf %s", f->dir, f->dir) > 0 && system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", f->dir);
	free(cmd);
	free(f);
	return 0;
}

static char *in_dir(struct fx *f, const char *rel)
{
	return util_path_join(f->dir, rel);
}

static void sha_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void new_upload(struct fx *f, struct upload *u, const char *path, int64_t length)
{
	memset(u, 0, sizeof(*u));
	u->kind = path ? UPLOAD_FILE : UPLOAD_PARTIAL;
	u->owner = util_strdup("alice");
	u->path = path ? util_strdup(path) : NULL;
	u->metadata = util_strdup("filename YS5jc3Y=");
	u->length = length;
	u->expires = (int64_t)time(NULL) + 3600;
	assert_int_equal(upload_create(f->st, u), AL_OK);
}

/* Writes `len` bytes of data at the upload's offset, as the engine does:
 * through a writer, hashed, synced, then recorded. */
static void write_bytes(struct fx *f, struct upload *u, const unsigned char *data, size_t len)
{
	struct writer *w = NULL;
	char prefix[UPLOAD_DIRECT_ALIGN];
	size_t plen;
	int fd = -1, direct = 0;

	assert_int_equal(upload_data_open(f->st, u, 1, &fd, &direct), AL_OK);
	plen = direct ? (size_t)(u->offset % UPLOAD_DIRECT_ALIGN) : 0;
	if (plen)
		assert_int_equal(upload_data_read(f->st, u, u->offset - plen, prefix, plen), AL_OK);
	assert_int_equal(writer_open(&w, fd, direct, u->offset, prefix, plen), AL_OK);
	assert_int_equal(writer_append(w, data, len), AL_OK);
	assert_int_equal(writer_sync(w), AL_OK);
	sha256_run_update(&u->hash, data, len);
	u->offset += len;
	assert_true(writer_offset(w) == u->offset);
	writer_close(w);
	close(fd);
	assert_int_equal(upload_save(f->st, u), AL_OK);
}

static unsigned char *pattern(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len);
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)((i * 2654435761u + seed) >> 13);
	return p;
}

static void test_info_roundtrip(void **state)
{
	struct upload u, back;
	json_t *j;
	(void)state;
	memset(&u, 0, sizeof(u));
	memcpy(u.id, "0123456789abcdef0123456789abcdef", 33);
	u.kind = UPLOAD_FINAL;
	u.owner = "bob";
	u.path = "a/b.csv";
	u.metadata = "filename Yi5jc3Y=";
	u.concat = "final;/x/0123456789abcdef0123456789abcdef";
	u.length = 10;
	u.offset = 4;
	u.created = 5;
	u.expires = 6;
	sha256_run_init(&u.hash);
	sha256_run_update(&u.hash, "abcd", 4);
	j = upload_info_json(&u);
	assert_non_null(j);
	assert_int_equal(upload_info_parse(j, &back), AL_OK);
	assert_string_equal(back.id, u.id);
	assert_int_equal(back.kind, UPLOAD_FINAL);
	assert_string_equal(back.owner, "bob");
	assert_string_equal(back.path, "a/b.csv");
	assert_string_equal(back.concat, u.concat);
	assert_int_equal(back.length, 10);
	assert_int_equal(back.offset, 4);
	assert_int_equal(back.expires, 6);
	assert_false(back.complete);
	assert_non_null(json_object_get(j, "sha256State"));
	upload_free(&back);

	/* Refused: offset past length, complete without its digest, a bad id or kind. */
	json_object_set_new(j, "offset", json_integer(11));
	assert_int_equal(upload_info_parse(j, &back), AL_ERR_INVALID);
	json_object_set_new(j, "offset", json_integer(10));
	json_object_set_new(j, "complete", json_true());
	assert_int_equal(upload_info_parse(j, &back), AL_ERR_INVALID);
	json_object_set_new(j, "complete", json_false());
	json_object_set_new(j, "id", json_string("../../etc"));
	assert_int_equal(upload_info_parse(j, &back), AL_ERR_INVALID);
	json_object_set_new(j, "id", json_string(u.id));
	json_object_set_new(j, "kind", json_string("weird"));
	assert_int_equal(upload_info_parse(j, &back), AL_ERR_INVALID);
	json_object_set_new(j, "kind", json_string("partial"));
	assert_int_equal(upload_info_parse(j, &back), AL_ERR_INVALID); /* a partial has no path */
	json_decref(j);
}

static void test_state_survives_a_restart(void **state)
{
	struct fx *f = *state;
	size_t len = 3 * WRITER_BUFFER_SIZE + 777;
	unsigned char *data = pattern(len, 1);
	struct upload u, back;
	char want[65], got[65], *p;
	json_t *info;
	int fd;

	sha_hex(data, len, want);
	new_upload(f, &u, "dir/x.bin", (int64_t)len);
	assert_int_equal(strlen(u.id), 32);
	/* Pieces that end off any block boundary. */
	write_bytes(f, &u, data, 5000);
	write_bytes(f, &u, data + 5000, 2 * WRITER_BUFFER_SIZE + 11);

	/* "Restart": load from disk. The saved state is used, not recomputed. */
	assert_int_equal(upload_load(f->st, u.id, &back), AL_OK);
	assert_false(back.hash_recomputed);
	assert_true(back.offset == u.offset);
	assert_true(back.hash.bytes == u.offset);

	/* Unacknowledged bytes past the offset (a crash mid-write) are dropped. */
	p = in_dir(f, ".uploads");
	{
		char *dp = NULL;
		assert_true(asprintf(&dp, "%s/%s/data.part", p, u.id) > 0);
		fd = open(dp, O_WRONLY | O_APPEND);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "garbage", 7), 7);
		close(fd);
		free(dp);
	}
	write_bytes(f, &back, data + back.offset, len - back.offset);
	sha256_run_hex(&back.hash, got);
	assert_string_equal(got, want);
	upload_free(&back);

	/* Without a usable saved state the data is hashed again. */
	{
		char *ip = NULL, *text = NULL;
		struct upload again;
		assert_true(asprintf(&ip, "%s/%s/info.json", p, u.id) > 0);
		assert_int_equal(util_read_file(ip, 1 << 20, &text, NULL), AL_OK);
		info = json_loads(text, 0, NULL);
		free(text);
		json_object_set_new(info, "offset", json_integer(6001));
		json_object_set_new(info, "sha256State", json_pack("{s:s, s:i}", "h", "00", "bytes", 0));
		text = json_dumps(info, 0);
		assert_int_equal(util_write_file_atomic(ip, text, strlen(text), 0600), AL_OK);
		free(text);
		json_decref(info);
		assert_int_equal(upload_load(f->st, u.id, &again), AL_OK);
		assert_true(again.hash_recomputed);
		write_bytes(f, &again, data + 6001, len - 6001);
		sha256_run_hex(&again.hash, got);
		assert_string_equal(got, want);
		/* ... and placed: the file at its path, the digest recorded. */
		assert_int_equal(upload_place(f->st, &again), AL_OK);
		assert_true(again.complete);
		assert_string_equal(again.sha256, want);
		upload_free(&again);
		assert_int_equal(upload_load(f->st, u.id, &again), AL_OK);
		assert_true(again.complete);
		assert_string_equal(again.sha256, want);
		upload_free(&again);
		free(ip);
	}
	{
		char *fp = in_dir(f, "dir/x.bin"), hex[65];
		uint64_t size = 0;
		assert_int_equal(util_sha256_file(fp, hex, &size), AL_OK);
		assert_string_equal(hex, want);
		assert_true(size == len);
		free(fp);
	}
	free(p);
	upload_free(&u);
	free(data);
}

static void test_recover_an_interrupted_placing(void **state)
{
	struct fx *f = *state;
	unsigned char *data = pattern(1000, 2);
	struct upload u, back;
	char want[65];

	sha_hex(data, 1000, want);
	/* Crash after the digest was recorded, before the move. */
	new_upload(f, &u, "a.csv", 1000);
	write_bytes(f, &u, data, 1000);
	sha256_run_hex(&u.hash, u.sha256);
	assert_int_equal(upload_save(f->st, &u), AL_OK);
	assert_int_equal(upload_load(f->st, u.id, &back), AL_OK);
	assert_false(back.complete);
	assert_int_equal(upload_recover(f->st, &back), AL_OK);
	assert_true(back.complete);
	upload_free(&back);
	assert_int_equal(upload_load(f->st, u.id, &back), AL_OK);
	assert_true(back.complete);
	assert_string_equal(back.sha256, want);
	upload_free(&back);
	upload_free(&u);

	/* Crash after the move, before "complete" was recorded. */
	new_upload(f, &u, "b.csv", 1000);
	write_bytes(f, &u, data, 1000);
	sha256_run_hex(&u.hash, u.sha256);
	assert_int_equal(upload_save(f->st, &u), AL_OK);
	{
		char *src = NULL, *dst = in_dir(f, "b.csv");
		assert_true(asprintf(&src, "%s/.uploads/%s/data.part", f->dir, u.id) > 0);
		assert_int_equal(rename(src, dst), 0);
		free(src);
		free(dst);
	}
	assert_int_equal(upload_load(f->st, u.id, &back), AL_OK);
	assert_int_equal(upload_recover(f->st, &back), AL_OK);
	assert_true(back.complete);
	upload_free(&back);
	upload_free(&u);
	free(data);
}

static void test_names_and_usage(void **state)
{
	struct fx *f = *state;
	struct upload a, b;
	uint64_t bytes = 0, files = 0;
	char *p;

	new_upload(f, &a, "x/y.csv", 100);
	new_upload(f, &b, NULL, -1); /* a partial, length deferred */
	write_bytes(f, &b, (const unsigned char *)"12345", 5);
	assert_int_equal(upload_store_usage(f->st, &bytes, &files), AL_OK);
	assert_int_equal(bytes, 105);
	assert_int_equal(files, 1);

	assert_int_equal(upload_store_name_free(f->st, "x/z.csv"), AL_OK);
	assert_int_equal(upload_store_name_free(f->st, "x/y.csv"), AL_ERR_EXISTS);
	assert_non_null(strstr(al_error_message(), "being uploaded"));
	assert_int_equal(upload_store_name_free(f->st, "x/y.csv/z"), AL_ERR_EXISTS);
	assert_int_equal(upload_store_name_free(f->st, "x"), AL_ERR_EXISTS);
	p = in_dir(f, "plain.txt");
	assert_int_equal(util_write_file_atomic(p, "x", 1, 0600), AL_OK);
	free(p);
	assert_int_equal(upload_store_name_free(f->st, "plain.txt"), AL_ERR_EXISTS);
	assert_int_equal(upload_store_name_free(f->st, "plain.txt/sub.csv"), AL_ERR_EXISTS);
	assert_non_null(strstr(al_error_message(), "is a file"));
	upload_free(&a);
	upload_free(&b);
}

static void test_locks(void **state)
{
	struct fx *f = *state;
	struct upload u;
	int l1 = -1, l2 = -1, s1 = -1, s2 = -1, x = -1;

	new_upload(f, &u, "l.csv", 10);
	assert_int_equal(upload_lock(f->st, u.id, &l1), AL_OK);
	assert_int_equal(upload_lock(f->st, u.id, &l2), AL_ERR_UNAVAILABLE);
	upload_unlock(l1);
	assert_int_equal(upload_lock(f->st, u.id, &l2), AL_OK);
	upload_unlock(l2);
	assert_int_equal(upload_lock(f->st, "0123456789abcdef0123456789abcdef", &l2), AL_ERR_NOT_FOUND);
	assert_int_equal(upload_lock(f->st, "../x", &l2), AL_ERR_NOT_FOUND);
	/* Writers share the store; completion excludes them. */
	assert_int_equal(upload_store_lock(f->st, 0, 0, &s1), AL_OK);
	assert_int_equal(upload_store_lock(f->st, 0, 0, &s2), AL_OK);
	assert_int_equal(upload_store_lock(f->st, 1, 0, &x), AL_ERR_UNAVAILABLE);
	upload_store_unlock(s1);
	upload_store_unlock(s2);
	assert_int_equal(upload_store_lock(f->st, 1, 0, &x), AL_OK);
	assert_int_equal(upload_store_lock(f->st, 0, 0, &s1), AL_ERR_UNAVAILABLE);
	upload_store_unlock(x);
	upload_free(&u);
}

static void test_sweep(void **state)
{
	struct fx *f = *state;
	struct upload old, fresh, done, busy, back;
	size_t removed = 0;
	int lock = -1;

	new_upload(f, &old, "old.csv", 10);
	new_upload(f, &fresh, "fresh.csv", 10);
	new_upload(f, &done, "done.csv", 3);
	new_upload(f, &busy, "busy.csv", 10);
	write_bytes(f, &done, (const unsigned char *)"abc", 3);
	assert_int_equal(upload_place(f->st, &done), AL_OK);
	old.expires = busy.expires = (int64_t)time(NULL) - 1;
	assert_int_equal(upload_save(f->st, &old), AL_OK);
	assert_int_equal(upload_save(f->st, &busy), AL_OK);
	assert_int_equal(upload_lock(f->st, busy.id, &lock), AL_OK);
	assert_int_equal(upload_store_sweep(f->st, (int64_t)time(NULL), &removed), AL_OK);
	assert_int_equal(removed, 1);
	assert_int_equal(upload_load(f->st, old.id, &back), AL_ERR_NOT_FOUND);
	assert_int_equal(upload_load(f->st, fresh.id, &back), AL_OK);
	upload_free(&back);
	assert_int_equal(upload_load(f->st, done.id, &back), AL_OK);
	upload_free(&back);
	assert_int_equal(upload_load(f->st, busy.id, &back), AL_OK); /* being written: kept */
	upload_free(&back);
	upload_unlock(lock);
	assert_int_equal(upload_store_sweep(f->st, (int64_t)time(NULL), &removed), AL_OK);
	assert_int_equal(removed, 1);
	upload_free(&old);
	upload_free(&fresh);
	upload_free(&done);
	upload_free(&busy);
}

static void test_concat_and_complete(void **state)
{
	struct fx *f = *state;
	unsigned char *a = pattern(70000, 3), *b = pattern(5001, 4), *ab = malloc(75001);
	struct upload parts[2], fin, file, back;
	json_t *rec = NULL, *files;
	char want[65];
	struct stat sb;
	char *p;

	memcpy(ab, a, 70000);
	memcpy(ab + 70000, b, 5001);
	sha_hex(ab, 75001, want);
	new_upload(f, &parts[0], NULL, 70000);
	new_upload(f, &parts[1], NULL, 5001);
	write_bytes(f, &parts[0], a, 70000);
	write_bytes(f, &parts[1], b, 5001);
	assert_int_equal(upload_place(f->st, &parts[0]), AL_OK); /* a partial: complete, not moved */
	assert_int_equal(upload_place(f->st, &parts[1]), AL_OK);
	assert_true(parts[0].complete);

	new_upload(f, &file, "half.csv", 10);
	write_bytes(f, &file, (const unsigned char *)"12345", 5);

	memset(&fin, 0, sizeof(fin));
	fin.kind = UPLOAD_FINAL;
	fin.owner = util_strdup("alice");
	fin.path = util_strdup("joined/ab.bin");
	fin.metadata = util_strdup("");
	fin.concat = util_strdup("final;...");
	fin.length = 75001;
	assert_int_equal(upload_store_concat(f->st, &fin, parts, 2), AL_OK);
	assert_true(fin.complete);
	assert_string_equal(fin.sha256, want);
	assert_int_equal(upload_load(f->st, parts[0].id, &back), AL_ERR_NOT_FOUND);
	p = in_dir(f, "joined/ab.bin");
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_size, 75001);
	free(p);

	/* "All files uploaded" is refused while half.csv is unfinished. */
	assert_int_equal(upload_store_complete(f->st, "1", "alice", &rec), AL_ERR_CONFLICT);
	assert_non_null(strstr(al_error_message(), "half.csv (5 of 10 bytes)"));
	assert_null(rec);
	assert_int_equal(upload_store_completion(f->st, &rec), AL_ERR_NOT_FOUND);
	write_bytes(f, &file, (const unsigned char *)"67890", 5);
	assert_int_equal(upload_place(f->st, &file), AL_OK);
	assert_int_equal(upload_store_complete(f->st, "1", "alice", &rec), AL_OK);
	assert_string_equal(json_string_value(json_object_get(rec, "round")), "1");
	files = json_object_get(json_object_get(rec, "manifest"), "files");
	assert_int_equal(json_array_size(files), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 1), "path")), "joined/ab.bin");
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 1), "sha256")), want);
	json_decref(rec);
	p = in_dir(f, "half.csv");
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0444);
	free(p);
	assert_int_equal(upload_store_completion(f->st, &rec), AL_OK);
	assert_string_equal(json_string_value(json_object_get(rec, "completedBy")), "alice");
	json_decref(rec);
	for (int i = 0; i < 2; i++)
		upload_free(&parts[i]);
	upload_free(&fin);
	upload_free(&file);
	free(a);
	free(b);
	free(ab);
}

/* The writer, with and without O_DIRECT: odd sizes, syncs in the middle, a
 * start off a block boundary, and a reset back to a synced point. */
static void writer_case(struct fx *f, int want_direct)
{
	size_t len = 4 * WRITER_BUFFER_SIZE + 12345;
	unsigned char *data = pattern(len, 5), *back = malloc(len + 1);
	char *path = in_dir(f, want_direct ? "w-direct.bin" : "w-buffered.bin");
	struct writer *w = NULL;
	const size_t steps[] = { 1, 4095, 4096, 100000, WRITER_BUFFER_SIZE + 3, 7 };
	size_t off = 0, si = 0, synced = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (want_direct ? O_DIRECT : 0), 0600), direct = want_direct;

	if (fd < 0 && want_direct) { /* no O_DIRECT here: the buffered path is tested anyway */
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		direct = 0;
	}
	assert_true(fd >= 0);
	assert_int_equal(writer_open(&w, fd, direct, 0, NULL, 0), AL_OK);
	while (off < len) {
		size_t n = steps[si++ % 6];
		if (n > len - off)
			n = len - off;
		assert_int_equal(writer_append(w, data + off, n), AL_OK);
		off += n;
		if (si % 4 == 0) {
			struct stat sb;
			assert_int_equal(writer_sync(w), AL_OK);
			assert_int_equal(fstat(fd, &sb), 0);
			assert_true((uint64_t)sb.st_size == off); /* exactly: padding cut back */
			synced = off;
		}
		/* Once, go back to the last synced point and write again from there. */
		if (si == 9) {
			char prefix[UPLOAD_DIRECT_ALIGN];
			size_t plen = direct ? synced % UPLOAD_DIRECT_ALIGN : 0;
			memcpy(prefix, data + synced - plen, plen);
			assert_int_equal(writer_reset(w, synced, prefix, plen), AL_OK);
			off = synced;
		}
		assert_true(writer_offset(w) == off);
	}
	assert_int_equal(writer_sync(w), AL_OK);
	writer_close(w);
	close(fd);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, back, len), (ssize_t)len);
	assert_int_equal(read(fd, back, 1), 0);
	close(fd);
	assert_memory_equal(back, data, len);

	/* Appending to an existing file from an unaligned offset. */
	fd = open(path, O_WRONLY | (direct ? O_DIRECT : 0));
	assert_true(fd >= 0);
	{
		uint64_t start = len - 1000;
		size_t plen = direct ? start % UPLOAD_DIRECT_ALIGN : 0;
		assert_int_equal(ftruncate(fd, (off_t)start), 0);
		assert_int_equal(writer_open(&w, fd, direct, start, data + start - plen, plen), AL_OK);
		assert_int_equal(writer_append(w, data + start, 1000), AL_OK);
		assert_int_equal(writer_sync(w), AL_OK);
		writer_close(w);
	}
	close(fd);
	fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, back, len + 1), (ssize_t)len);
	close(fd);
	assert_memory_equal(back, data, len);
	/* A prefix that does not fit the offset is refused. */
	assert_int_equal(writer_open(&w, -1, 1, 5000, NULL, 0), AL_ERR_INTERNAL);
	free(path);
	free(data);
	free(back);
}

static void test_writer(void **state)
{
	writer_case(*state, 1);
	writer_case(*state, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_info_roundtrip),
		cmocka_unit_test_setup_teardown(test_state_survives_a_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_an_interrupted_placing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names_and_usage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concat_and_complete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
