/* Fuzz target: the runtime state text (state_file, and what an upgrade
 * hands to the new process): entries or a reason and a line, never more
 * entries than lines. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle/state_file.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    assert(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    size_t lines = 1;
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    const char *why = NULL;
    int line = 0;
    int n = ferry_state_parse(text, &why, &line);
    if (n < 0) {
        assert(n == -1 && why != NULL && *why != '\0');
        for (const char *p = why; *p; p++)
            assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
        assert(line >= 1 && (size_t)line <= lines);
    } else {
        assert((size_t)n <= lines && why == NULL);
    }
    /* The same text, the same answer. */
    const char *why2 = NULL;
    int line2 = 0;
    assert(ferry_state_parse(text, &why2, &line2) == n && why2 == why);
    free(text);
    return 0;
}

static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("# ferryd runtime state\nlistener web disabled\n"
              "added app/extra 127.0.0.1:9003 weight=2 backup max_connections=10\n"
              "server app/app1 drain 7\nserver app/app2 maint - addr=127.0.0.1:9005 cfg=127.0.0.1:9002\n"),
    FUZZ_SEED("server app/app1 ready -"),
    FUZZ_SEED("server app/app1 ready 257\r\n"),
    FUZZ_SEED("added app/x [::1]:80\n\n   \n# end\n"),
    FUZZ_SEED("listener web\nserver a b c d\n"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}
