/*
 * NAME
 *	replay - runs a fuzz harness over files, without libFuzzer
 * SYNOPSIS
 *	fuzz-replay-<target> PATH...
 * DESCRIPTION
 *	Linked with one tests/fuzz/fuzz_<target>.c.  Every PATH that is a
 *	file, and every regular file in a PATH that is a directory, is read
 *	and handed to LLVMFuzzerTestOneInput once.  A harness that finds a
 *	broken invariant aborts; a missing directory counts as empty (a
 *	target may have no regression inputs yet).  The unit tests run it
 *	over tests/fuzz/corpus/<target> and tests/fuzz/regress/<target>, so
 *	every committed input is replayed by `make test` and, under ASan
 *	and UBSan, by `make check-sanitize`.
 * DIAGNOSTICS
 *	Exit 0 and a count on stdout; 2 when a file cannot be read.
 */
#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return 0;
}

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (buf == NULL)
            abort();
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    fclose(f);
    /* an exact-size copy, so ASan sees reads past the input's end */
    uint8_t *in = malloc(n ? n : 1);
    if (in == NULL)
        abort();
    memcpy(in, buf, n);
    free(buf);
    fprintf(stderr, "replay: %s (%zu octets)\n", path, n);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0)
            continue;
        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[i]) < 0)
                return 2;
            count++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (d == NULL)
            return 2;
        char **names = NULL;
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            names = realloc(names, (n + 1) * sizeof(*names));
            if (names == NULL)
                abort();
            if (asprintf(&names[n++], "%s/%s", argv[i], e->d_name) < 0)
                abort();
        }
        closedir(d);
        qsort(names, n, sizeof(*names), name_cmp);
        for (size_t k = 0; k < n; k++) {
            if (stat(names[k], &st) == 0 && S_ISREG(st.st_mode)) {
                if (replay_file(names[k]) < 0)
                    return 2;
                count++;
            }
            free(names[k]);
        }
        free(names);
    }
    printf("replayed %u inputs\n", count);
    return 0;
}
