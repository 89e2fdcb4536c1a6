/*
 * Runs a libFuzzer target over every file named on the command line (or every
 * file in the directories named), so fuzz corpora are also ordinary tests.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data = NULL;
	size_t len = 0, cap = 0, n;
	unsigned char chunk[4096];

	if (!f) {
		fprintf(stderr, "cannot open %s\n", path);
		return 1;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (len + n > cap) {
			unsigned char *p;
			cap = (len + n) * 2;
			p = realloc(data, cap);
			if (!p) {
				free(data);
				fclose(f);
				return 1;
			}
			data = p;
		}
		memcpy(data + len, chunk, n);
		len += n;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(data ? data : (const uint8_t *)"", len);
	free(data);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0, bad = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "cannot stat %s\n", argv[i]);
			return 1;
		}
		if (S_ISDIR(st.st_mode)) {
			DIR *d = opendir(argv[i]);
			struct dirent *e;
			if (!d)
				return 1;
			while ((e = readdir(d))) {
				char *p;
				if (e->d_name[0] == '.')
					continue;
				if (asprintf(&p, "%s/%s", argv[i], e->d_name) < 0)
					return 1;
				bad += run_file(p);
				files++;
				free(p);
			}
			closedir(d);
		} else {
			bad += run_file(argv[i]);
			files++;
		}
	}
	printf("corpus: %d inputs run, %d unreadable\n", files, bad);
	return bad || files == 0;
}
