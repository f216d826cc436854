// libcurl, loaded when tupp first talks to a registry rather than when tupp starts.
//
// Why C: glibc has no lazy library loading, and libcurl brings OpenSSL, nghttp2, libssh2,
// LDAP, Kerberos and more with it — mapped and relocated on every `tupp --version` if it
// were linked, for code that only registry pulls run. Like CArchive, each function tupp
// calls is forwarded to the symbol dlopen found. curl_easy_setopt and curl_easy_getinfo
// are variadic, which Swift cannot call, so they get one typed wrapper per argument kind.

#include "CCurl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static struct {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *handle);
    CURLcode (*easy_perform)(CURL *handle);
    const char *(*easy_strerror)(CURLcode code);
    CURLcode (*easy_setopt)(CURL *handle, CURLoption option, ...);
    CURLcode (*easy_getinfo)(CURL *handle, CURLINFO info, ...);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *text);
    void (*slist_free_all)(struct curl_slist *list);
} loaded;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512];

static void load(void) {
    // The soname, not libcurl.so: that link exists only where a -dev package is.
    void *handle = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(load_error, sizeof load_error, "%s (install the libcurl4 package)", dlerror());
        return;
    }
#define TUPP_RESOLVE(field, symbol) \
    if (!(*(void **)&loaded.field = dlsym(handle, symbol))) { \
        snprintf(load_error, sizeof load_error, "libcurl.so.4 has no %s", symbol); \
        return; \
    }
    TUPP_RESOLVE(global_init, "curl_global_init")
    TUPP_RESOLVE(easy_init, "curl_easy_init")
    TUPP_RESOLVE(easy_cleanup, "curl_easy_cleanup")
    TUPP_RESOLVE(easy_perform, "curl_easy_perform")
    TUPP_RESOLVE(easy_strerror, "curl_easy_strerror")
    TUPP_RESOLVE(easy_setopt, "curl_easy_setopt")
    TUPP_RESOLVE(easy_getinfo, "curl_easy_getinfo")
    TUPP_RESOLVE(slist_append, "curl_slist_append")
    TUPP_RESOLVE(slist_free_all, "curl_slist_free_all")
#undef TUPP_RESOLVE
    // curl_global_init is not thread-safe; pthread_once makes it run exactly once.
    CURLcode code = loaded.global_init(CURL_GLOBAL_DEFAULT);
    if (code != CURLE_OK) {
        snprintf(load_error, sizeof load_error, "curl_global_init failed: %s", loaded.easy_strerror(code));
    }
}

const char *tupp_curl_load(void) {
    pthread_once(&load_once, load);
    return load_error[0] ? load_error : NULL;
}

// easy_init answers NULL when the library is missing (the caller's out-of-memory path);
// everything else takes its handle and is unreachable without it.
CURL *tupp_curl_easy_init(void) { return tupp_curl_load() ? NULL : loaded.easy_init(); }
void tupp_curl_easy_cleanup(CURL *handle) { loaded.easy_cleanup(handle); }
CURLcode tupp_curl_easy_perform(CURL *handle) { return loaded.easy_perform(handle); }
const char *tupp_curl_easy_strerror(CURLcode code) {
    return tupp_curl_load() ? "libcurl is not loaded" : loaded.easy_strerror(code);
}
struct curl_slist *tupp_curl_slist_append(struct curl_slist *list, const char *text) {
    return tupp_curl_load() ? NULL : loaded.slist_append(list, text);
}
void tupp_curl_slist_free_all(struct curl_slist *list) {
    if (list) loaded.slist_free_all(list);
}

CURLcode tupp_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return loaded.easy_setopt(handle, option, value);
}
CURLcode tupp_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return loaded.easy_setopt(handle, option, value);
}
CURLcode tupp_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return loaded.easy_setopt(handle, option, value);
}
CURLcode tupp_curl_setopt_write_function(CURL *handle, CURLoption option, curl_write_callback value) {
    return loaded.easy_setopt(handle, option, value);
}
CURLcode tupp_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return loaded.easy_getinfo(handle, info, value);
}
CURLcode tupp_curl_getinfo_string(CURL *handle, CURLINFO info, const char **value) {
    return loaded.easy_getinfo(handle, info, value);
}
