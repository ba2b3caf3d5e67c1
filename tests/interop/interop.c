/*
 * The C side of the value-format interop test (test_value_format.py): reads what Python
 * wrote, then writes its own values for Python to read.
 *
 *   interop_c WRITER_PREFIX [option=value ...]
 *
 * Opens a cache with the given options (sz_config_set), then prints
 *   json <text>        the JSON text of "py:json", through sz_cache_get_json
 *   raw <hex>          the bytes of "py:raw", through sz_cache_get_copy
 *   raw-as-json <rc>   sz_cache_get_json on "py:raw" (not JSON-tagged: SZ_ERR_INVALID)
 * and stores WRITER_PREFIX:json (sz_cache_set_json) and WRITER_PREFIX:raw (sz_cache_set).
 * Exits nonzero, with sz_last_error() on stderr, when a call fails unexpectedly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smartcache.h"

static void must(int rc, const char *what) {
    if (rc != SZ_OK) {
        fprintf(stderr, "interop_c: %s: %s (%d)\n", what, sz_last_error(), rc);
        exit(1);
    }
}

static int get_json_text(sz_cache *c, const char *key, char **text) {
    size_t len = 0;
    /* First ask for the length (a zero-byte buffer is too small for any value), then copy
     * into len + 1 bytes so the library NUL-terminates the text. */
    int rc = sz_cache_get_json(c, key, strlen(key), NULL, 0, &len);
    if (rc != SZ_ERR_BUFFER_TOO_SMALL && rc != SZ_OK) {
        return rc;
    }
    *text = malloc(len + 1);
    if (*text == NULL) {
        return SZ_ERR_NOMEM;
    }
    return sz_cache_get_json(c, key, strlen(key), *text, len + 1, &len);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: interop_c WRITER_PREFIX [option=value ...]\n");
        return 2;
    }
    sz_config *cfg = sz_config_new();
    for (int i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL) {
            fprintf(stderr, "interop_c: %s is not option=value\n", argv[i]);
            return 2;
        }
        *eq = '\0';
        must(sz_config_set(cfg, argv[i], eq + 1), argv[i]);
    }
    sz_cache *c = NULL;
    must(sz_cache_open(cfg, &c), "sz_cache_open");
    sz_config_free(cfg);

    char *text = NULL;
    must(get_json_text(c, "py:json", &text), "get_json py:json");
    printf("json %s\n", text);
    free(text);

    unsigned char raw[256];
    size_t raw_len = 0;
    must(sz_cache_get_copy(c, "py:raw", 6, raw, sizeof raw, &raw_len), "get_copy py:raw");
    printf("raw ");
    for (size_t i = 0; i < raw_len; i++) {
        printf("%02x", raw[i]);
    }
    printf("\n");
    size_t ignored = 0;
    printf("raw-as-json %d\n", sz_cache_get_json(c, "py:raw", 6, NULL, 0, &ignored));

    char key[256];
    static const char json[] = "{\"from\":\"c\",\"n\":[1,2.5,null],\"u\":\"\xc3\xa9\"}";
    snprintf(key, sizeof key, "%s:json", argv[1]);
    must(sz_cache_set_json(c, key, strlen(key), json, strlen(json), 0), "set_json");
    static const unsigned char bytes[] = {'c', 0x00, 'r', 'a', 'w', 0xff};
    snprintf(key, sizeof key, "%s:raw", argv[1]);
    must(sz_cache_set(c, key, strlen(key), bytes, sizeof bytes, 0), "set raw");
    sz_cache_close(c);
    return 0;
}
